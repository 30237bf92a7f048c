"""Micro-measures behind two tuning notes of docs/benchmarks.md, run inside a container of the
stack: docker compose -p djcs-bench exec -T web python - < scripts/benchlib/micro.py

1. redis-py's reply parser: hiredis (the default whenever hiredis >= 3.2 is installed) vs the
   pure-Python RESP2 parser, on the reads the stack does: GET of one job's meta (status API),
   MGET of 200 metas (job list), on the result backend's Redis.
2. Celery's message serializers on a no-op job's message and result: json vs pickle.
3. The token lookup: GET /api/whoami/ through Django's test client (the whole middleware and
   DRF stack, no HTTP server) with the stack's authentication, its token cache on (one Redis
   GET) and off (knox's PostgreSQL lookup), vs knox's own, which also loads every token of the
   user on each request to delete expired ones; GET / (no token) beside it.
4. Where a verified token's user could be kept: a dict in the process vs one Redis GET vs the
   PostgreSQL lookup, the lookup alone (no request around it).
"""

import time
import uuid

import django

django.setup()

import redis  # noqa: E402
from celery import current_app  # noqa: E402
from kombu.serialization import dumps, loads  # noqa: E402
from redis._parsers import _HiredisParser, _RESP2Parser  # noqa: E402
from redis.connection import DefaultParser  # noqa: E402


def per_second(fn, seconds: float = 1.5) -> float:
    fn()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        fn()
        count += 1
    return count / elapsed


backend = current_app.backend
meta = {
    "status": "SUCCESS",
    "result": {"hostname": "worker-1", "started_at": "2026-01-01T00:00:00+00:00", "output": {}},
    "traceback": None,
    "children": [],
    "date_done": "2026-01-01T00:00:01+00:00",
    "task_id": str(uuid.uuid4()),
    "name": "jobs.noop",
    "args": [],
    "kwargs": {},
    "worker": "celery@worker-1",
    "retries": 0,
    "queue": "jobs",
}
keys = [f"bench-micro-{uuid.uuid4()}" for _ in range(200)]
url = backend.url  # the backend's redis:// URL (the setting names the backend class too)
setup = redis.Redis.from_url(url)
setup.mset({key: backend.encode(meta) for key in keys})
print(f"redis-py default parser: {DefaultParser.__name__}")
try:
    for parser in (_RESP2Parser, _HiredisParser):
        client = redis.Redis.from_url(url, parser_class=parser)
        get = per_second(lambda client=client: client.get(keys[0]))
        mget = per_second(lambda client=client: client.mget(keys))
        print(f"{parser.__name__:14} GET one meta {get:8.0f}/s   MGET 200 metas {mget:6.0f}/s")
finally:
    setup.delete(*keys)

message = {"kwargs": {}, "id": str(uuid.uuid4()), "task": "jobs.noop"}
for serializer in ("json", "pickle"):

    def round_trip(serializer=serializer):
        for payload in (message, meta):
            content_type, encoding, body = dumps(payload, serializer=serializer)
            loads(body, content_type, encoding, accept={content_type})

    print(f"{serializer:6} dumps+loads of a message and a result: {per_second(round_trip):8.0f}/s")

from io import StringIO  # noqa: E402

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402
from knox.auth import TokenAuthentication as KnoxAuthentication  # noqa: E402

from jobs.auth import TokenAuthentication  # noqa: E402

out = StringIO()
call_command("create_api_user", "bench-micro", "--existing-ok", stdout=out)
client = Client(HTTP_AUTHORIZATION=f"Token {out.getvalue().strip().splitlines()[-1]}", HTTP_HOST="localhost")


def whoami():
    assert client.get("/api/whoami/").status_code == 200


from django.conf import settings  # noqa: E402
from knox.crypto import hash_token  # noqa: E402

from jobs import token_cache  # noqa: E402

raw_token = out.getvalue().strip().splitlines()[-1]
try:
    print(f"GET / (no token)                                   {per_second(lambda: client.get('/')):6.0f}/s")
    print(f"GET /api/whoami/, token cache on (Redis GET)        {per_second(whoami):6.0f}/s")
    cache_seconds = settings.API_TOKEN_CACHE_SECONDS
    settings.API_TOKEN_CACHE_SECONDS = 0
    print(f"GET /api/whoami/, token cache off (PostgreSQL)      {per_second(whoami):6.0f}/s")
    TokenAuthentication._cleanup_token = KnoxAuthentication._cleanup_token
    print(f"GET /api/whoami/, knox's own (+ cleanup, no cache)  {per_second(whoami):6.0f}/s")
    settings.API_TOKEN_CACHE_SECONDS = cache_seconds

    key = token_cache.key_for_digest(settings.SECRET_KEY, hash_token(raw_token))
    in_process = {key: (1, "bench-micro")}
    redis_client = token_cache._client()
    knox = KnoxAuthentication()
    print(
        f"lookup alone: key (SHA-512 + HMAC) + dict      {per_second(lambda: in_process.get(token_cache.key_for_digest(settings.SECRET_KEY, hash_token(raw_token)))):8.0f}/s"
    )
    print(
        f"lookup alone: key + Redis GET                  {per_second(lambda: token_cache.lookup(key)):8.0f}/s"
    )
    print(
        f"lookup alone: knox's PostgreSQL query + digest {per_second(lambda: knox.authenticate_credentials(raw_token.encode())):8.0f}/s"
    )
finally:
    get_user_model().objects.filter(username="bench-micro").delete()
