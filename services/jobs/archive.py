"""Finished jobs move from Redis into their PostgreSQL record: Redis's memory follows the jobs
in flight, not the jobs of the day.

Every finished state (SUCCESS, FAILURE, REVOKED) reaches Redis together with an entry in the
sorted set job_store.FINISHED_INDEX (job id -> when it finished). An archiver takes the oldest
entries, at most BATCH per pass, and
1. reads their metas (MGETs) and copies each finished one into its job's record (`outcome`,
   `finished_at`) in one UPDATE, committed;
2. only then, in one Redis script, removes each entry that still has the score it read (a job
   that finished again meanwhile keeps its newer entry) and, where the job's meta is still a
   finished one, cuts the life of its keys (meta, record copy, delivery count) to JOB_HOT_SECONDS
   after the finish - or deletes them at once while Redis is above the admission limit
   (JOB_STORE_ADMIT_PERCENT), when the room is needed.

So a result leaves Redis only once PostgreSQL has it, and reads answer from the record after
(job_store.current_meta). A job can finish before its record is committed (web commits the INSERT
after the Redis transaction that publishes the job, jobs/job_actions.py): its entry is left for a
later pass until the record shows up, for RECORD_WAIT at most (a record that never commits is
a submission that failed, answered 503). Entries of tasks that are not job kinds (the
housekeeping tasks) match no record and have their keys cut at once.

An entry left waiting for its record is listed again later (its score moved to when it is due:
after about as long again as it has waited: jobs/archive_index.py), so that entries that wait -
a job kind's task sent without the API, whose record never comes, or thousands of them after
their user was deleted - neither hold back the entries behind them nor have every pass read
them again (they did both: a worker's main process spent most of a CPU re-reading a batch of
them for RECORD_WAIT, while the jobs finished after them stayed in Redis).

The archiver is a thread in every worker's main process, one pass at a time across the stack (a
lock key; passes are idempotent, so they run without it when a full Redis refuses even that
write). Its PostgreSQL connection is its own, closed before the prefork pool forks a process.
"""

import json
import logging
import os
import threading
import time
import uuid

import psycopg
from celery import signals, states
from django.conf import settings
from redis.exceptions import OutOfMemoryError

from jobs import job_store, outcomes, redis_memory
from jobs.archive_index import POSTPONE, RELEASE, recheck_at
from jobs.models import Job

logger = logging.getLogger(__name__)

BATCH = 500
READ_CHUNK = 100  # metas per Redis reply
IDLE_WAIT = 1.0  # seconds between passes that found less than a full batch
LOCK_KEY = "jobs:archive-lock"
LOCK_SECONDS = 60  # outlives any pass (statement_timeout 10 s, Redis socket timeouts)
STATEMENT_TIMEOUT_MS = 10_000
ERROR_LOG_EVERY = 60.0  # seconds between two log lines of a failure that persists
RECORD_WAIT = 600.0  # seconds a finished job's entry waits for its record to be committed


class Archiver:
    """Runs archive passes in a thread until stopped."""

    def __init__(self):
        self.pass_lock = threading.Lock()  # held for a pass, and by a fork (see _before_fork)
        self._db = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None
        self._logged_at = float("-inf")
        self.largest_reply = 0  # bytes of the largest meta reply read (manage.py housekeeping)
        self.released = 0  # entries the last pass removed from the index

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="job-archiver", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=15)
        with self.pass_lock:
            self.close_db()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                done = self.run_pass()
                if self._failing_since is not None:
                    logger.info(
                        "Job archive works again (after %.0f s)", time.monotonic() - self._failing_since
                    )
                    self._failing_since = None
            except Exception as exc:  # noqa: BLE001 - PostgreSQL or Redis away: try again, never die
                done = 0
                now = time.monotonic()
                if self._failing_since is None:
                    self._failing_since = now
                if now - self._logged_at >= ERROR_LOG_EVERY:
                    self._logged_at = now
                    logger.warning(
                        "Job archive pass failed (%s: %s); finished jobs stay in Redis until it works",
                        type(exc).__name__,
                        exc,
                    )
                with self.pass_lock:
                    self.close_db()
            # At once again only after a full batch that moved jobs out (a backlog); a pass that
            # removed nothing has nothing to follow up.
            if done < BATCH or not self.released:
                self._stop.wait(IDLE_WAIT)

    def run_pass(self) -> int:
        """One pass under the stack-wide lock; returns how many entries it handled."""
        client = job_store.backend_client()
        token = uuid.uuid4().hex.encode()
        try:
            locked = bool(client.set(LOCK_KEY, token, nx=True, ex=LOCK_SECONDS))
            if not locked:
                return 0  # another worker's archiver is in a pass
        except OutOfMemoryError:
            locked = False  # Redis is full: run without the lock (see the module's docstring)
        try:
            with self.pass_lock:
                return self.archive_batch()
        finally:
            if locked and client.get(LOCK_KEY) == token:
                client.delete(LOCK_KEY)

    def archive_batch(self) -> int:
        """Archive the oldest entries that are due, BATCH at most; returns how many it read."""
        client = job_store.backend_client()
        self.released = 0
        entries = client.zrangebyscore(
            job_store.FINISHED_INDEX, "-inf", time.time(), start=0, num=BATCH, withscores=True
        )
        if not entries:
            return 0
        ids = [member.decode() for member, _ in entries]
        # Read in small replies: a reply counts towards Redis's memory while it is written out.
        metas = []
        for start in range(0, len(ids), READ_CHUNK):
            raws = client.mget([job_store.meta_key(job_id) for job_id in ids[start : start + READ_CHUNK]])
            self.largest_reply = max(self.largest_reply, sum(len(raw) for raw in raws if raw))
            metas += [job_store.decode_meta(raw) for raw in raws]
        finished = {
            job_id: meta
            for job_id, meta in zip(ids, metas, strict=True)
            if meta is not None and meta.get("status") in states.READY_STATES
        }
        rows = [
            (job_id, json.dumps(outcomes.outcome_of(meta)), outcomes.finished_at(meta, score))
            for job_id, (_, score) in zip(ids, entries, strict=True)
            if (meta := finished.get(job_id))
        ]
        archived = self._write_records(rows) if rows else set()
        now = time.time()
        # Finished jobs whose record is not there (yet) keep their entry, due again later.
        release, waiting = [], []
        for job_id, (_, score) in zip(ids, entries, strict=True):
            meta = finished.get(job_id)
            ended = outcomes.finished_at(meta, score) if meta else score
            if meta and job_id not in archived and outcomes.is_job(meta) and now - ended < RECORD_WAIT:
                # Timed by its meta's date_done, which moving its entry does not change (every
                # finished meta has one; one without stays where it is, timed by its entry).
                if meta.get("date_done"):
                    waiting.append((job_id, score, ended))
            else:
                release.append((job_id, score))
        if waiting:
            due = (
                value
                for job_id, score, ended in waiting
                for value in (job_id, repr(score), repr(recheck_at(now, ended)))
            )
            client.eval(POSTPONE, 1, job_store.FINISHED_INDEX, *due)
        used, maximum = redis_memory.memory_use(max_age=0)
        keep = (
            0
            if redis_memory.over_admit_limit(used, maximum, settings.JOB_STORE_ADMIT_PERCENT)
            else settings.JOB_HOT_SECONDS
        )
        keys = [job_store.FINISHED_INDEX]
        argv = [keep, now]
        for job_id, score in release:
            keys += [
                job_store.meta_key(job_id),
                job_store.RECORD_PREFIX + job_id,
                job_store.DELIVERIES_PREFIX + job_id,
            ]
            argv += [job_id, repr(score)]
        if release:
            self.released = client.eval(RELEASE, len(keys), *keys, *argv)
        return len(entries)

    def _write_records(self, rows: list[tuple[str, str, float]]) -> set[str]:
        """One UPDATE for the batch (arrays unnested into rows), committed; the ids it updated."""
        db = self._connection()
        job_ids, outcomes, finished = (list(column) for column in zip(*rows, strict=True))
        try:
            with db.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {Job._meta.db_table} AS job SET outcome = v.outcome, "
                    "finished_at = to_timestamp(v.finished) "
                    "FROM unnest(%s::text[], %s::text[]::jsonb[], %s::float8[]) AS v(id, outcome, finished) "
                    "WHERE job.id = v.id RETURNING job.id",
                    (job_ids, outcomes, finished),
                )
                updated = {row[0] for row in cursor.fetchall()}
            db.commit()
        except BaseException:
            self.close_db()
            raise
        return updated

    def _connection(self) -> psycopg.Connection:
        if self._db is None or self._db.closed:
            config = settings.DATABASES["default"]
            options = config.get("OPTIONS", {})
            self._db = psycopg.connect(
                host=config["HOST"],
                port=config["PORT"],
                dbname=config["NAME"],
                user=config["USER"],
                password=config["PASSWORD"],
                application_name="job-archiver",
                options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                **{
                    key: options[key]
                    for key in (
                        "connect_timeout",
                        "keepalives",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                    )
                    if key in options
                },
            )
        return self._db

    def close_db(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            try:
                db.close()
            except Exception:  # noqa: BLE001 - already broken
                pass


ARCHIVER: Archiver | None = None


# The prefork pool forks its processes from the worker's main process, where the archiver's
# thread may hold a PostgreSQL connection: a child would inherit its socket. The fork waits for
# the pass in progress, and the connection is closed first (the next pass opens another).
def _before_fork() -> None:
    if ARCHIVER is not None:
        ARCHIVER.pass_lock.acquire()
        ARCHIVER.close_db()


def _after_fork_in_parent() -> None:
    if ARCHIVER is not None:
        ARCHIVER.pass_lock.release()


def _after_fork_in_child() -> None:
    global ARCHIVER
    ARCHIVER = None  # a pool process archives nothing; its copy of the lock is left held


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)


@signals.worker_ready.connect
def _start_archiver(sender, **kwargs) -> None:
    global ARCHIVER
    if ARCHIVER is None:
        ARCHIVER = Archiver()
        ARCHIVER.start()


@signals.worker_shutdown.connect
def _stop_archiver(sender, **kwargs) -> None:
    global ARCHIVER
    archiver, ARCHIVER = ARCHIVER, None
    if archiver is not None:
        archiver.stop()
