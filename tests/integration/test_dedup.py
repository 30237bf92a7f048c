"""integration: one (token, name) is one job - resubmissions and concurrent submissions never run it twice.

"Ran once" is read from the real worker's log: each delivery of a task to the worker logs one
"Task jobs.<kind>[<id>] received" line.
"""

import threading

import pytest
from django.conf import settings
from django.db import connections
from rest_framework.test import APIClient

from jobs import ids
from jobs.models import Job
from tests.integration.helpers import (
    JOBS_URL,
    make_caller,
    queue_length,
    received_count,
    succeeded_count,
    wait_in_log,
    wait_worker_idle,
)
from tests.support.wait import wait_until

INFERENCE = {"text": "dedup me", "steps": 4, "step_seconds": 0.25}


def _settled(kind: str, job_id: str) -> None:
    """Wait until the job's run is logged as succeeded and nothing else is queued or running."""
    wait_in_log(rf"Task jobs\.{kind}\[{job_id}\] succeeded")
    wait_until(lambda: queue_length() == 0, timeout=30, what="the jobs queue to drain")
    wait_worker_idle()


@pytest.mark.django_db
def test_resubmitting_a_live_job_returns_it_and_it_runs_once(alice):
    name = "nightly-inference"
    first = alice.submit("model_inference", INFERENCE, name=name)
    assert first.status_code == 202
    job_id = first.json()["id"]

    again = alice.submit("model_inference", INFERENCE, name=name)
    assert again.status_code == 200, again.content
    assert again.json()["id"] == job_id
    assert again.json()["created"] is False
    assert again["Location"] == f"/api/jobs/{job_id}/"

    alice.wait_for_state(job_id, "PROGRESS")
    while_running = alice.submit("model_inference", INFERENCE, name=name)
    assert while_running.status_code == 200
    assert while_running.json()["id"] == job_id
    assert while_running.json()["state"] in ("PROGRESS", "SUCCESS")

    alice.wait_for_state(job_id, "SUCCESS")
    _settled("model_inference", job_id)
    assert received_count("model_inference", job_id) == 1
    assert succeeded_count("model_inference", job_id) == 1
    assert Job.objects.filter(name=name).count() == 1


@pytest.mark.django_db
def test_finished_job_is_returned_until_rerun_starts_run_two(alice):
    name = "weekly-sum"
    job_id = alice.submit("sum_number", {"x": 1, "y": 1000}, name=name).json()["id"]
    alice.wait_for_state(job_id, "SUCCESS")

    # Without rerun: the finished job, as is, and nothing new runs.
    same = alice.submit("sum_number", {"x": 1, "y": 1000}, name=name)
    assert same.status_code == 200
    body = same.json()
    assert (body["id"], body["created"], body["run"]) == (job_id, False, 1)
    assert body["state"] == "SUCCESS"
    assert body["result"] == {"sum": 500500, "count": 1000}

    # With rerun: run 2 under a fresh id derived from the same token and name.
    rerun = alice.submit("sum_number", {"x": 1, "y": 10}, name=name, rerun=True)
    assert rerun.status_code == 202, rerun.content
    second = rerun.json()
    assert second["created"] is True and second["run"] == 2
    assert second["id"] == ids.job_id(settings.JOB_ID_SECRET, alice.token, name, 2) != job_id
    assert alice.wait_for_state(second["id"], "SUCCESS")["result"] == {"sum": 55, "count": 10}

    _settled("sum_number", second["id"])
    assert received_count("sum_number", job_id) == 1
    assert received_count("sum_number", second["id"]) == 1
    # The first run's result is untouched.
    assert alice.get(job_id).json()["result"] == {"sum": 500500, "count": 1000}
    # rerun=true on a job that is still live is just a resubmission: the live job is returned.
    third = alice.submit("model_inference", INFERENCE, name="live-rerun")
    assert third.status_code == 202
    again = alice.submit("model_inference", INFERENCE, name="live-rerun", rerun=True)
    assert again.status_code == 200 and again.json()["id"] == third.json()["id"]
    alice.wait_for_state(third.json()["id"], "SUCCESS")


@pytest.mark.django_db(transaction=True)
def test_concurrent_submissions_of_one_name_make_one_job(worker):
    caller = make_caller("carol")  # committed: the threads' own connections see it
    name = "raced"
    threads_count = 4
    barrier = threading.Barrier(threads_count)
    responses: list = [None] * threads_count
    errors: list = []

    def submit(index: int) -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {caller.token}")
        try:
            barrier.wait(timeout=10)
            responses[index] = client.post(
                JOBS_URL, {"kind": "sum_number", "params": {"x": 1, "y": 3}, "name": name}, format="json"
            )
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors, errors

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * (threads_count - 1) + [202], [r.content for r in responses]
    job_ids = {response.json()["id"] for response in responses}
    expected = ids.job_id(settings.JOB_ID_SECRET, caller.token, name, 1)
    assert job_ids == {expected}
    assert Job.objects.filter(name=name).count() == 1

    assert caller.wait_for_state(expected, "SUCCESS")["result"] == {"sum": 6, "count": 3}
    _settled("sum_number", expected)
    assert received_count("sum_number", expected) == 1
