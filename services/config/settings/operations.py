"""Settings of logging, metrics and production hardening: the last module, since they extend
what the others set (INSTALLED_APPS, MIDDLEWARE, ALLOWED_HOSTS)."""

from django.core.exceptions import ImproperlyConfigured

from config.logs import logging_config
from config.settings.core import ALLOWED_HOSTS, CONTAINER_LOCAL_HOSTS, INSTALLED_APPS, MIDDLEWARE, PRODUCTION
from config.settings.environment import env

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
    MIDDLEWARE = [
        "django_prometheus.middleware.PrometheusBeforeMiddleware",
        *MIDDLEWARE,
        "django_prometheus.middleware.PrometheusAfterMiddleware",
    ]

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
