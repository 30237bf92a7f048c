"""The stack on Redis 8 (REDIS_IMAGE=redis:8-alpine, or REDIS8_IMAGE's stand-in in CI), and the
way there from the default Redis 5.0 (docs/production.md, "Redis: moving to 8").

A compose project of its own ("djcs-redis8", own ports and image tag), on the compose defaults,
started on Redis 5.0 with a user, finished jobs (one failed), jobs waiting in the queue and a beat
schedule. It is backed up (scripts/backup) and moved to Redis 8 in place: REDIS_IMAGE changed,
`docker compose up` (Redis 8 converts the append-only file to its directory layout); everything
is there and the queued jobs run. Then on Redis 8: the job API tests of test_jobs_api.py, the
chaos scenarios worker SIGKILLed mid-run and Redis restarted mid-run (200 jobs each, none lost;
report lines "redis 8: ..."), and last the backup taken on 5.0 restored onto Redis 8
(scripts/restore): tokens, jobs, results and the queue as they were, on disk across a restart.
"""

import os
import re
import uuid

import pytest

import tests.e2e.test_jobs_api as jobs_api
from tests.e2e.helpers import redis_cli, script
from tests.e2e.test_jobs_api import alice, anonymous, bob, bob_token, module_started  # noqa: F401 - fixtures
from tests.support import versions
from tests.support.chaos import backing_service_restarted_mid_run, worker_sigkilled_mid_run
from tests.support.stack import Api, Stack, running
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

PROJECT = os.environ.get("REDIS8_E2E_PROJECT", "djcs-redis8")
REDIS5_IMAGE = os.environ.get("REDIS_IMAGE", "redis:5.0-alpine")
REDIS8_IMAGE = os.environ.get("REDIS8_IMAGE", "redis:8-alpine")
ENV = {
    "APP_IMAGE": f"{PROJECT}-app:latest",
    # test_jobs_api's replica test publishes web on this port and the next.
    "WEB_PORT": os.environ.get("REDIS8_E2E_WEB_PORT", "21000"),
    "FLOWER_PORT": os.environ.get("REDIS8_E2E_FLOWER_PORT", "21555"),
    "REDIS_IMAGE": REDIS5_IMAGE,
}
SCHEDULE = "redis8-e2e-nightly-report"
# What one test leaves for a later one (file order): the archive taken on 5.0, the jobs it holds.
SEEN: dict = {}


@pytest.fixture(scope="module")
def stack():
    with running(Stack(project=PROJECT, env=dict(ENV))) as stack:
        yield stack


@pytest.fixture(scope="module")
def token(stack) -> str:
    # test_jobs_api's checks look for this user name in the database dump.
    return stack.create_token("e2e-alice")


def redis_version(stack: Stack) -> str:
    match = re.search(r"^redis_version:(\S+)", redis_cli(stack, "INFO", "server"), re.MULTILINE)
    assert match, "no redis_version in INFO server"
    return match.group(1)


def schedules(stack: Stack) -> list[str]:
    out = stack.manage(
        "shell",
        "-c",
        "from django_celery_beat.models import PeriodicTask; "
        "print('|'.join(sorted(PeriodicTask.objects.values_list('name', flat=True))))",
    ).stdout
    return out.strip().splitlines()[-1].split("|")


def data_files(stack: Stack) -> list[str]:
    return stack.exec("redis", "ls", "-A", "/data").stdout.split()


def assert_as_before(api: Api, before: dict[str, dict]) -> None:
    """Each job reads as it did: state, result, error, finish time, kind and params."""
    for name, job in before.items():
        after = api.job(job["id"]).json()
        for key in ("state", "result", "error", "finished_at", "kind", "params"):
            assert after[key] == job[key], (name, key, after, job)


# --- 1. from 5.0 to 8 in place -----------------------------------------------------------------


def test_a_stack_on_5_0_moves_to_8_in_place(stack, tmp_path_factory):
    """Jobs finished and jobs waiting on Redis 5.0; a backup; REDIS_IMAGE set to Redis 8 and
    `docker compose up`: the same volume, converted to Redis 8's append-only directory; the old
    token works, the finished jobs read the same, the queued ones run."""
    stack.wait_healthy()
    versions.record("redis:5.0-alpine", redis_version(stack), REDIS5_IMAGE)
    versions.record(
        "python:3.13-slim",
        stack.exec("web", "python", "--version").stdout.split()[-1],
        os.environ.get("PYTHON_IMAGE", "python:3.13-slim"),
    )
    assert redis_version(stack).startswith("5.0."), "the stack must start on Redis 5.0"
    assert "appendonly.aof" in data_files(stack)

    token = stack.create_token(f"redis8-{uuid.uuid4().hex[:8]}")
    api = Api(stack.url(""), token)
    submitted = {
        "sum": api.submit("sum_number", {"x": 20, "y": 22}, name="sum"),
        "inference": api.submit(
            "model_inference", {"text": "redis 8", "steps": 3, "step_seconds": 0.2}, name="inference"
        ),
        "fail": api.submit("fail", {"message": "failing on 5.0"}, name="fail"),
    }
    assert all(r.status_code == 202 for r in submitted.values()), {k: r.text for k, r in submitted.items()}
    finished = {
        name: api.wait_for_state(r.json()["id"], "SUCCESS", "FAILURE", timeout=120)
        for name, r in submitted.items()
    }
    assert [finished[n]["state"] for n in ("sum", "inference", "fail")] == ["SUCCESS", "SUCCESS", "FAILURE"]
    stack.manage(
        "shell",
        "-c",
        "from django_celery_beat.models import CrontabSchedule, PeriodicTask; "
        "c, _ = CrontabSchedule.objects.get_or_create(minute='30', hour='3'); "
        f"PeriodicTask.objects.create(name='{SCHEDULE}', task='jobs.sum_number', crontab=c, "
        'kwargs=\'{"x": 1, "y": 2}\')',
    )
    # Jobs that wait in Redis's queue (no worker takes them): state that lives in Redis only.
    stack.compose("stop", "worker", timeout=300)
    queued = [api.submit("sum_number", {"x": n, "y": 10}, name=f"queued-{n}").json()["id"] for n in (1, 2)]
    assert all(api.job(job_id).json()["state"] == "PENDING" for job_id in queued)

    backups = tmp_path_factory.mktemp("redis8-backups")
    made = script(stack, "backup", "--dir", str(backups))
    assert made.returncode == 0, made.stdout + made.stderr
    [archive] = backups.glob("*.backup.tar.gz")
    SEEN.update(archive=archive, token=token, finished=finished, queued=queued)

    # The move: another image on the same volume, as an operator's .env would change it.
    stack.env["REDIS_IMAGE"] = REDIS8_IMAGE
    stack.up()
    version = redis_version(stack)
    versions.record("redis:8-alpine", version, REDIS8_IMAGE)
    assert version.startswith("8."), version
    files = data_files(stack)
    assert "appendonlydir" in files and "appendonly.aof" not in files, files
    assert api.request("GET", "/api/whoami/").status_code == 200
    assert_as_before(api, finished)
    for job_id in queued:
        assert api.wait_for_state(job_id, "SUCCESS", "FAILURE", timeout=120)["state"] == "SUCCESS"
    assert SCHEDULE in schedules(stack)
    stack.wait_healthy()


# --- 2. the job API on Redis 8: test_jobs_api.py's tests ------------------------------------------


def test_progress_goes_up_then_success(alice):  # noqa: F811 - alice is the imported fixture
    jobs_api.test_progress_goes_up_then_success(alice)


def test_same_job_posted_twice_runs_once(stack, alice):  # noqa: F811
    jobs_api.test_same_job_posted_twice_runs_once(stack, alice)


def test_two_web_replicas_and_a_worker_command_see_the_same_job(stack, token):
    jobs_api.test_two_web_replicas_and_a_worker_command_see_the_same_job(stack, token)


def test_cancel_pending_and_running_jobs(stack, alice):  # noqa: F811
    jobs_api.test_cancel_pending_and_running_jobs(stack, alice)


def test_error_answers_are_json_with_the_right_status(stack, alice, bob, anonymous):  # noqa: F811
    jobs_api.test_error_answers_are_json_with_the_right_status(stack, alice, bob, anonymous)


def test_raw_token_is_nowhere_but_job_ids_are(stack, alice, token, bob_token):  # noqa: F811
    jobs_api.test_raw_token_is_nowhere_but_job_ids_are(stack, alice, token, bob_token)


def test_no_server_error_was_seen(stack, module_started):  # noqa: F811
    jobs_api.test_no_server_error_was_seen(stack, module_started)


# --- 3. chaos on Redis 8 ---------------------------------------------------------------------------


def test_chaos_worker_sigkilled_mid_run(stack):
    """tests/e2e/test_chaos.py's scenario 1 on Redis 8: the killed worker's jobs are put back
    by the live worker's recovery (it reads Redis's unacked index), none lost."""
    assert redis_version(stack).startswith("8.")
    worker_sigkilled_mid_run(
        stack, scenario="redis8-kill", label="redis 8: 1 worker SIGKILL mid-run, started again"
    )


def test_chaos_redis_restarted_mid_run(stack):
    """test_chaos.py's scenario 2 on Redis 8: Redis stopped and started while jobs run and others
    wait; it reloads its append-only directory, nothing is lost."""
    assert redis_version(stack).startswith("8.")
    backing_service_restarted_mid_run(
        stack, service="redis", scenario="redis8-redis", label="redis 8: 2 redis restart mid-run"
    )


# --- 4. the backup taken on 5.0, restored onto 8 ----------------------------------------------------


def test_a_backup_taken_on_5_0_restores_onto_8(stack):
    """scripts/restore of the archive from Redis 5.0 onto the stack now on Redis 8 (it holds data:
    --force): the token, finished jobs, schedule and queued jobs as they were at the backup (the
    queued ones run again, delivery being at least once), written in Redis 8's append-only
    directory, so a restart of Redis keeps them."""
    assert SEEN, "the first test of this module did not run"
    assert redis_version(stack).startswith("8.")
    restored = script(stack, "restore", str(SEEN["archive"]), "--force")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    stack.wait_healthy()
    assert redis_version(stack).startswith("8.")
    api = Api(stack.url(""), SEEN["token"])
    assert api.request("GET", "/api/whoami/").status_code == 200
    assert_as_before(api, SEEN["finished"])
    assert SCHEDULE in schedules(stack)
    for job_id in SEEN["queued"]:
        assert api.wait_for_state(job_id, "SUCCESS", "FAILURE", timeout=120)["state"] == "SUCCESS"

    files = data_files(stack)
    assert "appendonlydir" in files and "appendonly.aof" not in files, files
    stack.compose("restart", "redis")
    stack.wait_healthy("redis", "web")
    wait_until(
        lambda: api.request("GET", "/api/whoami/").status_code == 200,
        timeout=60,
        interval=1,
        what="the restored token accepted after Redis's restart",
    )
    assert_as_before(api, SEEN["finished"])
