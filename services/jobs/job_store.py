"""Job state in the Celery result backend (Redis): one key read per status request.

Reads go straight to the backend's Redis client - never AsyncResult.get(), which opens a
pub/sub subscription per call. The meta format is Celery's own, so Flower, AsyncResult and
this module all read the same keys. A finished job's meta leaves Redis JOB_HOT_SECONDS after
jobs/archive.py copied it into the job's record; `current_meta` then answers from the record.
"""

import json
import logging
import time
from datetime import datetime, timedelta

from celery import current_app, states
from django.conf import settings
from django.utils import timezone
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobs.redis_memory import refused_for_memory

logger = logging.getLogger(__name__)

# What redis-py raises while Redis is away (restarting, unreachable): retry, or answer 503.
REDIS_UNAVAILABLE = (RedisConnectionError, RedisTimeoutError)
REVOKED_FLAG_PREFIX = "jobs:revoked:"
# The state of a running job that reported progress (a custom state: Celery has none).
PROGRESS = "PROGRESS"
# States after which a job never changes again (a new run needs rerun=true).
FINISHED_STATES = frozenset(states.READY_STATES)
# The exc_type of a job whose worker died under it (Celery's own name for it).
WORKER_LOST = "WorkerLostError"
# Sorted set of finished jobs not yet archived: job id -> when it finished (epoch seconds).
# Every finished state is written together with its entry (jobs/result_backend.py, write_meta).
FINISHED_INDEX = "jobs:finished"
DELIVERIES_PREFIX = "jobs:deliveries:"
# A copy of the job's PostgreSQL record, written with its PENDING state (same expiry), so a
# status read needs no query: jobs/views.py falls back to PostgreSQL when it is absent.
RECORD_PREFIX = "jobs:record:"
# SET the key to ARGV[1] (expiring in ARGV[2] s) unless it holds a finished state: a job that
# finished and then lost its worker before the acknowledgement keeps its result.
SET_UNLESS_FINISHED = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and (meta.status == 'SUCCESS' or meta.status == 'FAILURE'
      or meta.status == 'REVOKED') then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
return 1
"""


def _backend():
    return current_app.backend


def backend_client():
    """The result backend's Redis client, for small bookkeeping keys of the jobs app."""
    return _backend().client


def read_meta(job_id: str) -> dict | None:
    """The job's stored meta (status, result, date_done, ...), or None if absent/expired."""
    backend = _backend()
    raw = backend.client.get(backend.get_key_for_task(job_id))
    return backend.decode(raw) if raw else None


def read_many(job_ids: list[str]) -> list[dict | None]:
    """Metas of several jobs in one round trip (MGET)."""
    if not job_ids:
        return []
    backend = _backend()
    raws = backend.client.mget([backend.get_key_for_task(job_id) for job_id in job_ids])
    return [decode_meta(raw) for raw in raws]


def decode_meta(raw: bytes | None) -> dict | None:
    return _backend().decode(raw) if raw else None


def meta_key(job_id: str) -> bytes:
    return _backend().get_key_for_task(job_id)


def encode_record(job) -> bytes:
    """The record copy: what a status answer shows of the job, and whose it is."""
    return json.dumps(
        {
            "user": job.user_id,
            "owner": job.owner,
            "name": job.name,
            "run": job.run,
            "kind": job.kind,
            "params": job.params,
            "submitted_at": job.submitted_at.isoformat(),
        },
        separators=(",", ":"),
    ).encode()


def decode_record(job_id: str, raw: bytes | None):
    """An unsaved Job from a record copy, or None (absent or unreadable)."""
    if raw is None:
        return None
    from jobs.models import Job

    try:
        data = json.loads(raw)
        return Job(
            id=job_id,
            owner=data["owner"],
            user_id=data["user"],
            name=data["name"],
            run=data["run"],
            kind=data["kind"],
            params=data["params"],
            submitted_at=datetime.fromisoformat(data["submitted_at"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


def pending_writes(job, result: dict) -> list[tuple[bytes | str, bytes, int]]:
    """The Redis writes of a submission: PENDING state and record copy, with the result expiry."""
    backend = _backend()
    return [
        (
            backend.get_key_for_task(job.id),
            backend.encode(_meta(job.id, states.PENDING, result)),
            backend.expires,
        ),
        (RECORD_PREFIX + job.id, encode_record(job), backend.expires),
    ]


def read_status(job_id: str, *also: str):
    """(meta, record copy as an unsaved Job or None, raw values of the keys `also`) in one round
    trip (MGET): a status read's token-cache entry comes with the job's state."""
    backend = _backend()
    raw_meta, raw_record, *others = backend.client.mget(
        [backend.get_key_for_task(job_id), RECORD_PREFIX + job_id, *also]
    )
    return (backend.decode(raw_meta) if raw_meta else None), decode_record(job_id, raw_record), others


def forget_submission(job_id: str) -> None:
    """Remove what a submission wrote to Redis (its publish failed)."""
    backend = _backend()
    backend.client.delete(backend.get_key_for_task(job_id), RECORD_PREFIX + job_id)


def _meta(job_id: str, state: str, result: dict) -> dict:
    return {
        "status": state,
        "result": result,
        "traceback": None,
        "children": [],
        "date_done": timezone.now().isoformat() if state in states.READY_STATES else None,
        "task_id": job_id,
    }


def write_meta(job_id: str, state: str, result: dict) -> None:
    """Store a state the way Celery does, with the result expiry, in one round trip, no retry
    loop; a finished state is listed for the archive (FINISHED_INDEX) in the same transaction.

    Used by web for REVOKED at cancellation.
    """
    backend = _backend()
    with backend.client.pipeline(transaction=True) as pipe:
        pipe.set(
            backend.get_key_for_task(job_id), backend.encode(_meta(job_id, state, result)), ex=backend.expires
        )
        if state in states.READY_STATES:
            pipe.zadd(FINISHED_INDEX, {job_id: time.time()})
        pipe.execute()


def archived_meta(job, now: datetime | None = None) -> dict | None:
    """The final meta kept in the job's record (jobs/archive.py), or None: not finished, or
    finished longer ago than JOB_RESULT_EXPIRES (expired, as its Redis copy would be)."""
    if job.outcome is None or job.finished_at is None:
        return None
    if job.finished_at + timedelta(seconds=settings.CELERY_RESULT_EXPIRES) <= (now or timezone.now()):
        return None
    return job.outcome


def current_meta(job, redis_meta: dict | None) -> dict | None:
    """What a read answers: Redis's meta while it holds one (it is never older than the
    record's: a job run again after it was archived writes Redis first), else the record's."""
    return redis_meta if redis_meta is not None else archived_meta(job)


def archived_outcome_exists(job_id: str) -> bool:
    """The job's record holds its final state (jobs/archive.py): it finished, and may have left Redis."""
    from jobs.models import Job

    return Job.objects.filter(pk=job_id, outcome__isnull=False).exists()


def mark_worker_lost(job_id: str) -> bool:
    """RETRY with a worker-lost marker: the job's worker died and its message is back in the
    queue. Never replaces a finished state. Returns whether it was written."""
    backend = _backend()
    result = {"exc_type": WORKER_LOST, "exc_message": ["worker lost"]}
    try:
        written = backend.client.eval(
            SET_UNLESS_FINISHED,
            1,
            backend.get_key_for_task(job_id),
            backend.encode(_meta(job_id, states.RETRY, result)),
            backend.expires,
        )
    except ResponseError as exc:
        # A full Redis refuses the script's SET (as a script error, not OutOfMemoryError). The
        # marker only tells clients why the job waits; the job's message is what matters.
        if not refused_for_memory(exc):
            raise
        logger.warning("Job %s: worker-lost marker not written: Redis is full", job_id)
        return False
    return bool(written)


def flag_revoked(job_id: str) -> None:
    """Durable cancellation mark: workers check it before and while running a job.

    Celery's own revoke list lives in each worker's memory only; this flag survives worker
    restarts and reaches workers that were offline when the job was cancelled.
    """
    backend = _backend()
    backend.client.set(REVOKED_FLAG_PREFIX + job_id, b"1", ex=backend.expires)


def is_revoked(job_id: str) -> bool:
    return bool(_backend().client.exists(REVOKED_FLAG_PREFIX + job_id))
