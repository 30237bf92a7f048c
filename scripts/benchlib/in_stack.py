"""The parts of scripts/bench that run inside a container of the stack (Redis is not published).

scripts/bench pipes this file into `docker compose exec -T web python - COMMAND [ARGS]`; it
prints one JSON object on its last line. Commands:
  token                  a fresh API token of the user "bench" (its earlier tokens and jobs go)
  page-password          a fresh random password of the user "bench" (made by `token`), to sign
                         in to the pages (row 9, scripts/benchlib/live_pages.py)
  peer-token             a fresh DRF authtoken of the user "bench" for the naive peer app
                         (services/benchpeer; its earlier peer jobs go), or {"absent": true}
                         when the stack runs without BENCH_PEER_APP=1
  drain SECONDS          wait (up to SECONDS) until the jobs queue is empty and no message is
                         unacknowledged
  raw N M SECONDS        wait (up to SECONDS) until the jobs queue is empty and no message is
                         unacknowledged; then the raw-Celery baselines: N no-op tasks through
                         apply_async, waiting for all N results with MGET; then M sequential
                         round trips (apply_async, then polling the result key). The N tasks'
                         phase is marked (`MARK start`, `MARK end`, see mark()), so that
                         scripts/bench can take the containers' CPU time around it.
"""

import json
import sys
import time
import uuid

import django

django.setup()

from celery import current_app  # noqa: E402
from django.conf import settings  # noqa: E402

BENCH_USER = "bench"
POLL_PAUSE = 0.001  # the same pause between status polls as the HTTP side


def token() -> dict:
    from io import StringIO

    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from jobs.models import Job

    user = get_user_model().objects.filter(username=BENCH_USER).first()
    if user is not None:
        # knox reads all of a user's tokens on every request: keep one, so runs compare.
        user.auth_token_set.all().delete()
        Job.objects.filter(user=user).delete()
    out = StringIO()
    call_command("create_api_user", BENCH_USER, "--existing-ok", stdout=out)
    return {"token": out.getvalue().strip().splitlines()[-1]}


def page_password() -> dict:
    import secrets

    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username=BENCH_USER)
    password = secrets.token_urlsafe(18)
    user.set_password(password)
    user.save(update_fields=["password"])
    return {"password": password}


def peer_token() -> dict:
    from django.contrib.auth import get_user_model

    if not settings.BENCH_PEER_APP:
        return {"absent": True}
    from rest_framework.authtoken.models import Token

    from benchpeer.models import PeerJob

    user, _ = get_user_model().objects.get_or_create(username=BENCH_USER)
    PeerJob.objects.filter(user=user).delete()
    Token.objects.filter(user=user).delete()
    return {"token": Token.objects.create(user=user).key}


def _broker():
    import redis

    return redis.Redis.from_url(settings.CELERY_BROKER_URL)


def drain(timeout: float) -> dict:
    broker = _broker()
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        queued, unacked = broker.llen(queue), broker.hlen("unacked")
        if queued == 0 and unacked == 0:
            return {"drained": True, "seconds": round(time.monotonic() - start, 3)}
        time.sleep(0.05)
    return {
        "error": f"the jobs queue did not drain within {timeout:g} s",
        "queued": queued,
        "unacked": unacked,
    }


def mark(name: str) -> None:
    """Tell scripts/bench that a measured phase starts or ends, and wait until it has taken its
    snapshot (a line on stdin). Run as `python -` (stdin is the script, at EOF by now) there is
    nobody to wait for: readline returns at once."""
    print(f"MARK {name}", flush=True)
    sys.stdin.readline()


def _succeeded(backend, raw) -> bool:
    return raw is not None and backend.decode(raw)["status"] == "SUCCESS"


def raw(n: int, m: int, drain_timeout: float) -> dict:
    import jobs.tasks  # noqa: F401 - registers jobs.noop

    drained = drain(drain_timeout)
    if "error" in drained:
        return drained

    task = current_app.tasks["jobs.noop"]
    backend = current_app.backend
    client = backend.client

    def round_trip() -> float:
        task_id = str(uuid.uuid4())
        key = backend.get_key_for_task(task_id)
        start = time.perf_counter()
        task.apply_async(task_id=task_id)
        while not _succeeded(backend, client.get(key)):
            time.sleep(POLL_PAUSE)
        return time.perf_counter() - start

    for _ in range(5):  # warm up: connections to the broker and the backend
        round_trip()

    # Throughput: N tasks from one client, then wait until all N results are in the backend.
    ids = [str(uuid.uuid4()) for _ in range(n)]
    pending = [backend.get_key_for_task(task_id) for task_id in ids]
    mark("start")
    start = time.perf_counter()
    for task_id in ids:
        task.apply_async(task_id=task_id)
    enqueued = time.perf_counter() - start
    while pending:
        values = client.mget(pending)
        pending = [key for key, value in zip(pending, values) if not _succeeded(backend, value)]
        if pending:
            time.sleep(0.005)
    elapsed = time.perf_counter() - start
    mark("end")

    # Latency: sequential round trips.
    latencies = [round_trip() for _ in range(m)]
    return {
        "drain_seconds": drained["seconds"],
        "n": n,
        "enqueue_per_s": n / enqueued,
        "seconds": elapsed,
        "per_s": n / elapsed,
        "latencies_ms": [round(x * 1000, 3) for x in latencies],
    }


def main(argv: list[str]) -> None:
    command, args = argv[0], argv[1:]
    if command == "token":
        result = token()
    elif command == "page-password":
        result = page_password()
    elif command == "peer-token":
        result = peer_token()
    elif command == "drain":
        result = drain(float(args[0]))
    elif command == "raw":
        result = raw(int(args[0]), int(args[1]), float(args[2]))
    else:
        raise SystemExit(f"unknown command {command!r}")
    print(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
