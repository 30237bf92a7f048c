"""How a job's stored meta is shown to clients (pure logic, unit-tested without services)."""

from celery import states

from jobs.job_store import FINISHED_STATES, PROGRESS, WORKER_LOST

EXPIRED = "EXPIRED"

# Failures whose meaning is known; anything else is reported without its internals.
_TIME_LIMIT_ERRORS = {"SoftTimeLimitExceeded", "TimeLimitExceeded"}
SAFE_MESSAGE_ERRORS = {"JobError"}
GENERIC_FAILURE = "The job failed because of an internal error."
WORKER_LOST_MESSAGE = (
    "The worker running this job stopped (killed, or out of memory); the job is queued to run again."
)


def safe_error(result) -> str:
    """A message for a FAILURE that reveals no traceback, path or internal detail."""
    if not isinstance(result, dict):
        return GENERIC_FAILURE
    exc_type = result.get("exc_type")
    message = result.get("exc_message")
    if isinstance(message, (list, tuple)):
        message = message[0] if message else ""
    if exc_type in SAFE_MESSAGE_ERRORS and isinstance(message, str):
        return message
    if exc_type in _TIME_LIMIT_ERRORS:
        return "The job exceeded its time limit."
    if exc_type == "TransientJobError":
        return "The job kept failing with a temporary error and gave up after its retries."
    return GENERIC_FAILURE


def state_of(meta: dict | None) -> str:
    return meta["status"] if meta else EXPIRED


def describe(meta: dict | None) -> dict:
    """State, progress, result or error, worker and timestamps from one Celery meta record.

    meta None means the record is absent: for a job known to exist, its result expired.
    """
    state = state_of(meta)
    body = {
        "state": state,
        "progress": None,
        "result": None,
        "error": None,
        "worker": None,
        "started_at": None,
        "finished_at": None,
        "deliveries": None,
    }
    if meta is None:
        body["error"] = "The job's state and result expired and were deleted."
        return body
    info = meta.get("result")
    if isinstance(info, dict) and state in (states.STARTED, PROGRESS, states.SUCCESS):
        body["worker"] = info.get("hostname")
        body["started_at"] = info.get("started_at")
        # How many times a worker started it: 2 or more after a worker died under it.
        body["deliveries"] = info.get("deliveries")
    if state == PROGRESS and isinstance(info, dict):
        current, total = info.get("current", 0), info.get("total", 0)
        body["progress"] = {
            "current": current,
            "total": total,
            "percent": round(100 * current / total, 1) if total else None,
            "message": info.get("message", ""),
        }
    elif state == states.SUCCESS:
        body["result"] = info.get("output") if isinstance(info, dict) else info
    elif state == states.FAILURE:
        body["error"] = safe_error(info)
    elif state == states.REVOKED:
        body["error"] = "The job was cancelled."
    elif state == states.RETRY and isinstance(info, dict) and info.get("exc_type") == WORKER_LOST:
        body["error"] = WORKER_LOST_MESSAGE
    elif state == states.RETRY:
        body["error"] = "A temporary error occurred; the job will be retried."
    if state in FINISHED_STATES:
        body["finished_at"] = meta.get("date_done")
    return body


def is_finished(meta: dict | None) -> bool:
    """True once the job can change no more (finished, failed, cancelled or expired)."""
    return meta is None or meta["status"] in FINISHED_STATES
