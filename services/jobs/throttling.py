"""Per-token request rates: over API_SUBMIT_RATE submissions, or API_READ_RATE other API
requests, a token is answered 429 with Retry-After until its minute is over.

Counted in Redis per token and per minute (INCR and EXPIRE in one round trip), under an HMAC of
the token (jobs.auth.cache_key), never the token itself. A fixed window: a client may send up to
twice its rate across the turn of a minute, which is what a limit against runaway clients needs.
A Redis that cannot count (away, or full) lets the request through: the limit protects the
stack, and must not turn a Redis outage into refusing every client. Off in development (no rate
set), on in production (config/settings/api.py).
"""

import time

from django.conf import settings
from redis.exceptions import RedisError
from rest_framework.throttling import BaseThrottle, SimpleRateThrottle

from jobs import auth, job_store

KEY_PREFIX = "jobs:rate:"


def parse_rate(rate: str | None) -> tuple[int, int] | None:
    """(requests, seconds) from "600/min", "10/s", "1000/h" (DRF's format), or None (pure)."""
    if not rate:
        return None
    return SimpleRateThrottle.parse_rate(None, rate)


class TokenRateThrottle(BaseThrottle):
    def __init__(self):
        self.wait_seconds: float | None = None

    def allow_request(self, request, view) -> bool:
        is_submission = request.method == "POST"
        rate = parse_rate(settings.API_SUBMIT_RATE if is_submission else settings.API_READ_RATE)
        token = getattr(request.auth, "raw", None)
        if rate is None or token is None:
            return True
        allowed, period = rate
        now = time.time()
        window = int(now // period)
        key = f"{KEY_PREFIX}{'submit' if is_submission else 'read'}:{auth.cache_key(token)}:{window}"
        try:
            with job_store.backend_client().pipeline(transaction=False) as pipe:
                pipe.incr(key)
                pipe.expire(key, period + 1)
                count, _ = pipe.execute()
        except RedisError:
            return True
        if count <= allowed:
            return True
        self.wait_seconds = (window + 1) * period - now
        return False

    def wait(self) -> float | None:
        return self.wait_seconds
