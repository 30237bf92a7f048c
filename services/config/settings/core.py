"""Django core settings: secrets and the production rules, apps, middleware, templates,
PostgreSQL, Redis and the cache."""

from urllib.parse import quote

from django.core.exceptions import ImproperlyConfigured

from config.checks import enforce_production_rules
from config.settings.environment import BASE_DIR, env, secret

APP_ENV = env.str("APP_ENV", default="development")
PRODUCTION = APP_ENV == "production"

# --- secrets: required; docker-compose.yml supplies marked dev values when .env has none --------
SECRET_KEY = secret("DJANGO_SECRET_KEY")
# Key of the HMAC that turns (user token, job name, run) into a job id. Kept apart from
# SECRET_KEY so rotating Django's key does not orphan every job id held by clients.
JOB_ID_SECRET = secret("JOB_ID_SECRET")
POSTGRES_PASSWORD = secret("POSTGRES_PASSWORD")
REDIS_PASSWORD = secret("REDIS_PASSWORD")
# The message broker: Redis (the default) or RabbitMQ (docker-compose.rabbitmq.yml). Job state
# and results stay in Redis either way.
BROKERS = ("redis", "rabbitmq")
BROKER = env.str("BROKER", default="redis")
if BROKER not in BROKERS:
    raise ImproperlyConfigured(f"BROKER must be one of {', '.join(BROKERS)}, not {BROKER!r}.")
RABBITMQ_PASSWORD = secret("RABBITMQ_PASSWORD", default=None) if BROKER == "rabbitmq" else None
if BROKER == "rabbitmq" and not RABBITMQ_PASSWORD:
    raise ImproperlyConfigured("BROKER=rabbitmq needs RABBITMQ_PASSWORD (or RABBITMQ_PASSWORD_FILE).")

DEBUG = env.bool("DJANGO_DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=[] if PRODUCTION else ["*"])
# The container healthchecks call http://127.0.0.1:8000/healthz from inside the container.
CONTAINER_LOCAL_HOSTS = ["127.0.0.1", "localhost"]
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# Refuses to start (ImproperlyConfigured naming the variable) in production, warns in dev.
enforce_production_rules(
    production=PRODUCTION,
    debug=DEBUG,
    allowed_hosts=ALLOWED_HOSTS,
    csrf_trusted_origins=CSRF_TRUSTED_ORIGINS,
    secrets={
        "DJANGO_SECRET_KEY": SECRET_KEY,
        "JOB_ID_SECRET": JOB_ID_SECRET,
        "POSTGRES_PASSWORD": POSTGRES_PASSWORD,
        "REDIS_PASSWORD": REDIS_PASSWORD,
        # Only with BROKER=rabbitmq (None otherwise: not checked).
        "RABBITMQ_PASSWORD": RABBITMQ_PASSWORD,
        # Given to the flower container only (None elsewhere: not checked there).
        "FLOWER_PASSWORD": secret("FLOWER_PASSWORD", default=None),
    },
)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "django_celery_beat",
    "jobs",
]

# Bench-only (scripts/bench row 6): the naive peer API of services/benchpeer, at /bench-peer/api/.
# Never in production: its tokens are stored raw and it skips every guarantee of the jobs API.
BENCH_PEER_APP = env.bool("BENCH_PEER_APP", default=False)
if BENCH_PEER_APP:
    if PRODUCTION:
        raise ImproperlyConfigured(
            "BENCH_PEER_APP=1 loads a bench-only app and is refused with APP_ENV=production; unset it."
        )
    INSTALLED_APPS += ["rest_framework.authtoken", "benchpeer"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "web.middleware.ServiceUnavailableMiddleware",
    "web.middleware.BodySizeLimitMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ADMIN_PATH = env.str("DJANGO_ADMIN_PATH", default="admin/").strip("/") + "/"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if DEBUG:
    # Re-read templates on every request: the debug overlay reloads on Python changes only,
    # and Django's default cached loader would keep serving an edited template's old text.
    TEMPLATES[0]["APP_DIRS"] = False
    TEMPLATES[0]["OPTIONS"]["loaders"] = [
        "django.template.loaders.filesystem.Loader",
        "django.template.loaders.app_directories.Loader",
    ]

DATABASES = {
    "default": {
        # Django's, but health-checking only connections that have been idle (config/postgresql).
        "ENGINE": "config.postgresql",
        "HOST": env.str("POSTGRES_HOST", default="postgres"),
        "PORT": env.int("POSTGRES_PORT", default=5432),
        "NAME": env.str("POSTGRES_DB", default="app"),
        "USER": env.str("POSTGRES_USER", default="app"),
        "PASSWORD": POSTGRES_PASSWORD,
        # Keep connections between requests; health-checked so a PostgreSQL restart costs
        # one failed query at most, not a crash loop.
        "CONN_MAX_AGE": env.int("POSTGRES_CONN_MAX_AGE", default=60),
        "CONN_HEALTH_CHECKS": True,
        # Fail fast (503) instead of hanging a gunicorn worker while the database is away:
        # a bounded connect, and TCP keepalives that drop a connection to a vanished server.
        "OPTIONS": {
            "connect_timeout": env.int("POSTGRES_CONNECT_TIMEOUT", default=3),
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker (db 0), results (db 1), cache (db 2), one password ----------------------------
REDIS_HOST = env.str("REDIS_HOST", default="redis")
REDIS_PORT = env.int("REDIS_PORT", default=6379)


def redis_url(db: int) -> str:
    return f"redis://:{quote(REDIS_PASSWORD, safe='')}@{REDIS_HOST}:{REDIS_PORT}/{db}"


# Short socket timeouts: a request must answer 503 quickly, never hang, when Redis is down.
REDIS_SOCKET_TIMEOUT = env.float("REDIS_SOCKET_TIMEOUT", default=3.0)
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": redis_url(2),
        "OPTIONS": {"socket_connect_timeout": REDIS_SOCKET_TIMEOUT, "socket_timeout": REDIS_SOCKET_TIMEOUT},
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Bodies over this size are refused with 413 before they are read (BodySizeLimitMiddleware).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("API_MAX_BODY_BYTES", default=64 * 1024)
