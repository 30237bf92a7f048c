"""What a finished job's record keeps of its Redis meta (pure): the outcome, when it finished,
whether the meta is a job's at all (jobs/archive.py writes them)."""

from datetime import datetime

from jobs.base import KINDS


def outcome_of(meta: dict) -> dict:
    """What the record keeps of a finished meta: what a read shows (status.describe), without
    the traceback or the task's arguments (pure)."""
    return without_nul(
        {"status": meta["status"], "result": meta.get("result"), "date_done": meta.get("date_done")}
    )


def finished_at(meta: dict, listed_at: float) -> float:
    """When the job finished (epoch seconds): its meta's date_done, else when it was listed (pure)."""
    try:
        return datetime.fromisoformat(meta["date_done"]).timestamp()
    except (KeyError, TypeError, ValueError):
        return listed_at


def is_job(meta: dict) -> bool:
    """Whether a finished meta is a job kind's (which has a record) rather than another task's,
    such as the housekeeping tasks (pure). States web writes (REVOKED) carry no task name: jobs."""
    name = meta.get("name")
    return name is None or name in {kind.task.name for kind in KINDS.values()}


def without_nul(value):
    """The value with NUL characters taken out of its strings, which PostgreSQL's jsonb refuses
    (pure): one job's odd result must not stop the archive."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [without_nul(item) for item in value]
    return value
