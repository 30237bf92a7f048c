"""scripts/deploy's drain of an old worker (STOP_CONSUMING), run as the deploy runs it, on a real
worker process and the real Redis 5.0 broker.

The race it guards (found by test_deploy's drain test: a job waited 262 s). A worker reads the
queue with a blocking BRPOP that lasts up to a second (kombu's brpop_timeout). One under way when
the worker is told to stop consuming still takes the next message published; the worker's loop
puts it back on the queue ("Requeuing undeliverable message" in its log), but once `docker stop`'s
SIGTERM has begun the warm shutdown the loop no longer runs, and only the worker's exit, after its
running jobs, releases the message. So when the script returns (and the deploy sends SIGTERM) no
read of the old worker may be under way.

Each cycle: the old worker runs a long job and is the queue's only consumer, idle, so a BRPOP of
its is under way at the cancel; a job is published the moment the script returns. It must stay on
the queue, untouched by the old worker. Without the script's wait for reads under way, the old
worker took it in every cycle."""

import subprocess
import sys
import time

import pytest

from tests.integration.helpers import queue_length, send, state
from tests.integration.workers import SERVICES_DIR, running_worker
from tests.support.scripts import load_script
from tests.support.wait import wait_until

QUEUE = "deploy-drain"


def stop_consuming_script() -> str:
    return load_script("deploy").STOP_CONSUMING


def status(job_id: str) -> str | None:
    return state(job_id).get("status")


@pytest.mark.parametrize("cycle", range(2))
def test_a_drained_worker_takes_no_job_published_once_the_script_returned(django_db_setup, cycle):
    with running_worker(f"drain-old{cycle}", QUEUE) as old:
        long_id = send("model_inference", QUEUE, text="long", steps=6, step_seconds=1.0)
        wait_until(
            lambda: status(long_id) in ("STARTED", "PROGRESS"), timeout=30, what="the long job running"
        )
        drained = subprocess.run(
            [sys.executable, "-c", stop_consuming_script(), QUEUE, old.node],
            cwd=SERVICES_DIR,
            capture_output=True,
            text=True,
            timeout=120,
        )
        late = send("noop", QUEUE)
        time.sleep(1)
        assert drained.returncode == 0, drained.stderr[-2000:]
        after_cancel = old.log().split("Canceling queue", 1)[-1]
        on_queue = queue_length(QUEUE)
        old.process.terminate()
        old.process.wait(timeout=60)
    assert status(long_id) == "SUCCESS" and state(long_id)["result"]["deliveries"] == 1
    # Taken by a new worker: nothing was lost either way.
    with running_worker(f"drain-new{cycle}", QUEUE):
        wait_until(lambda: status(late) == "SUCCESS", timeout=30, what="the late job done")
    taken = [line for line in after_cancel.splitlines() if "Requeuing undeliverable" in line]
    assert on_queue == 1 and not taken, (
        f"a read of the drained worker was still under way when the script returned: it took the job "
        f"published then (queue held {on_queue}; {taken}); after a SIGTERM it would wait for the exit"
    )
