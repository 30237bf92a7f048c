"""Settings of the job API (DRF, tokens, per-token rates, the schema) and of the pages."""

import re

from django.core.exceptions import ImproperlyConfigured

from config.settings.core import PRODUCTION
from config.settings.environment import env

# --- API -----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["jobs.auth.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "web.negotiation.JsonContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "jobs.pagination.JobPagination",
    "PAGE_SIZE": env.int("API_PAGE_SIZE", default=20),
    "EXCEPTION_HANDLER": "web.errors.api_exception_handler",
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
