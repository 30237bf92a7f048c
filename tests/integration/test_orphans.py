"""integration: a dead worker's jobs are put back in the queue by live workers (jobs.dead_workers),
on the real Redis 5.0 broker with real worker processes killed with SIGKILL.

The workers here run with JOB_WORKER_LOST_AFTER=10 (the minimum; 30 by default) so the
mechanism is checked in seconds; the compose defaults are exercised by the e2e chaos suite.
Each test uses queues of its own, so the session worker (queue "jobs") never takes these jobs.
"""

import json
import os
import signal
import time
import uuid

import pytest
from celery import current_app

from jobs import job_store
from jobs.base import too_many_deliveries_message
from jobs.dead_workers import UNACKED, UNACKED_INDEX, WORKER_KEY_PREFIX, DeliveryWatch
from tests.integration.helpers import redis_client, send, state
from tests.integration.workers import running_worker, start_worker
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

LOST_AFTER = 10
FAST = {"JOB_WORKER_LOST_AFTER": str(LOST_AFTER)}


def unacked_ids() -> set[str]:
    return {json.loads(raw)[0]["headers"]["id"] for raw in redis_client(0).hvals(UNACKED)}


def queued(queue: str) -> list[dict]:
    return [json.loads(raw) for raw in redis_client(0).lrange(queue, 0, -1)]


def live_workers() -> set[str]:
    return {
        key.decode().removeprefix(WORKER_KEY_PREFIX).rsplit(":", 1)[0]
        for key in redis_client(0).scan_iter(match=WORKER_KEY_PREFIX + "*")
    }


def test_a_killed_workers_running_and_prefetched_jobs_are_put_back_once():
    queue, other = f"it-orphans-{uuid.uuid4().hex[:6]}", f"it-sweeper-{uuid.uuid4().hex[:6]}"
    # One pool process, two messages held: one running, one prefetched behind it.
    victim = start_worker(
        "it-victim", queue, concurrency=1, env={**FAST, "CELERY_WORKER_PREFETCH_MULTIPLIER": "2"}
    )
    try:
        running = send("model_inference", queue, text="orphan", steps=40, step_seconds=0.5)
        prefetched = send("noop", queue)
        wait_until(lambda: state(running).get("status") == "PROGRESS", timeout=30, what="the job running")
        wait_until(
            lambda: {running, prefetched} <= unacked_ids(),
            timeout=30,
            what="both messages held by the victim",
        )
        assert victim.node in live_workers()
    finally:
        victim.kill()
    killed = time.monotonic()
    assert {running, prefetched} <= unacked_ids()  # nothing handed them back
    assert state(running)["status"] == "PROGRESS"  # the last word of the dead worker

    # A live worker on another queue notices and puts both back in `queue`, where nobody
    # consumes them yet: what was done can be read before anything runs them again.
    with running_worker("it-sweeper", other, env=FAST) as sweeper:
        wait_until(
            lambda: {running, prefetched} <= {m["headers"]["id"] for m in queued(queue)},
            timeout=4 * LOST_AFTER,
            interval=0.2,
            what="both jobs put back in their queue",
        )
        took = time.monotonic() - killed
        assert took < 4 * LOST_AFTER, took
        assert not {running, prefetched} & unacked_ids()
        messages = {m["headers"]["id"]: m for m in queued(queue)}
        assert len(queued(queue)) == 2  # once each
        assert all(m["headers"]["redelivered"] for m in messages.values())
        meta = state(running)
        assert meta["status"] == "RETRY" and meta["result"]["exc_type"] == "WorkerLostError", meta
        assert "put back in the queue" in sweeper.log()

        # A worker on the queue runs them again, under the same ids.
        with running_worker("it-rescuer", queue, env=FAST):
            wait_until(
                lambda: state(running).get("status") == "SUCCESS", timeout=60, what="the job to finish"
            )
            wait_until(lambda: state(prefetched).get("status") == "SUCCESS", timeout=30, what="the other")
    assert state(running)["result"]["deliveries"] == 2  # it was started twice
    assert state(prefetched)["result"]["deliveries"] == 1  # it never started on the victim


def test_jobs_of_a_live_worker_are_never_put_back():
    queue, other = f"it-alive-{uuid.uuid4().hex[:6]}", f"it-sweeper2-{uuid.uuid4().hex[:6]}"
    with (
        running_worker(
            "it-busy", queue, concurrency=1, env={**FAST, "CELERY_WORKER_PREFETCH_MULTIPLIER": "2"}
        ) as busy,
        running_worker("it-sweeper2", other, env=FAST) as sweeper,
    ):
        # Running (and prefetched) for three times JOB_WORKER_LOST_AFTER while the other
        # worker sweeps every few seconds.
        long = send("model_inference", queue, text="alive", steps=30, step_seconds=1.0)
        behind = send("noop", queue)
        wait_until(
            lambda: state(behind).get("status") == "SUCCESS",
            timeout=90,
            interval=1,
            what="both jobs to finish",
        )
        assert state(long)["status"] == "SUCCESS"
        assert state(long)["result"]["deliveries"] == 1
        assert state(behind)["result"]["deliveries"] == 1
        assert "put back in the queue" not in sweeper.log() + busy.log()
        assert busy.log().count(f"Job {long} started") == 1


def test_a_job_whose_pool_process_keeps_dying_ends_failure():
    """The OOM killer takes the pool process of a job that needs too much memory, each time it
    runs: Celery requeues it (task_reject_on_worker_lost); after JOB_MAX_DELIVERIES starts it
    ends FAILURE with a message saying why, instead of looping. Here the pool process is
    killed with SIGKILL while the job runs, as the kernel would."""
    queue = f"it-dying-{uuid.uuid4().hex[:6]}"
    with running_worker("it-dying", queue, concurrency=1, env={"JOB_MAX_DELIVERIES": "2"}) as worker:
        job = send("model_inference", queue, text="dies", steps=30, step_seconds=0.5)
        for delivery in (1, 2):

            def running_in():
                meta = state(job)
                if meta.get("status") != "PROGRESS" or meta["result"].get("deliveries") != delivery:
                    return None
                active = current_app.control.inspect(destination=[worker.node], timeout=2).active() or {}
                pids = [task["worker_pid"] for task in active.get(worker.node, []) if task["id"] == job]
                return pids[0] if pids else None

            os.kill(wait_until(running_in, timeout=60, what=f"delivery {delivery} running"), signal.SIGKILL)
        final = wait_until(
            lambda: state(job) if state(job).get("status") == "FAILURE" else None,
            timeout=60,
            what="the job to end FAILURE",
        )
        assert final["result"]["exc_type"] == "JobError"
        assert final["result"]["exc_message"] == [too_many_deliveries_message(2)]
        assert worker.log().count(f"Job {job} started") == 3


def test_a_lone_worker_killed_and_started_again_runs_its_job_again():
    """The compose case: one worker, SIGKILLed mid-job and started again under the same name:
    the new run puts back what the dead one listed as soon as it starts."""
    queue = f"it-lone-{uuid.uuid4().hex[:6]}"
    job = None
    victim = start_worker("it-lone", queue, concurrency=2, env=FAST)
    try:
        job = send("model_inference", queue, text="lone", steps=20, step_seconds=0.5)
        wait_until(lambda: state(job).get("status") == "PROGRESS", timeout=30, what="the job running")
    finally:
        victim.kill()
    killed = time.monotonic()
    with running_worker("it-lone", queue, concurrency=2, env=FAST) as again:
        wait_until(
            lambda: state(job)["result"].get("deliveries") == 2,
            timeout=6 * LOST_AFTER,
            interval=0.2,
            what="the job running again",
        )
        took = time.monotonic() - killed
        wait_until(lambda: state(job).get("status") == "SUCCESS", timeout=60, what="the job to finish")
        log = again.log()
        assert f"Job {job} started" in log
        # Put back by the new run of the same worker as it started, before taking any job,
        # without waiting for the dead run's key to expire.
        assert log.index(f"Job {job}: the worker holding it is gone") < log.index(" ready.")
    assert took < LOST_AFTER, took


def test_a_restarted_worker_leaves_alone_what_it_handed_back_and_another_took():
    """A clean stop hands back the prefetched message (kombu restores it); another worker takes
    it, under the same delivery tag. The first worker started again must not put it back: its
    last list names that tag, but not that delivery."""
    queue = f"it-handback-{uuid.uuid4().hex[:6]}"
    first = start_worker(
        "it-handback", queue, concurrency=1, env={**FAST, "CELERY_WORKER_PREFETCH_MULTIPLIER": "2"}
    )
    try:
        running = send("model_inference", queue, text="first", steps=4, step_seconds=0.5)
        behind = send("model_inference", queue, text="behind", steps=20, step_seconds=0.5)
        wait_until(
            lambda: state(running).get("status") == "PROGRESS", timeout=30, what="the first job running"
        )
        wait_until(lambda: behind in unacked_ids(), timeout=30, what="the second one prefetched")
    finally:
        first.stop()  # warm: finishes the first, hands back the second
    assert state(running)["status"] == "SUCCESS"
    assert behind in {m["headers"]["id"] for m in queued(queue)}
    with running_worker("it-taker", queue, concurrency=1, env=FAST) as taker:
        wait_until(
            lambda: state(behind).get("status") == "PROGRESS", timeout=30, what="taken by another worker"
        )
        with running_worker("it-handback", queue, concurrency=1, env=FAST) as again:
            wait_until(
                lambda: state(behind).get("status") == "SUCCESS", timeout=60, what="the second job done"
            )
            assert "put back in the queue" not in again.log()
    assert state(behind)["result"]["deliveries"] == 1
    assert taker.log().count(f"Job {behind} started") == 1


def test_a_second_live_worker_under_the_same_name_leaves_the_first_ones_job_alone():
    """Names must be unique among live workers (docker-compose.swarm.yml makes them so); should two
    meet anyway (a replacement started beside the old worker under its name), the new one does not
    take the old one's last list for a dead predecessor's: the running job runs once."""
    queue = f"it-twin-{uuid.uuid4().hex[:6]}"
    with running_worker("it-twin", queue, concurrency=1, env=FAST) as first:
        job = send("model_inference", queue, text="twin", steps=40, step_seconds=0.5)
        wait_until(lambda: state(job).get("status") == "PROGRESS", timeout=30, what="the job running")
        with running_worker("it-twin", queue, concurrency=1, env=FAST, files="it-twin-2") as second:
            wait_until(lambda: " ready." in second.log(), timeout=60, what="the second worker ready")
            assert state(job).get("status") == "PROGRESS", "the job ended before the twin was ready"
            assert "Another live worker is named" in second.log()
            wait_until(lambda: state(job).get("status") == "SUCCESS", timeout=60, what="the job done")
            assert "put back in the queue" not in second.log()
        assert first.log().count(f"Job {job} started") == 1
    assert state(job)["result"]["deliveries"] == 1


def unacked_by_hand(queue: str, job_id: str) -> tuple[str, float]:
    """Take the job's message off its queue into the unacknowledged set, as a delivery to a
    worker that is gone (too recent for the other workers' sweeps to judge it meanwhile)."""
    client = redis_client(0)
    raw = client.rpop(queue)
    message = json.loads(raw)
    assert message["headers"]["id"] == job_id
    info = message["properties"]["delivery_info"]
    tag = f"it-hand-{uuid.uuid4().hex}"
    delivered = time.time()
    client.hset(UNACKED, tag, json.dumps([message, info["exchange"], info["routing_key"]]))
    client.zadd(UNACKED_INDEX, {tag: delivered})
    return tag, delivered


def test_a_finished_job_whose_worker_left_without_acknowledging_it_is_not_run_again():
    """A worker stopping (or dying) between a job's result and its acknowledgement leaves the
    delivery in Redis though the job ran to its end: seen in a Swarm update, where it then ran a
    second time. The recovery drops such a delivery; an unfinished one it puts back."""
    queue = f"it-finished-{uuid.uuid4().hex[:6]}"
    watch = DeliveryWatch("it-finished", LOST_AFTER)
    try:
        done = send("noop", queue)
        tag, delivered = unacked_by_hand(queue, done)
        job_store.write_meta(done, "SUCCESS", {"hostname": "gone", "started_at": None})
        assert watch._restore(tag, delivered) is None
        assert redis_client(0).hget(UNACKED, tag) is None and not queued(queue)
        assert state(done)["status"] == "SUCCESS"

        waiting = send("noop", queue)
        tag, delivered = unacked_by_hand(queue, waiting)
        assert watch._restore(tag, delivered) == waiting
        assert [m["headers"]["id"] for m in queued(queue)] == [waiting]
    finally:
        watch.stop()
        redis_client(0).delete(queue)
