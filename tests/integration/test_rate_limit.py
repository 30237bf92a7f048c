"""integration: a per-kind rate limit from JOB_RATE_LIMITS applies in a real worker.

Rate limits are read from settings.JOB_RATE_LIMITS when the tasks are defined (at import), so
a worker started with JOB_RATE_LIMITS="noop=2/s" enforces them. That worker is started here, a
dedicated subprocess on its own queue so the session worker (no limit, queue "jobs") never
takes these jobs. The jobs are sent to that queue with the task's apply_async, since the API
always routes to "jobs"; the limit being tested lives in the worker, not in the API.
"""

import statistics
import uuid
from datetime import datetime

import pytest
from celery import current_app

from jobs import job_store
from jobs.base import KINDS
from tests.integration.workers import running_worker
from tests.support.wait import wait_until

QUEUE = "it-ratelimit"
RATE = 2  # jobs per second
LIMITS = f"noop={RATE}/s"


@pytest.fixture(scope="module")
def rate_limited_worker():
    with running_worker(
        "it-ratelimit", QUEUE, env={"JOB_RATE_LIMITS": LIMITS}, extra=("--without-mingle", "--without-gossip")
    ) as worker:
        yield worker.node


def registered(node: str) -> list[str]:
    reply = current_app.control.inspect(destination=[node], timeout=2.0).registered("rate_limit")
    return reply[node]


def test_the_limit_is_configured_only_where_given(rate_limited_worker, celery_worker_process):
    from tests.integration.helpers import WORKER_NODE

    # Celery lists a task with "[rate_limit=...]" only when it has one.
    limited = registered(rate_limited_worker)
    assert f"jobs.noop [rate_limit={RATE}/s]" in limited
    assert "jobs.sum_number" in limited  # other kinds: no limit
    assert "jobs.noop" in registered(WORKER_NODE)  # the session worker: no limit either


def test_rate_limited_jobs_are_spaced_out(rate_limited_worker):
    count = 6
    job_ids = [str(uuid.uuid4()) for _ in range(count)]
    for job_id in job_ids:
        KINDS["noop"].task.apply_async(task_id=job_id, queue=QUEUE)

    def all_done():
        metas = job_store.read_many(job_ids)
        return metas if all(meta and meta["status"] == "SUCCESS" for meta in metas) else None

    metas = wait_until(all_done, timeout=30, interval=0.1, what="the rate-limited jobs to finish")
    assert {meta["worker"] for meta in metas} == {rate_limited_worker}
    starts = sorted(datetime.fromisoformat(meta["result"]["started_at"]) for meta in metas)
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(starts, starts[1:])]
    # 2/s: a token bucket of one lets a job start every 0.5 s; unlimited, these starts are
    # milliseconds apart. Kombu's bucket counts the idle time before the first job as refill,
    # so the first two jobs may start together; and a start delayed by a busy machine shortens
    # the gap after it. So the whole span and the median gap are checked (20 % slack).
    span = (starts[-1] - starts[0]).total_seconds()
    assert span >= 0.8 * (count - 2) / RATE, gaps
    assert statistics.median(gaps) >= 0.8 / RATE, gaps
