"""Django settings: the ONE place the app containers read their environment.

Every variable is documented in .env.example. Development defaults make `docker compose up`
work with no .env; APP_ENV=production refuses to start while any secret is empty or a dev
default (see config.checks). Any variable NAME may instead come from a file named by NAME_FILE
(Docker and Swarm secrets, docker-compose.swarm.yml); the file wins over NAME.
"""

import os
import re

from pathlib import Path
from urllib.parse import quote

import environ
from django.core.exceptions import ImproperlyConfigured

from config.checks import enforce_production_rules
from config.logs import logging_config

BASE_DIR = Path(__file__).resolve().parent.parent
# django-environ's FileAwareEnv: NAME_FILE, when set, is read (once) instead of NAME.
env = environ.FileAwareEnv()


def secret(name: str, **kwargs) -> str | None:
    """A secret from NAME or NAME_FILE, without the trailing newline a file usually ends with
    (`echo ... | docker secret create` writes one; the postgres image strips it too)."""
    try:
        value = env.str(name, **kwargs)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"{name}_FILE names {os.environ.get(name + '_FILE')!r}, which cannot be read: {exc.strerror}"
        ) from None
    return value.rstrip("\r\n") if value is not None else None


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
        raise ImproperlyConfigured("BENCH_PEER_APP=1 loads a bench-only app and is refused with "
                                   "APP_ENV=production; unset it.")
    INSTALLED_APPS += ["rest_framework.authtoken", "benchpeer"]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "config.middleware.ServiceUnavailableMiddleware",
    "config.middleware.BodySizeLimitMiddleware",
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
            ],
        },
    },
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
        "ENGINE": "django.db.backends.postgresql",
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
        "OPTIONS": {
            "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
            "socket_timeout": REDIS_SOCKET_TIMEOUT,
        },
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

# --- API -----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["jobs.auth.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "jobs.pagination.JobPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=20),
    "EXCEPTION_HANDLER": "config.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_THROTTLE_CLASSES": ["jobs.throttling.TokenRateThrottle"],
}
# Per-token request rates (n/s, n/min, n/h): submissions, and every other API request. Over it,
# 429 with Retry-After (jobs/throttling.py). Off in development; "" turns one off in production.
API_SUBMIT_RATE = env.str("API_SUBMIT_RATE", default="600/min" if PRODUCTION else "")
API_READ_RATE = env.str("API_READ_RATE", default="6000/min" if PRODUCTION else "")
for _name, _rate in (("API_SUBMIT_RATE", API_SUBMIT_RATE), ("API_READ_RATE", API_READ_RATE)):
    if _rate and not re.fullmatch(r"[1-9][0-9]*/(s|sec|m|min|h|hour|d|day)", _rate):
        raise ImproperlyConfigured(f"{_name} must be like 600/min (n/s, n/min, n/h or n/day), not {_rate!r}.")
# A verified token's user is cached in Redis this long (0: every request checks PostgreSQL).
# Revoking a token or deactivating its user takes effect at once anyway (jobs/token_cache.py).
API_TOKEN_CACHE_SECONDS = env.int("API_TOKEN_CACHE_SECONDS", default=30)
REST_KNOX = {
    # Tokens are API keys handed out by `manage.py create_api_user`; they live until revoked.
    "TOKEN_TTL": None,
    "AUTH_HEADER_PREFIX": "Token",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Jobs API",
    "DESCRIPTION": "Submit background jobs, follow their progress, read results, cancel them.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Pages (jobs/pages.py): people sign in with Django's session; the API keeps tokens ----------
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "page-job-list"
LOGOUT_REDIRECT_URL = "login"
# Sessions are read from the cache (Redis db 2) and written through to PostgreSQL: an open job
# page polls every second or so, and each poll then reads its session with one Redis GET.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

# --- Jobs ---------------------------------------------------------------------------------------
# Per-kind Celery rate limits, e.g. "model_inference=10/m,sum_number=100/s" (per worker node).
JOB_RATE_LIMITS = env.dict("JOB_RATE_LIMITS", default={})
# The example kinds of jobs/tasks.py clients may submit ("*": all). Off in production: allocate
# exhausts a worker's memory on purpose, wait_io and model_inference hold a worker for minutes.
JOB_DEMO_KINDS = env.list("JOB_DEMO_KINDS", default=[] if PRODUCTION else ["*"])

# --- Celery (read by config.celery with namespace="CELERY") --------------------------------------
CELERY_BROKER_URL = redis_url(0)
RABBITMQ_HOST = env.str("RABBITMQ_HOST", default="rabbitmq")
RABBITMQ_PORT = env.int("RABBITMQ_PORT", default=5672)
RABBITMQ_USER = env.str("RABBITMQ_USER", default="app")
RABBITMQ_VHOST = env.str("RABBITMQ_VHOST", default="jobs")
if BROKER == "rabbitmq":
    CELERY_BROKER_URL = (f"amqp://{quote(RABBITMQ_USER, safe='')}:{quote(RABBITMQ_PASSWORD, safe='')}"
                         f"@{RABBITMQ_HOST}:{RABBITMQ_PORT}/{quote(RABBITMQ_VHOST, safe='')}")
# Celery's Redis backend, minus two pub/sub round trips per task sent (config/result_backend.py).
CELERY_RESULT_BACKEND = "config.result_backend:JobResultBackend+" + redis_url(1)
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_TIMEZONE = TIME_ZONE
CELERY_ENABLE_UTC = True
# A finished job's state and result are kept this long; then the API answers "expired" (410).
# Redis holds them only for JOB_HOT_SECONDS after the job finished, PostgreSQL for the rest
# (jobs/archive.py); queued and running jobs keep their Redis state this long at most.
CELERY_RESULT_EXPIRES = env.int("JOB_RESULT_EXPIRES", default=24 * 3600)
# How long a finished job stays in Redis once its record in PostgreSQL holds it: polling
# clients read it there in one round trip; later reads cost one indexed query. Redis's memory
# grows with the jobs finished in this window, not with the jobs of the day (docs/capacity.md).
JOB_HOT_SECONDS = env.int("JOB_HOT_SECONDS", default=60)
if not 0 <= JOB_HOT_SECONDS <= CELERY_RESULT_EXPIRES:
    raise ImproperlyConfigured("JOB_HOT_SECONDS must be between 0 and JOB_RESULT_EXPIRES.")
# Submissions answer 503 (job store full) once Redis's used memory reaches this share of its
# maxmemory: the rest is room for the jobs already accepted to run and finish, whose writes
# Redis must never refuse (a refused write there can lose a message; docs/capacity.md).
JOB_STORE_ADMIT_PERCENT = env.int("JOB_STORE_ADMIT_PERCENT", default=80)
if not 10 <= JOB_STORE_ADMIT_PERCENT <= 95:
    raise ImproperlyConfigured("JOB_STORE_ADMIT_PERCENT must be between 10 and 95.")
# Stores the worker's hostname, task name and retries with each state (not the arguments:
# config/result_backend.py leaves them out, the job's record has them).
CELERY_RESULT_EXTENDED = True
CELERY_TASK_DEFAULT_QUEUE = "jobs"

# At-least-once delivery on the Redis broker; each line's reason is in docs/reliability.md.
# A message is acknowledged only after its task finished, so a worker that dies mid-job leaves
# it in Redis to be delivered again.
CELERY_TASK_ACKS_LATE = True
# ...and a job whose pool process was killed (OOM, SIGKILL) goes back to the queue, not to FAILURE.
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# One message per pool process: long jobs do not sit reserved behind a busy process
# while another worker idles. Raising it helps only floods of tiny jobs (docs/benchmarks.md).
CELERY_WORKER_PREFETCH_MULTIPLIER = env.int("CELERY_WORKER_PREFETCH_MULTIPLIER", default=1)
# Unacknowledged messages come back after this many seconds; it must exceed the longest
# job (CELERY_TASK_TIME_LIMIT), or a job still running is delivered a second time.
CELERY_VISIBILITY_TIMEOUT = env.int("CELERY_VISIBILITY_TIMEOUT", default=2 * 3600)
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=3600)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=3300)
if CELERY_TASK_TIME_LIMIT >= CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured(
        "CELERY_TASK_TIME_LIMIT must be shorter than CELERY_VISIBILITY_TIMEOUT, "
        "or long jobs are delivered twice while still running."
    )
_redis_transport = {
    "visibility_timeout": CELERY_VISIBILITY_TIMEOUT,
    "socket_timeout": REDIS_SOCKET_TIMEOUT,
    "socket_connect_timeout": REDIS_SOCKET_TIMEOUT,
    "socket_keepalive": True,
    "retry_on_timeout": True,
    "health_check_interval": 25,
}
CELERY_BROKER_TRANSPORT_OPTIONS = _redis_transport
# kombu's Redis transport, whose writes about held messages wait out a full Redis.
CELERY_BROKER_TRANSPORT = "jobs.redis_transport:Transport"
if BROKER == "rabbitmq":
    # Publisher confirms: a publish returns (and the API answers 202) only once RabbitMQ has
    # the message. Quorum queues: replicated, durable, and they count deliveries; Celery then
    # uses per-consumer prefetch and RabbitMQ's native delayed delivery for retry countdowns.
    # A dead worker's unacknowledged messages return to the queue when its connection closes
    # (heartbeats notice a vanished one), so jobs/orphans.py is for Redis only.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
    CELERY_BROKER_TRANSPORT = None  # the URL's (amqp)
    CELERY_TASK_DEFAULT_QUEUE_TYPE = "quorum"
    # Native delayed delivery (retry countdowns) routes through topic exchanges only.
    CELERY_TASK_DEFAULT_EXCHANGE_TYPE = "topic"
    CELERY_WORKER_DETECT_QUORUM_QUEUES = True
    CELERY_BROKER_HEARTBEAT = 30
    # Celery declares its control (pidbox) and event queues neither durable nor exclusive, which
    # RabbitMQ deprecates (transient_nonexcl_queues) and the overlay denies: each is one or the
    # other. A worker's control queue is named after the worker, so an exclusive one would stop a
    # worker restarted under its name (a SIGKILLed container started again) with RESOURCE_LOCKED
    # for as long as RabbitMQ holds the old connection: durable (deleted 10 s after its last
    # consumer left). Event queues (Flower's) have a new random name per connection: exclusive,
    # gone with it.
    CELERY_CONTROL_QUEUE_DURABLE = True
    CELERY_EVENT_QUEUE_EXCLUSIVE = True
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = _redis_transport
# The result backend's own client reads these (not the transport options above).
CELERY_REDIS_SOCKET_TIMEOUT = REDIS_SOCKET_TIMEOUT
CELERY_REDIS_SOCKET_CONNECT_TIMEOUT = REDIS_SOCKET_TIMEOUT
CELERY_REDIS_RETRY_ON_TIMEOUT = True
CELERY_REDIS_SOCKET_KEEPALIVE = True
CELERY_REDIS_BACKEND_HEALTH_CHECK_INTERVAL = 25
# Workers and beat keep trying to reach a restarted Redis instead of exiting (no crash loop).
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# A job's state and result are written even if Redis is away at that moment: the write is
# retried with backoff (at most 10 s apart) for as long as the outage lasts (Celery's default,
# no retry limit). Giving up would mark the job finished in the broker but record nothing.
CELERY_RESULT_BACKEND_ALWAYS_RETRY = True
# A web request publishing while Redis is away gives up within about a second (then 503).
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.3,
    "interval_max": 0.5,
}
CELERY_BROKER_CONNECTION_TIMEOUT = REDIS_SOCKET_TIMEOUT
# Running jobs keep running through a broker reconnect; their ack lands in Redis afterwards.
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = False
CELERY_WORKER_CONCURRENCY = env.int("CELERY_WORKER_CONCURRENCY", default=2)
# prefork (processes: CPU-bound jobs, a crash takes one job), threads or gevent (I/O-bound
# jobs; gevent for hundreds at once), solo (one job at a time in the worker process itself).
# What each does on cancel and under the OOM killer: .env.example and docs/reliability.md.
# compose/start/start-worker passes it as --pool too: gevent must patch before anything loads.
WORKER_POOLS = ("prefork", "threads", "gevent", "solo")
CELERY_WORKER_POOL = env.str("CELERY_WORKER_POOL", default="prefork")
if CELERY_WORKER_POOL not in WORKER_POOLS:
    raise ImproperlyConfigured(
        f"CELERY_WORKER_POOL must be one of {', '.join(WORKER_POOLS)}, not {CELERY_WORKER_POOL!r}.")
# Flower's live view needs task events.
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
# A worker that dies without a clean stop (SIGKILL, OOM killer, power loss) is noticed this
# many seconds after its last liveness write; live workers then put its jobs back in the queue
# (jobs/orphans.py, Redis broker). The visibility timeout above stays the last resort.
JOB_WORKER_LOST_AFTER = env.int("JOB_WORKER_LOST_AFTER", default=30)
if not 10 <= JOB_WORKER_LOST_AFTER < CELERY_VISIBILITY_TIMEOUT:
    raise ImproperlyConfigured("JOB_WORKER_LOST_AFTER must be at least 10 seconds and shorter than "
                               "CELERY_VISIBILITY_TIMEOUT.")
# A job whose worker died under it this many times in a row (one that runs out of memory kills
# its worker on every delivery) ends FAILURE instead of being delivered again.
JOB_MAX_DELIVERIES = env.int("JOB_MAX_DELIVERIES", default=3)
if JOB_MAX_DELIVERIES < 1:
    raise ImproperlyConfigured("JOB_MAX_DELIVERIES must be at least 1.")
# Periodic housekeeping tasks, not job kinds (the kinds are found in jobs/tasks.py).
CELERY_IMPORTS = ["jobs.housekeeping"]
CELERY_BEAT_SCHEDULER = "config.beat:DatabaseScheduler"
# Save each entry's last run right after it fires, so a restarted beat never fires it twice.
CELERY_BEAT_SYNC_EVERY = 1
# A job whose message a Redis crash lost is published again once its record is this old and
# it is still PENDING (or stateless) with no message in Redis: jobs/recovery.py.
JOB_RECOVERY_AFTER = env.int("JOB_RECOVERY_AFTER", default=300)
if JOB_RECOVERY_AFTER < 60:
    raise ImproperlyConfigured("JOB_RECOVERY_AFTER must be at least 60 seconds.")
# Messages a recovery pass reads at most per queue list (in replies of 200): behind a longer
# backlog the jobs it did not find wait for a later pass (docs/capacity.md).
JOB_RECOVERY_SCAN_LIMIT = env.int("JOB_RECOVERY_SCAN_LIMIT", default=20_000)
if JOB_RECOVERY_SCAN_LIMIT < 200:
    raise ImproperlyConfigured("JOB_RECOVERY_SCAN_LIMIT must be at least 200.")
CELERY_BEAT_SCHEDULE = {
    "purge-old-job-records": {
        "task": "jobs.purge_old_job_records",
        "schedule": 3600.0,
    },
    "recover-lost-jobs": {
        "task": "jobs.recover_lost_jobs",
        "schedule": JOB_RECOVERY_AFTER / 2,
    },
}
JOB_RECORD_RETENTION_DAYS = env.int("JOB_RECORD_RETENTION_DAYS", default=30)

# --- Logging: one line per event on stdout, no secrets, no raw tokens -----------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# text (the default) or json: one JSON object per line, each carrying the id of the request it
# belongs to (and the job's id), in web and in the worker that runs the request's job (config/logs.py).
LOG_FORMATS = ("text", "json")
LOG_FORMAT = env.str("LOG_FORMAT", default="text")
if LOG_FORMAT not in LOG_FORMATS:
    raise ImproperlyConfigured(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {LOG_FORMAT!r}.")
LOGGING = logging_config(LOG_FORMAT, LOG_LEVEL)
if LOG_FORMAT == "json":
    # django-guid: a request id per request (a valid X-Request-ID from the proxy, else a new one),
    # returned in the X-Request-ID header, put on every log line (config/logs.py) and handed to
    # the worker in the job's message headers; the worker's lines for that job carry it too.
    # Its Celery integration also makes workers and beat log through LOGGING above.
    from django_guid.integrations import CeleryIntegration

    INSTALLED_APPS += ["django_guid"]
    MIDDLEWARE.insert(0, "django_guid.middleware.guid_middleware")
    DJANGO_GUID = {
        "GUID_HEADER_NAME": "X-Request-ID",
        "INTEGRATIONS": [CeleryIntegration(use_django_logging=True)],
    }

# --- Metrics (docker-compose.monitoring.yml) --------------------------------------------------------
# The port on which web's gunicorn master, each worker's main process and beat serve Prometheus
# metrics on the compose network (never published); 0: no metrics (config/metrics.py).
METRICS_PORT = env.int("METRICS_PORT", default=0)
if METRICS_PORT:
    # Requests, latency and responses by view (route), method and status.
    MIDDLEWARE = ["django_prometheus.middleware.PrometheusBeforeMiddleware", *MIDDLEWARE,
                  "django_prometheus.middleware.PrometheusAfterMiddleware"]

# --- Production hardening (behind a TLS-terminating reverse proxy) ----------------------------
if PRODUCTION:
    ALLOWED_HOSTS = [*ALLOWED_HOSTS, *CONTAINER_LOCAL_HOSTS]
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
    # /healthz is probed over plain HTTP from inside the container.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
