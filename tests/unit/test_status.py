"""unit: no services. How stored Celery metas are shown to API clients (jobs.presentation)."""

import json

import pytest

from jobs import presentation

STARTED_AT = "2026-11-23T11:32:34.822088+00:00"
DATE_DONE = "2026-11-23T11:32:35.000000+00:00"
# A Celery FAILURE meta carries the worker's traceback; it must never reach a client.
TRACEBACK = (
    'Traceback (most recent call last):\n  File "/app/services/jobs/tasks.py", line 42, '
    "in fail\n    raise JobError(message)\njobs.tasks.JobError: secret internals"
)


def meta(state, result=None, **extra):
    return {
        "status": state,
        "result": result,
        "traceback": None,
        "children": [],
        "date_done": None,
        "task_id": "5662d11d-34b6-6dd6-785e-b558439d469c",
        **extra,
    }


def failure(exc_type, message, module="jobs.tasks"):
    return meta(
        "FAILURE",
        {"exc_type": exc_type, "exc_message": message, "exc_module": module},
        traceback=TRACEBACK,
        date_done=DATE_DONE,
    )


def running(**extra):
    return {"hostname": "worker-7", "started_at": STARTED_AT, **extra}


KEYS = {"state", "progress", "result", "error", "worker", "started_at", "finished_at", "deliveries"}


def test_pending():
    body = presentation.describe(meta("PENDING", {"hostname": None, "started_at": None}))
    assert body == {
        "state": "PENDING",
        "progress": None,
        "result": None,
        "error": None,
        "worker": None,
        "started_at": None,
        "finished_at": None,
        "deliveries": None,
    }


def test_started_shows_worker_and_start_time():
    body = presentation.describe(meta("STARTED", running()))
    assert body["state"] == "STARTED"
    assert body["worker"] == "worker-7"
    assert body["started_at"] == STARTED_AT
    assert body["progress"] is None and body["finished_at"] is None


def test_progress_with_percent_and_message():
    body = presentation.describe(meta("PROGRESS", running(current=3, total=4, message="step 3 of 4")))
    assert body["state"] == "PROGRESS"
    assert body["progress"] == {"current": 3, "total": 4, "percent": 75.0, "message": "step 3 of 4"}
    assert body["worker"] == "worker-7"
    assert body["finished_at"] is None


def test_deliveries_shown_while_running_and_after_success():
    assert (
        presentation.describe(meta("PROGRESS", running(current=1, total=2, deliveries=2)))["deliveries"] == 2
    )
    done = meta("SUCCESS", running(deliveries=2, output={"x": 1}), date_done=DATE_DONE)
    assert presentation.describe(done)["deliveries"] == 2
    assert presentation.describe(meta("STARTED", running()))["deliveries"] is None  # a job started before


def test_worker_lost_is_a_retry_that_says_so():
    body = presentation.describe(
        meta("RETRY", {"exc_type": "WorkerLostError", "exc_message": ["worker lost"]})
    )
    assert body["state"] == "RETRY"
    assert body["error"] == presentation.WORKER_LOST_MESSAGE
    assert body["progress"] is None and body["worker"] is None and body["finished_at"] is None


def test_progress_percent_is_rounded_and_none_without_total():
    assert presentation.describe(meta("PROGRESS", running(current=1, total=3)))["progress"]["percent"] == 33.3
    zero = presentation.describe(meta("PROGRESS", running(current=0, total=0)))["progress"]
    assert zero["percent"] is None
    assert zero["message"] == ""


def test_success_result_is_the_output():
    body = presentation.describe(
        meta("SUCCESS", running(output={"sum": 5050, "count": 100}), date_done=DATE_DONE)
    )
    assert body["state"] == "SUCCESS"
    assert body["result"] == {"sum": 5050, "count": 100}
    assert body["worker"] == "worker-7"
    assert body["started_at"] == STARTED_AT
    assert body["finished_at"] == DATE_DONE
    assert body["error"] is None


def test_success_of_a_plain_task_shows_its_value():
    # e.g. the housekeeping task returns an int, not a job dict
    body = presentation.describe(meta("SUCCESS", 7, date_done=DATE_DONE))
    assert body["result"] == 7
    assert body["worker"] is None


def test_failure_of_job_error_shows_its_message():
    body = presentation.describe(failure("JobError", ["The input file is empty."]))
    assert body["state"] == "FAILURE"
    assert body["error"] == "The input file is empty."
    assert body["result"] is None
    assert body["finished_at"] == DATE_DONE


def test_failure_of_job_error_with_a_plain_string_message():
    assert presentation.describe(failure("JobError", "plain message"))["error"] == "plain message"


@pytest.mark.parametrize(
    "exc_type, message",
    [
        ("KeyError", ["'password'"]),
        ("ValueError", ["connection string postgres://app:hunter2@db/app is invalid"]),
        ("ZeroDivisionError", ["division by zero"]),
        ("JobError", [{"not": "a string"}]),  # only string messages are shown as is
        (None, None),
    ],
)
def test_failure_of_other_exceptions_is_generic(exc_type, message):
    body = presentation.describe(failure(exc_type, message))
    assert body["error"] == presentation.GENERIC_FAILURE
    for secret in ("password", "hunter2", "division"):
        assert secret not in json.dumps(body)


def test_failure_with_a_non_dict_result_is_generic():
    assert presentation.describe(meta("FAILURE", "boom /app/x.py"))["error"] == presentation.GENERIC_FAILURE


@pytest.mark.parametrize("exc_type", ["SoftTimeLimitExceeded", "TimeLimitExceeded"])
def test_failure_by_time_limit(exc_type):
    body = presentation.describe(failure(exc_type, ["SoftTimeLimitExceeded()"], module="celery.exceptions"))
    assert body["error"] == "The job exceeded its time limit."


def test_failure_after_transient_retries():
    body = presentation.describe(failure("TransientJobError", ["transient failure on attempt 6"]))
    assert "retries" in body["error"]
    assert "attempt 6" not in body["error"]


def test_revoked():
    body = presentation.describe(
        meta("REVOKED", {"exc_type": "TaskRevokedError", "exc_message": ["cancelled"]}, date_done=DATE_DONE)
    )
    assert body["state"] == "REVOKED"
    assert body["error"] == "The job was cancelled."
    assert body["finished_at"] == DATE_DONE
    assert body["result"] is None


def test_retry():
    body = presentation.describe(
        meta("RETRY", {"exc_type": "TransientJobError", "exc_message": ["x"]}, traceback=TRACEBACK)
    )
    assert body["state"] == "RETRY"
    assert "retried" in body["error"]
    assert body["finished_at"] is None


def test_absent_meta_is_expired():
    body = presentation.describe(None)
    assert body["state"] == presentation.EXPIRED == "EXPIRED"
    assert "expired" in body["error"]
    assert body["result"] is None and body["finished_at"] is None


@pytest.mark.parametrize(
    "state", ["PENDING", "STARTED", "PROGRESS", "SUCCESS", "FAILURE", "REVOKED", "RETRY"]
)
def test_no_traceback_ever_in_the_body(state):
    info = running(
        current=1,
        total=2,
        output={"ok": True},
        exc_type="ValueError",
        exc_message=["/app/services/jobs/tasks.py secret internals"],
    )
    body = presentation.describe(meta(state, info, traceback=TRACEBACK, date_done=DATE_DONE))
    assert set(body) == KEYS
    text = json.dumps(body)
    for leak in ("Traceback", "tasks.py", "line 42", "secret internals", "traceback"):
        assert leak not in text


@pytest.mark.parametrize(
    "value, finished",
    [
        (None, True),
        (meta("SUCCESS"), True),
        (meta("FAILURE"), True),
        (meta("REVOKED"), True),
        (meta("PENDING"), False),
        (meta("STARTED"), False),
        (meta("PROGRESS"), False),
        (meta("RETRY"), False),
    ],
)
def test_is_finished(value, finished):
    assert presentation.is_finished(value) is finished


def test_state_of():
    assert presentation.state_of(None) == "EXPIRED"
    assert presentation.state_of(meta("STARTED")) == "STARTED"
