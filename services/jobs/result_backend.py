"""Celery's Redis result backend, fitted to the job store: no pub/sub round trips per task
sent, finished states listed for the archive, and writes that wait out a full Redis.

- Celery's RedisBackend subscribes to a task's result channel as the task is sent (ready for an
  AsyncResult.get() that may follow) and unsubscribes when that AsyncResult is dropped: two
  extra Redis round trips on every apply_async. Nothing in this stack waits on
  AsyncResult.get(): job state is read with one GET (jobs/job_store.py). AsyncResult.get() still
  works where someone calls it: it subscribes then, and reads the stored state after
  subscribing, so no result is missed.
- A finished state (SUCCESS, FAILURE, REVOKED) goes to Redis in one transaction with its entry
  in store.FINISHED_INDEX, from which jobs/archive.py copies it into PostgreSQL.
- No copy of the job's arguments in each state it writes (result_extended would add them):
  they are in the job's record already, and would double a big job's footprint in Redis.
- Redis at maxmemory refuses writes (noeviction). A state write is then retried with backoff
  (result_backend_always_retry, as for a lost connection) until finishing jobs free room,
  instead of failing the job: its result is kept by the worker until it can be written.
"""

import time

from celery import states
from celery.backends.redis import RedisBackend
from redis.exceptions import OutOfMemoryError

from jobs.job_store import FINISHED_INDEX


class JobResultBackend(RedisBackend):
    def on_task_call(self, producer, task_id):
        return {}

    def _get_result_meta(self, *args, **kwargs):
        meta = super()._get_result_meta(*args, **kwargs)
        meta.pop("args", None)
        meta.pop("kwargs", None)
        return meta

    def exception_safe_to_retry(self, exc):
        return isinstance(exc, OutOfMemoryError) or super().exception_safe_to_retry(exc)

    def _set_with_state(self, key, value, state):
        if state not in states.READY_STATES:
            return self.set(key, value)
        if isinstance(value, str) and len(value) > self._MAX_STR_VALUE_SIZE:
            return self.set(key, value)  # Celery's own refusal (BackendStoreError)
        return self.ensure(self._set_finished, (key, value))

    def _set_finished(self, key, value):
        job_id = key[len(self.task_keyprefix):]
        with self.client.pipeline() as pipe:
            if self.expires:
                pipe.setex(key, self.expires, value)
            else:
                pipe.set(key, value)
            pipe.zadd(FINISHED_INDEX, {job_id: time.time()})
            pipe.publish(key, value)
            pipe.execute()
