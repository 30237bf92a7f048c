"""Job state in the Celery result backend (Redis): one key read per status request.

Reads go straight to the backend's Redis client - never AsyncResult.get(), which opens a
pub/sub subscription per call. The meta format is Celery's own, so Flower, AsyncResult and
this module all read the same keys.
"""

import json
from datetime import datetime

from celery import current_app, states
from django.utils import timezone

from jobs.status import WORKER_LOST

REVOKED_FLAG_PREFIX = "jobs:revoked:"
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
    return [backend.decode(raw) if raw else None for raw in raws]


def meta_key(job_id: str) -> bytes:
    return _backend().get_key_for_task(job_id)


def encode_record(job) -> bytes:
    """The record copy: what a status answer shows of the job, and whose it is."""
    return json.dumps({"user": job.user_id, "owner": job.owner, "name": job.name, "run": job.run,
                       "kind": job.kind, "params": job.params,
                       "submitted_at": job.submitted_at.isoformat()}, separators=(",", ":")).encode()


def decode_record(job_id: str, raw: bytes | None):
    """An unsaved Job from a record copy, or None (absent or unreadable)."""
    if raw is None:
        return None
    from jobs.models import Job

    try:
        data = json.loads(raw)
        return Job(id=job_id, owner=data["owner"], user_id=data["user"], name=data["name"],
                   run=data["run"], kind=data["kind"], params=data["params"],
                   submitted_at=datetime.fromisoformat(data["submitted_at"]))
    except (ValueError, KeyError, TypeError):
        return None


def pending_writes(job, result: dict) -> list[tuple[bytes | str, bytes, int]]:
    """The Redis writes of a submission: PENDING state and record copy, with the result expiry."""
    backend = _backend()
    return [(backend.get_key_for_task(job.id), backend.encode(_meta(job.id, states.PENDING, result)),
             backend.expires),
            (RECORD_PREFIX + job.id, encode_record(job), backend.expires)]


def read_status(job_id: str, *also: str):
    """(meta, record copy as an unsaved Job or None, raw values of the keys `also`) in one round
    trip (MGET): a status read's token-cache entry comes with the job's state."""
    backend = _backend()
    raw_meta, raw_record, *others = backend.client.mget(
        [backend.get_key_for_task(job_id), RECORD_PREFIX + job_id, *also])
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
    """Store a state the way Celery does, with the result expiry; one SET, no retry loop.

    Used by web for PENDING at submission (so an id that was submitted is never confused
    with one that was not) and for REVOKED at cancellation.
    """
    backend = _backend()
    backend.client.set(backend.get_key_for_task(job_id), backend.encode(_meta(job_id, state, result)),
                       ex=backend.expires)


def mark_worker_lost(job_id: str) -> bool:
    """RETRY with a worker-lost marker: the job's worker died and its message is back in the
    queue. Never replaces a finished state. Returns whether it was written."""
    backend = _backend()
    result = {"exc_type": WORKER_LOST, "exc_message": ["worker lost"]}
    written = backend.client.eval(SET_UNLESS_FINISHED, 1, backend.get_key_for_task(job_id),
                                  backend.encode(_meta(job_id, states.RETRY, result)), backend.expires)
    return bool(written)


def start_delivery(job_id: str, attempt: int) -> tuple[int, int, bool]:
    """A worker starts the job: count the delivery and read the cancellation flag in the same
    transaction (one round trip): (starts in all, starts of this attempt, cancelled)."""
    backend = _backend()
    key = DELIVERIES_PREFIX + job_id
    with backend.client.pipeline(transaction=True) as pipe:
        pipe.exists(REVOKED_FLAG_PREFIX + job_id)
        pipe.hincrby(key, "total", 1)
        pipe.hincrby(key, f"attempt:{attempt}", 1)
        pipe.expire(key, backend.expires)
        cancelled, total, this_attempt, _ = pipe.execute()
    return total, this_attempt, bool(cancelled)


def flag_revoked(job_id: str) -> None:
    """Durable cancellation mark: workers check it before and while running a job.

    Celery's own revoke list lives in each worker's memory only; this flag survives worker
    restarts and reaches workers that were offline when the job was cancelled.
    """
    backend = _backend()
    backend.client.set(REVOKED_FLAG_PREFIX + job_id, b"1", ex=backend.expires)


def is_revoked(job_id: str) -> bool:
    return bool(_backend().client.exists(REVOKED_FLAG_PREFIX + job_id))
