"""integration: failures reach the client as a safe message; transient ones are retried (real worker)."""

import json

import pytest

from jobs import job_store
from tests.integration.helpers import worker_log
from tests.support.wait import wait_until

pytestmark = pytest.mark.django_db


def test_failing_job_shows_its_message_and_no_traceback(alice):
    message = "The input file is empty."
    job_id = alice.submit("fail", {"message": message}).json()["id"]

    body = alice.wait_for_state(job_id, "FAILURE")
    assert body["error"] == message
    assert body["result"] is None
    assert body["finished_at"]

    # The backend holds the worker's traceback; the API body must not carry any of it.
    stored = job_store.read_meta(job_id)
    assert "Traceback" in (stored["traceback"] or "")
    response = alice.get(job_id)
    assert response.status_code == 200
    text = response.content.decode()
    for leak in ("Traceback", "tasks.py", "raise JobError", "traceback", "exc_type"):
        assert leak not in text
    assert json.loads(text)["error"] == message


def test_flaky_job_is_retried_until_it_succeeds(alice):
    job_id = alice.submit("flaky", {"failures": 2}).json()["id"]

    body = alice.wait_for_state(job_id, "SUCCESS", "FAILURE", timeout=30)
    assert body["state"] == "SUCCESS", body
    assert body["result"] == {"attempts": 3}
    assert job_store.read_meta(job_id)["retries"] == 2
    # Two retries were scheduled by the worker (autoretry with backoff). An attempt logs its
    # "retry" line after publishing the next attempt, which may finish first (a backoff of 0 s
    # is possible with jitter): wait for both lines rather than for "succeeded".
    retry_line = f"Task jobs.flaky[{job_id}] retry"
    success_line = f"Task jobs.flaky[{job_id}] succeeded"
    wait_until(
        lambda: (log := worker_log()).count(retry_line) >= 2 and success_line in log,
        timeout=10,
        what="two retry lines and a success line",
    )
    log = worker_log()
    assert log.count(retry_line) == 2
    assert log.count(success_line) == 1
