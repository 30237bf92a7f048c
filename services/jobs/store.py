"""Job state in the Celery result backend (Redis): one key read per status request.

Reads go straight to the backend's Redis client - never AsyncResult.get(), which opens a
pub/sub subscription per call. The meta format is Celery's own, so Flower, AsyncResult and
this module all read the same keys.
"""

from celery import current_app, states
from django.utils import timezone

REVOKED_FLAG_PREFIX = "jobs:revoked:"


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


def write_meta(job_id: str, state: str, result: dict) -> None:
    """Store a state the way Celery does, with the result expiry; one SET, no retry loop.

    Used by web for PENDING at submission (so an id that was submitted is never confused
    with one that was not) and for REVOKED at cancellation.
    """
    backend = _backend()
    meta = {
        "status": state,
        "result": result,
        "traceback": None,
        "children": [],
        "date_done": timezone.now().isoformat() if state in states.READY_STATES else None,
        "task_id": job_id,
    }
    backend.client.set(backend.get_key_for_task(job_id), backend.encode(meta), ex=backend.expires)


def flag_revoked(job_id: str) -> None:
    """Durable cancellation mark: workers check it before and while running a job.

    Celery's own revoke list lives in each worker's memory only; this flag survives worker
    restarts and reaches workers that were offline when the job was cancelled.
    """
    backend = _backend()
    backend.client.set(REVOKED_FLAG_PREFIX + job_id, b"1", ex=backend.expires)


def is_revoked(job_id: str) -> bool:
    return bool(_backend().client.exists(REVOKED_FLAG_PREFIX + job_id))
