"""API token authentication: django-rest-knox (only a SHA-512 digest of each token is stored),
with the verified token's user cached in Redis for API_TOKEN_CACHE_SECONDS (jobs/token_cache.py:
one Redis GET instead of a PostgreSQL query; revocation reaches every process at once).

The job API also needs the raw token for one thing, deriving job ids, so request.auth
carries it in memory for the length of the request. It is never stored or logged.
"""

import logging
from dataclasses import dataclass, field

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from knox.auth import TokenAuthentication as KnoxTokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from redis.exceptions import OutOfMemoryError
from rest_framework import exceptions

from jobs import token_cache
from jobs.job_store import REDIS_UNAVAILABLE as REDIS_DOWN

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiToken:
    raw: str = field(repr=False)  # never printed, whatever logs this object
    # knox's token row; None when the user came from the token cache (no query was made).
    record: AuthToken | None = field(repr=False, default=None)


def cache_key(raw: str) -> str:
    return token_cache.key_for_digest(settings.SECRET_KEY, hash_token(raw))


def raw_token_of(request) -> str | None:
    """The token of an `Authorization: Token <token>` header if it is well formed, else None
    (then the normal authentication path gives the precise answer)."""
    parts = request.META.get("HTTP_AUTHORIZATION", "").split()
    if len(parts) != 2 or parts[0].lower() != "token":
        return None
    raw = parts[1]
    return raw if raw.isascii() and raw.isprintable() else None


class TokenAuthentication(KnoxTokenAuthentication):
    def authenticate_credentials(self, token: bytes):
        try:
            raw = token.decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid token.") from None
        if not raw.isprintable():
            # Control bytes never occur in a token; a NUL would even make PostgreSQL refuse
            # knox's lookup query (DataError), turning a bad token into a 5xx.
            raise exceptions.AuthenticationFailed("Invalid token.")
        key = None
        if token_cache.cache_seconds():
            key = cache_key(raw)
            try:
                user = token_cache.lookup(key)
            except REDIS_DOWN as exc:  # PostgreSQL still answers: check the token there
                logger.warning(
                    "Token cache unreadable (%s); checking the token in PostgreSQL", type(exc).__name__
                )
                user, key = None, None
            if user is not None:
                return user, ApiToken(raw=raw)
        user, record = super().authenticate_credentials(token)
        if key is not None and record.expiry is None:
            try:
                token_cache.remember(key, user)
            except (*REDIS_DOWN, OutOfMemoryError):  # the cache is optional: Redis away or full
                pass
        return user, ApiToken(raw=raw, record=record)

    def _cleanup_token(self, auth_token) -> bool:
        # knox loads every token of the user on every request, to delete expired ones: a second
        # query per request (GET /api/whoami/ 530/s with it, 745/s without: docs/benchmarks.md). Tokens made
        # here never expire (TOKEN_TTL None), so there is nothing to clean. A token with an
        # expiry (should a TTL ever be set) still goes through knox's check and cleanup.
        if auth_token.expiry is None:
            return False
        return super()._cleanup_token(auth_token)


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    """How the OpenAPI schema describes this authentication: `Authorization: Token <token>`."""

    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token <token>`; tokens come from `manage.py create_api_user`.",
        }
