"""Redis's memory, as the job store sees it: new jobs are admitted only while Redis has room for
the jobs already accepted (JOB_STORE_ADMIT_PERCENT of maxmemory), and a worker's writes about an
accepted job wait for room rather than fail (docs/capacity.md)."""

import logging
import threading
import time

from celery import current_app
from django.conf import settings
from redis.exceptions import OutOfMemoryError, ResponseError

logger = logging.getLogger(__name__)

MEMORY_READ_EVERY = 0.25  # seconds between two INFO reads of one process
_memory_lock = threading.Lock()
_memory_reading: tuple[float, int, int] = (float("-inf"), 0, 0)  # (when, used_memory, maxmemory)


def parse_memory_info(info: dict) -> tuple[int, int]:
    """(used_memory, maxmemory) from the INFO memory section (pure; maxmemory 0 = no limit)."""
    return int(info.get("used_memory", 0)), int(info.get("maxmemory", 0))


def memory_use(max_age: float = MEMORY_READ_EVERY) -> tuple[int, int]:
    """(used_memory, maxmemory) of the Redis server, read at most every max_age seconds per
    process: a submission costs no extra round trip."""
    global _memory_reading
    at, used, maximum = _memory_reading
    if time.monotonic() - at < max_age:
        return used, maximum
    with _memory_lock:
        at, used, maximum = _memory_reading
        if time.monotonic() - at >= max_age:
            used, maximum = parse_memory_info(current_app.backend.client.info("memory"))
            _memory_reading = (time.monotonic(), used, maximum)
    return used, maximum


class JobStoreFull(OutOfMemoryError):
    """Redis holds JOB_STORE_ADMIT_PERCENT of its maxmemory: no new job until running ones
    free room (answered 503, web/errors.py, like Redis's own refusal at maxmemory)."""


def over_admit_limit(used: int, maximum: int, percent: int) -> bool:
    """Whether Redis is too full to take new jobs (pure): no maxmemory means no limit known."""
    return maximum > 0 and used * 100 >= maximum * percent


def check_room_for_new_job() -> None:
    """Raise JobStoreFull while Redis holds JOB_STORE_ADMIT_PERCENT of its maxmemory or more."""
    if over_admit_limit(*memory_use(), settings.JOB_STORE_ADMIT_PERCENT):
        raise JobStoreFull("Redis is above the share of its memory new jobs may fill")


FULL_LOG_EVERY = 10.0  # seconds between two "Redis is full" warnings of a process
_full_logged_at = float("-inf")


def retry_while_full(write, what: str, cap: float = 1.0):
    """Run a Redis write, and while Redis refuses it for lack of memory (maxmemory reached, no
    eviction) wait and run it again: a worker's write about a job already accepted is never
    given up (the job would be lost), it waits for the room that finishing jobs free."""
    global _full_logged_at
    delay = 0.01
    while True:
        try:
            return write()
        except OutOfMemoryError:
            if time.monotonic() - _full_logged_at >= FULL_LOG_EVERY:
                _full_logged_at = time.monotonic()
                logger.warning("Redis is full (maxmemory): %s waits for room", what)
            time.sleep(delay)
            delay = min(cap, delay * 2)


def refused_for_memory(exc: BaseException) -> bool:
    """Whether Redis refused a command, or a script's command, for lack of memory (maxmemory)."""
    return isinstance(exc, OutOfMemoryError) or (isinstance(exc, ResponseError) and "-OOM " in str(exc))
