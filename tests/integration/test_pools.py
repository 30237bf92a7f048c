"""integration: the worker pools CELERY_WORKER_POOL offers (prefork, threads, gevent, solo) on
real worker processes and the real Redis 5.0 broker: each runs jobs, each stops a cancelled
running job the way .env.example says, and gevent runs a hundred waiting jobs at once.

Each test uses queues of its own, so the session worker (queue "jobs") never takes these jobs.
"""

import time
import uuid
from datetime import datetime

import pytest

from jobs import job_actions, presentation
from tests.integration.helpers import send, state
from tests.integration.workers import running_worker
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

POOLS = ("prefork", "threads", "gevent", "solo")


def pool_worker(pool: str, queue: str, concurrency: int = 2):
    # --pool on the command line, as compose/start/start-worker passes it (gevent patches then).
    return running_worker(
        f"it-{pool}", queue, concurrency=concurrency, extra=("--pool", pool), env={"CELERY_WORKER_POOL": pool}
    )


def job(job_id: str) -> dict:
    return presentation.describe(state(job_id) or None)


@pytest.mark.parametrize("pool", POOLS)
def test_cancel_stops_a_running_job_as_documented(pool, settings):
    """prefork and gevent terminate the running job (the log says "Terminating"); threads and
    solo cannot, so the job stops at its next progress report when it sees the flag. Either
    way it ends REVOKED, never SUCCESS, and the worker goes on to the next job."""
    queue = f"it-pool-{pool}-{uuid.uuid4().hex[:6]}"
    with pool_worker(pool, queue) as worker:
        long = send("wait_io", queue, seconds=60, steps=60)
        wait_until(
            lambda: job(long)["state"] == "PROGRESS",
            timeout=60,
            interval=0.2,
            what=f"the long job running on {pool}",
        )
        settings.CELERY_WORKER_POOL = pool  # web's view of the pool, as compose gives both
        job_actions.stop_delivery(long)
        wait_until(
            lambda: job(long)["state"] == "REVOKED",
            timeout=30,
            interval=0.2,
            what="the cancelled job REVOKED",
        )
        if pool in job_actions.TERMINATING_POOLS:
            wait_until(
                lambda: f"Terminating {long}" in worker.log(),
                timeout=30,
                what="the worker terminating the job",
            )
        else:
            wait_until(
                lambda: f"Job {long} was cancelled; not running it further" in worker.log(),
                timeout=30,
                what="the job stopping at its next progress report",
            )
            assert f"Terminating {long}" not in worker.log()
        after = send("noop", queue)
        wait_until(
            lambda: job(after)["state"] == "SUCCESS", timeout=60, interval=0.2, what=f"the next job on {pool}"
        )
        assert job(long)["state"] == "REVOKED"
        assert f"Task jobs.wait_io[{long}] succeeded" not in worker.log()


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_pools_that_cannot_stop_a_job_still_hold_it_to_its_time_limits(pool):
    """Celery enforces time limits only on prefork and gevent; on threads and solo a job past its
    soft limit is ended at its next progress report ("exceeded its time limit"), so it never
    outlasts the visibility timeout. Limits shortened (2 s, 4 s) to reach them sooner."""
    queue = f"it-limit-{pool}-{uuid.uuid4().hex[:6]}"
    with running_worker(
        f"it-limit-{pool}",
        queue,
        extra=("--pool", pool),
        env={"CELERY_WORKER_POOL": pool, "CELERY_TASK_SOFT_TIME_LIMIT": "2", "CELERY_TASK_TIME_LIMIT": "4"},
    ):
        long = send("wait_io", queue, seconds=60, steps=120)
        wait_until(
            lambda: job(long)["state"] in ("FAILURE", "SUCCESS"),
            timeout=30,
            interval=0.2,
            what=f"the job past its limits ended on {pool}",
        )
        body = job(long)
        assert body["state"] == "FAILURE" and body["error"] == "The job exceeded its time limit.", body


def most_at_once(spans: list[tuple[float, float]]) -> int:
    """The largest number of (start, end) intervals overlapping at one instant."""
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    return peak


def test_gevent_worker_runs_a_hundred_io_bound_jobs_at_once():
    """One gevent worker with concurrency 100 and 100 jobs each waiting 2 s: they overlap (most
    run at the same moment, by their own start and finish times), where prefork would run
    them one per process. The wall time is printed, not asserted."""
    queue = f"it-gevent100-{uuid.uuid4().hex[:6]}"
    with pool_worker("gevent", queue, concurrency=100):
        began = time.monotonic()
        ids = [send("wait_io", queue, seconds=2, steps=1) for _ in range(100)]
        wait_until(
            lambda: all(job(i)["state"] == "SUCCESS" for i in ids),
            timeout=180,
            interval=0.5,
            what="100 wait_io jobs SUCCESS",
        )
        took = time.monotonic() - began
    spans = [
        (
            datetime.fromisoformat(job(i)["started_at"]).timestamp(),
            datetime.fromisoformat(job(i)["finished_at"]).timestamp(),
        )
        for i in ids
    ]
    peak = most_at_once(spans)
    print(
        f"gevent, concurrency 100: 100 jobs of 2 s in {took:.1f} s wall time; at most {peak} running at once"
    )
    assert peak >= 50, f"only {peak} of 100 I/O-bound jobs ran at once on the gevent pool"
