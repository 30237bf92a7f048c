"""integration: `manage.py job status` reads the same state as the API, from the token and name alone."""

import io
import json

import pytest
from django.core.management import CommandError, call_command

pytestmark = pytest.mark.django_db


def job_status(*args: str) -> dict:
    out = io.StringIO()
    call_command("job", "status", *args, stdout=out)
    return json.loads(out.getvalue())


def test_status_of_a_finished_job_matches_the_api(alice, monkeypatch):
    name = "cli-visible"
    job_id = alice.submit("sum_number", {"x": 1, "y": 20}, name=name).json()["id"]
    api = alice.wait_for_state(job_id, "SUCCESS")

    monkeypatch.setenv("JOB_TOKEN", alice.token)
    shown = job_status("--name", name)
    assert shown["id"] == job_id
    assert (shown["name"], shown["run"]) == (name, 1)
    for field in ("state", "result", "error", "worker", "started_at", "finished_at", "progress"):
        assert shown[field] == api[field], field
    assert shown["result"] == {"sum": 210, "count": 20}
    assert alice.token not in json.dumps(shown)


def test_status_follows_the_latest_run_and_a_given_run(alice, monkeypatch):
    name = "cli-reruns"
    first = alice.submit("fail", {"message": "first run failed"}, name=name).json()["id"]
    alice.wait_for_state(first, "FAILURE")
    second = alice.submit("sum_number", {"x": 1, "y": 2}, name=name, rerun=True).json()["id"]
    alice.wait_for_state(second, "SUCCESS")

    monkeypatch.setenv("JOB_TOKEN", alice.token)
    latest = job_status("--name", name)
    assert (latest["id"], latest["run"], latest["state"]) == (second, 2, "SUCCESS")
    run_one = job_status("--name", name, "--run", "1")
    assert (run_one["id"], run_one["state"], run_one["error"]) == (first, "FAILURE", "first run failed")


def test_unknown_name_is_a_command_error(alice, monkeypatch):
    monkeypatch.setenv("JOB_TOKEN", alice.token)
    with pytest.raises(CommandError, match="never submitted"):
        job_status("--name", "no-such-job")


def test_another_token_does_not_find_the_job(alice, bob, monkeypatch):
    name = "cli-private"
    job_id = alice.submit("noop", name=name).json()["id"]
    alice.wait_for_state(job_id, "SUCCESS")
    monkeypatch.setenv("JOB_TOKEN", bob.token)
    with pytest.raises(CommandError):
        job_status("--name", name)


def test_missing_token_is_a_command_error(monkeypatch):
    monkeypatch.delenv("JOB_TOKEN", raising=False)
    with pytest.raises(CommandError, match="JOB_TOKEN"):
        job_status("--name", "anything")
