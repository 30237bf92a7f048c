"""A verified API token's user, kept in Redis for API_TOKEN_CACHE_SECONDS (30 s by default).

Without it every API request runs knox's lookup: a PostgreSQL query joining the user, plus a
SHA-512 of the token. With it, a token seen in the last 30 seconds costs one Redis GET.

Keys never hold the raw token: `jobs:auth:<hex>` where hex is an HMAC (keyed with
DJANGO_SECRET_KEY) of the token's knox digest. The digest is what PostgreSQL stores, so the
key of a token can be computed again when that token is deleted - without the token itself.

Revocation is immediate on every web process: deleting a token (knox logout, the admin,
`manage.py revoke_api_tokens`, a user's deletion) or deactivating its user writes a tombstone
over the token's key in the same moment (signals below). A tombstone outlives any entry written
before it, and an entry is only ever written with SET NX, so a request that read the token from
PostgreSQL just before the deletion cannot put it back. If Redis cannot take the tombstone, the
deletion fails (the signal raises inside its transaction) rather than leave a token usable from
the cache. QuerySet.update(is_active=False) sends no signal: use the command, or call
revoke_user().

Tokens with an expiry (none are made here: REST_KNOX TOKEN_TTL is None) are never cached, so
knox's expiry check runs on each of their requests.
"""

import hashlib
import hmac
import json

from django.conf import settings
from django.contrib.auth import get_user_model

KEY_PREFIX = "jobs:auth:"
TOMBSTONE = b"revoked"
# A tombstone lives at least this long, and always longer than any cache entry.
MIN_TOMBSTONE_SECONDS = 60


def cache_seconds() -> int:
    return max(0, settings.API_TOKEN_CACHE_SECONDS)


def tombstone_seconds(ttl: int) -> int:
    """How long a tombstone must live to outlast every entry written with `ttl` (pure)."""
    return max(MIN_TOMBSTONE_SECONDS, 2 * ttl + 1)


def key_for_digest(secret: str, digest: str) -> str:
    """The cache key of a token, from its knox digest (pure; never the token itself)."""
    mac = hmac.new(secret.encode(), b"api-token-cache:" + digest.encode(), hashlib.sha256)
    return KEY_PREFIX + mac.hexdigest()[:40]


def encode_user(user_pk, username: str) -> bytes:
    return json.dumps([user_pk, username], separators=(",", ":")).encode()


def decode_user(raw: bytes | None):
    """(user pk, username) from a cache value; None for a miss, a tombstone or junk (pure)."""
    if raw is None or raw == TOMBSTONE:
        return None
    try:
        pk, username = json.loads(raw)
    except (ValueError, TypeError):
        return None
    return pk, username


def _client():
    from jobs import job_store

    return job_store.backend_client()


def lookup(key: str):
    """The cached user for a token key, as an unsaved user instance carrying pk and username
    (enough for the API, which needs the user's id and name), or None."""
    return user_of(_client().get(key))


def user_of(raw: bytes | None):
    """The user instance of a cache value already read (None: miss or tombstone)."""
    found = decode_user(raw)
    if found is None:
        return None
    pk, username = found
    user_model = get_user_model()
    return user_model(pk=pk, **{user_model.USERNAME_FIELD: username}, is_active=True)


def remember(key: str, user) -> None:
    """Cache a token just verified against PostgreSQL. NX: never over a tombstone."""
    ttl = cache_seconds()
    if ttl:
        _client().set(key, encode_user(user.pk, user.get_username()), nx=True, ex=ttl)


def revoke_digests(digests) -> int:
    """Tombstone the tokens with these knox digests at once, in one round trip."""
    keys = [key_for_digest(settings.SECRET_KEY, digest) for digest in digests]
    if not keys:
        return 0
    ttl = tombstone_seconds(cache_seconds())
    with _client().pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.set(key, TOMBSTONE, ex=ttl)
        pipe.execute()
    return len(keys)


def revoke_user(user) -> int:
    """Tombstone every token of the user (deactivation); the tokens stay in PostgreSQL."""
    from knox.models import AuthToken

    return revoke_digests(AuthToken.objects.filter(user=user).values_list("digest", flat=True))


# --- signals: connected in jobs.apps ---------------------------------------------------------------


def on_token_deleted(sender, instance, **kwargs) -> None:
    revoke_digests([instance.digest])


def on_user_saved(sender, instance, update_fields=None, **kwargs) -> None:
    if not instance.is_active and (update_fields is None or "is_active" in update_fields):
        revoke_user(instance)
