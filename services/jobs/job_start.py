"""A job's start on a worker in one Redis round trip: its delivery counted, its cancellation flag
read, and STARTED written with the count (jobs/base.py JobTask.before_start)."""

from celery import current_app
from redis.exceptions import OutOfMemoryError, ResponseError

from jobs.job_store import DELIVERIES_PREFIX, REVOKED_FLAG_PREFIX
from jobs.redis_memory import refused_for_memory, retry_while_full

# KEYS: the job's deliveries hash, its cancellation flag, its state's key. ARGV: the hash field
# of this attempt, the expiry in s (0: none), the most deliveries an attempt may have, and the
# STARTED meta cut in two where its delivery count goes. Counts the delivery, then - unless the
# job is cancelled or over its deliveries - writes STARTED with that count (Celery's rule: never
# over a SUCCESS) and publishes it as Celery's SET does. Returns {cancelled, total, this attempt}.
_start_script = None  # registered on first use, per process
START = """
local total = redis.call('HINCRBY', KEYS[1], 'total', 1)
local this = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
if ARGV[2] ~= '0' then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if redis.call('EXISTS', KEYS[2]) == 1 then return {1, total, this} end
if this > tonumber(ARGV[3]) then return {0, total, this} end
local current = redis.call('GET', KEYS[3])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' and meta.status == 'SUCCESS' then return {0, total, this} end
end
local value = ARGV[4] .. total .. ARGV[5]
if ARGV[2] ~= '0' then
  redis.call('SET', KEYS[3], value, 'EX', ARGV[2])
else
  redis.call('SET', KEYS[3], value)
end
redis.call('PUBLISH', KEYS[3], value)
return {0, total, this}
"""


# Stands in for the delivery count while the STARTED meta is encoded; cut out again before it is
# sent (start_delivery), so the meta is encoded once, by Celery's own code, with no count known.
DELIVERIES_PLACEHOLDER = 918273645546372819


def _raise_oom_as_such(call):
    """A script refused by a full Redis (its first write refused: nothing was written) raises
    OutOfMemoryError, as a plain command would, so retry_while_full waits for room."""

    def run():
        try:
            return call()
        except ResponseError as exc:
            if refused_for_memory(exc):
                raise OutOfMemoryError(str(exc)) from exc
            raise

    return run


def start_delivery(job_id: str, attempt: int, started_meta, max_deliveries: int) -> tuple[int, int, bool]:
    """A worker starts the job, in one round trip: count the delivery, read the cancellation flag,
    and (neither cancelled nor over max_deliveries) write STARTED. started_meta(placeholder) is
    the encoded STARTED meta whose delivery count is the placeholder.
    Returns (starts in all, starts of this attempt, cancelled)."""
    global _start_script
    backend = current_app.backend
    if _start_script is None:
        _start_script = backend.client.register_script(START)
    encoded = started_meta(DELIVERIES_PLACEHOLDER)
    encoded = encoded.encode() if isinstance(encoded, str) else encoded
    before, marker, after = encoded.partition(str(DELIVERIES_PLACEHOLDER).encode())
    if not marker or str(DELIVERIES_PLACEHOLDER).encode() in after:
        raise ValueError("the STARTED meta does not hold its delivery count once")

    def start():
        return _start_script(
            keys=[DELIVERIES_PREFIX + job_id, REVOKED_FLAG_PREFIX + job_id, backend.get_key_for_task(job_id)],
            args=[f"attempt:{attempt}", int(backend.expires or 0), max_deliveries, before, after],
        )

    # Refused as a whole when Redis is full (the script's first write): nothing was counted, so
    # it is run again.
    cancelled, total, this_attempt = retry_while_full(_raise_oom_as_such(start), f"job {job_id}'s start")
    return total, this_attempt, bool(cancelled)
