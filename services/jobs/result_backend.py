"""Celery's Redis result backend, fitted to the job store: no pub/sub round trips per task
sent, one round trip per state written, finished states listed for the archive, and writes that
wait out a full Redis.

- Celery's RedisBackend subscribes to a task's result channel as the task is sent (ready for an
  AsyncResult.get() that may follow) and unsubscribes when that AsyncResult is dropped: two
  extra Redis round trips on every apply_async. Nothing in this stack waits on
  AsyncResult.get(): job state is read with one GET (jobs/job_store.py). AsyncResult.get() still
  works where someone calls it: it subscribes then, and reads the stored state after
  subscribing, so no result is missed.
- Celery reads a task's state before each write (a GET, then the SET in a second round trip) so
  that a SUCCESS is never overwritten by a late duplicate. Here the same rule runs inside Redis,
  in one script (STORE_UNLESS_SUCCEEDED): one round trip per state instead of two.
- A finished state (SUCCESS, FAILURE, REVOKED) goes to Redis in that same script with its entry
  in job_store.FINISHED_INDEX, from which jobs/archive.py copies it into PostgreSQL.
- REVOKED is never written over a finished state, in Redis or archived. A job cancelled while
  queued is answered REVOKED by web at once; when a worker later takes its message, Celery (the
  revoked request) or JobTask (the flag) would write REVOKED again, with a later finish time.
- No copy of the job's arguments in each state it writes (result_extended would add them):
  they are in the job's record already, and would double a big job's footprint in Redis.
- Redis at maxmemory refuses writes (noeviction). A state write is then retried with backoff
  (result_backend_always_retry, as for a lost connection) until finishing jobs free room,
  instead of failing the job: its result is kept by the worker until it can be written.
"""

import time

from celery import states
from celery.backends.redis import RedisBackend
from celery.exceptions import BackendStoreError
from kombu.utils.encoding import bytes_to_str
from redis.exceptions import OutOfMemoryError, ResponseError

from jobs import job_store
from jobs.redis_memory import refused_for_memory

# KEYS: the state's key, job_store.FINISHED_INDEX. ARGV: the encoded meta, its expiry in s (0: none),
# "1" if the state is a finished one, the job id, now (epoch s), "1" if it is REVOKED and must
# not replace a finished state. Celery's rule, kept: a stored SUCCESS is never replaced.
# Returns 1 if written, 0 if not, -1 (REVOKED, nothing stored) to have the record checked first.
STORE_UNLESS_SUCCEEDED = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, meta = pcall(cjson.decode, current)
  if ok and type(meta) == 'table' then
    if meta.status == 'SUCCESS' then return 0 end
    if ARGV[6] == '1' and (meta.status == 'FAILURE' or meta.status == 'REVOKED') then return 0 end
  end
elseif ARGV[6] == '1' then
  return -1
end
if ARGV[2] ~= '0' then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
else
  redis.call('SET', KEYS[1], ARGV[1])
end
if ARGV[3] == '1' then redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4]) end
redis.call('PUBLISH', KEYS[1], ARGV[1])
return 1
"""


class JobResultBackend(RedisBackend):
    _store_script = None

    def on_task_call(self, producer, task_id):
        return {}

    def _get_result_meta(self, *args, **kwargs):
        meta = super()._get_result_meta(*args, **kwargs)
        meta.pop("args", None)
        meta.pop("kwargs", None)
        return meta

    def exception_safe_to_retry(self, exc):
        return isinstance(exc, OutOfMemoryError) or super().exception_safe_to_retry(exc)

    def _store_result(self, task_id, result, state, traceback=None, request=None, **kwargs):
        meta = self._get_result_meta(result=result, state=state, traceback=traceback, request=request)
        meta["task_id"] = bytes_to_str(task_id)
        value = self.encode(meta)
        if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
            raise BackendStoreError("value too large for Redis backend", state=state, task_id=task_id)
        written = self.ensure(self._store_unless_succeeded, (task_id, value, state, state == states.REVOKED))
        if written == -1 and not job_store.archived_outcome_exists(bytes_to_str(task_id)):
            self.ensure(self._store_unless_succeeded, (task_id, value, state, False))
        return result

    def _store_unless_succeeded(self, task_id, value, state, only_over_unfinished=False):
        if self._store_script is None:
            # EVALSHA, loading the script again after a Redis restart (NOSCRIPT).
            self._store_script = self.client.register_script(STORE_UNLESS_SUCCEEDED)
        task_id = bytes_to_str(task_id)
        try:
            return self._store_script(
                keys=[self.get_key_for_task(task_id), job_store.FINISHED_INDEX],
                args=[
                    value,
                    int(self.expires or 0),
                    int(state in states.READY_STATES),
                    task_id,
                    time.time(),
                    int(only_over_unfinished),
                ],
            )
        except ResponseError as exc:
            # A full Redis refuses the script's first write, so nothing was written: say so as
            # the retryable refusal it is (exception_safe_to_retry).
            if refused_for_memory(exc):
                raise OutOfMemoryError(str(exc)) from exc
            raise
