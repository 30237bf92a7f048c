"""integration: DELETE cancels - a queued job never runs, a running one ends REVOKED (real worker).

The session worker runs 2 jobs at a time and, with late acks and a prefetch multiplier of 1,
reserves nothing beyond them: while two long jobs run, a third stays in the broker's queue.
"""

import pytest

from jobs import job_store
from jobs.models import Job
from tests.integration.helpers import queue_length, received_count, wait_in_log, wait_worker_idle, worker_log
from tests.support.wait import wait_until

pytestmark = pytest.mark.django_db

LONG = {"text": "keeps the worker busy", "steps": 100, "step_seconds": 0.1}  # 10 s unless cancelled


def _cancel_and_wait_revoked(caller, job_id):
    response = caller.delete(job_id)
    assert response.status_code == 202, response.content
    return caller.wait_for_state(job_id, "REVOKED", "SUCCESS", "FAILURE", timeout=20)


def test_cancelled_queued_job_never_runs(alice):
    wait_worker_idle()
    blockers = [alice.submit("model_inference", LONG).json()["id"] for _ in range(2)]
    for job_id in blockers:
        alice.wait_for_state(job_id, "PROGRESS")

    queued = alice.submit("sum_number", {"x": 1, "y": 5}, name="queued-then-cancelled")
    assert queued.status_code == 202
    job_id = queued.json()["id"]
    # Truly waiting: its message sits in the broker's queue, the worker is saturated.
    assert queue_length() == 1
    assert alice.get(job_id).json()["state"] == "PENDING"

    response = alice.delete(job_id)
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["state"] == "REVOKED"
    assert body["error"] == "The job was cancelled."
    assert Job.objects.get(pk=job_id).cancelled_at is not None

    # Free the worker (cancelling the running blockers), so it dequeues the cancelled job.
    for blocker in blockers:
        assert _cancel_and_wait_revoked(alice, blocker)["state"] == "REVOKED"
    wait_until(lambda: queue_length() == 0, timeout=30, what="the cancelled job to be dequeued")
    wait_in_log(rf"Discarding revoked task: jobs\.sum_number\[{job_id}\]")
    wait_worker_idle()

    log = worker_log()
    assert f"jobs.sum_number[{job_id}] succeeded" not in log
    assert received_count("sum_number", job_id) == 1  # delivered once, then discarded
    final = alice.get(job_id).json()
    assert final["state"] == "REVOKED"
    assert final["started_at"] is None and final["worker"] is None and final["result"] is None
    meta = job_store.read_meta(job_id)
    assert meta["status"] == "REVOKED"
    assert "started_at" not in (meta["result"] or {}) or meta["result"].get("started_at") is None


def test_cancelled_running_job_ends_revoked(alice):
    job_id = alice.submit("model_inference", LONG, name="running-then-cancelled").json()["id"]
    running = alice.wait_for_state(job_id, "PROGRESS")
    assert running["progress"]["current"] >= 1

    response = alice.delete(job_id)
    assert response.status_code == 202, response.content
    assert response.json()["state"] in ("PROGRESS", "REVOKED")  # terminating takes a moment

    assert alice.wait_for_state(job_id, "REVOKED", "SUCCESS", "FAILURE", timeout=20)["state"] == "REVOKED"
    wait_worker_idle()  # the job is no longer running anywhere...
    final = alice.get(job_id).json()  # ...so nothing can overwrite the state any more
    assert final["state"] == "REVOKED"
    assert final["error"] == "The job was cancelled."
    assert final["result"] is None
    assert f"jobs.model_inference[{job_id}] succeeded" not in worker_log()


def test_deleting_a_finished_job_is_409(alice):
    job_id = alice.submit("sum_number", {"x": 1, "y": 2}).json()["id"]
    alice.wait_for_state(job_id, "SUCCESS")

    response = alice.delete(job_id)
    assert response.status_code == 409
    assert response.json()["state"] == "SUCCESS"
    assert response.json()["result"] == {"sum": 3, "count": 2}
    assert alice.get(job_id).json()["state"] == "SUCCESS"
    assert Job.objects.get(pk=job_id).cancelled_at is None


def test_deleting_a_cancelled_job_again_is_409(alice):
    job_id = alice.submit("model_inference", LONG).json()["id"]
    alice.wait_for_state(job_id, "STARTED", "PROGRESS")
    assert _cancel_and_wait_revoked(alice, job_id)["state"] == "REVOKED"
    again = alice.delete(job_id)
    assert again.status_code == 409
    assert again.json()["state"] == "REVOKED"
    wait_worker_idle()
