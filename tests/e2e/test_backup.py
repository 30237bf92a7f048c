"""Backup and restore (issue 13, must-show 2), then PostgreSQL 17 -> 18 (scripts/upgrade-postgres),
on a production-mode stack of its own.

The stack runs the shipped docker-compose.yml with a .env written by scripts/gen-prod-env, on its
own project name, ports and image tag. One user's jobs, a beat schedule and Flower's history are
backed up with scripts/backup, the stack is removed with its volumes (`down -v`) and started
again empty, then scripts/restore brings everything back: the old token still works, the job
records and results are there, the schedule and Flower's history too, and Redis keeps the restored
data across its own restart (it starts from its append-only file). A truncated archive and a
restore over a stack holding data are refused, with a one-line reason and nothing changed, and so is a
restore onto a stack with another JOB_ID_SECRET (issue 21, must-show 5): the manifest names the
secret the backup needs by its fingerprint.
Last, scripts/upgrade-postgres moves the stack from PostgreSQL 17 to 18 with all of that in place.
"""

import json
import os
import re
import stat
import subprocess
import tarfile
import uuid

import pytest
import requests

from jobs.ids import secret_fingerprint
from tests.e2e.helpers import script
from tests.support import versions
from tests.support.docker import docker
from tests.support.production import gen_prod_env, proxy_session, read_env_file
from tests.support.stack import Api, Stack, running
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

PROJECT = os.environ.get("BACKUP_E2E_PROJECT", "djcs-backup")
HOST = "jobs.backup-e2e.test"
BASE_ENV = {
    "APP_IMAGE": os.environ.get("BACKUP_E2E_APP_IMAGE", f"{PROJECT}-app:latest"),
    "WEB_PORT": os.environ.get("BACKUP_E2E_WEB_PORT", "29100"),
    "FLOWER_PORT": os.environ.get("BACKUP_E2E_FLOWER_PORT", "29155"),
}
SCHEDULE = "backup-e2e-nightly-report"
UP_TIMEOUT = 300


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    values, _ = gen_prod_env(tmp_path_factory.mktemp("backup") / "prod.env", HOST)
    with running(Stack(project=PROJECT, env={**BASE_ENV, **values}), up_timeout=UP_TIMEOUT) as stack:
        yield stack


def api_for(stack: Stack, token: str | None) -> Api:
    api = Api(stack.url(""), token)
    api.session.headers.update(proxy_session(HOST).headers)  # as the HTTPS proxy forwards
    return api


def flower_tasks(stack: Stack) -> dict:
    auth = (stack.env["FLOWER_USER"], stack.env["FLOWER_PASSWORD"])
    answer = requests.get(stack.flower_url("/api/tasks"), auth=auth, timeout=30)
    answer.raise_for_status()
    return answer.json()


def schedules(stack: Stack) -> list[str]:
    out = stack.manage(
        "shell",
        "-c",
        "from django_celery_beat.models import PeriodicTask; "
        "print('|'.join(sorted(PeriodicTask.objects.values_list('name', flat=True))))",
    ).stdout
    return out.strip().splitlines()[-1].split("|")


def assert_clean_refusal(result: subprocess.CompletedProcess, *phrases: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    for phrase in phrases:
        assert phrase in result.stderr, output


def test_backup_down_v_restore_brings_everything_back(prod, tmp_path):
    # --- a user, jobs with results (one failure), a beat schedule, Flower's history -------------
    token = prod.create_token(f"backup-{uuid.uuid4().hex[:8]}")
    api = api_for(prod, token)
    submitted = {
        "sum": api.submit("sum_number", {"x": 20, "y": 22}, name="sum"),
        "inference": api.submit(
            "model_inference", {"text": "backup", "steps": 3, "step_seconds": 0.2}, name="inference"
        ),
        "fail": api.submit("fail", {"message": "failing before the backup"}, name="fail"),
    }
    assert all(r.status_code == 202 for r in submitted.values()), {k: r.text for k, r in submitted.items()}
    ids = {name: r.json()["id"] for name, r in submitted.items()}
    before = {
        name: api.wait_for_state(job_id, "SUCCESS", "FAILURE", timeout=120) for name, job_id in ids.items()
    }
    assert before["sum"]["state"] == "SUCCESS" and before["sum"]["result"]["sum"], before["sum"]
    assert before["inference"]["state"] == "SUCCESS", before["inference"]
    assert before["fail"]["state"] == "FAILURE", before["fail"]
    prod.manage(
        "shell",
        "-c",
        "from django_celery_beat.models import CrontabSchedule, PeriodicTask; "
        "c, _ = CrontabSchedule.objects.get_or_create(minute='30', hour='3'); "
        f"PeriodicTask.objects.create(name='{SCHEDULE}', task='jobs.sum_number', crontab=c, "
        'kwargs=\'{"x": 1, "y": 2}\')',
    )
    assert SCHEDULE in schedules(prod)
    wait_until(
        lambda: set(ids.values()) <= set(flower_tasks(prod)),
        timeout=60,
        interval=1,
        what="Flower to list the jobs",
    )

    # --- backups: three runs, --keep 2 leaves the newest two -----------------------------------
    backups = tmp_path / "backups"
    for _ in range(3):
        made = script(prod, "backup", "--dir", str(backups), "--keep", "2")
        assert made.returncode == 0, made.stdout + made.stderr
    archives = sorted(backups.glob("*.backup.tar.gz"))
    assert len(archives) == 2, [p.name for p in backups.iterdir()]
    newest = archives[-1]
    assert re.fullmatch(rf"{PROJECT}-\d{{8}}T\d{{6}}Z(-\d+)?\.backup\.tar\.gz", newest.name), newest.name
    assert stat.S_IMODE(newest.stat().st_mode) == 0o600
    assert not [p for p in backups.iterdir() if p.name.startswith(".") or p.is_dir()], "leftovers"
    for value in (token, *(prod.env[n] for n in ("POSTGRES_PASSWORD", "REDIS_PASSWORD", "FLOWER_PASSWORD"))):
        assert value not in made.stdout + made.stderr
    prod.wait_healthy()  # Flower came back after its stop for the state copy

    # --- the stack is gone with its volumes, and starts again empty ---------------------------
    prod.down(volumes=True)
    prod.up(timeout=UP_TIMEOUT)
    assert api.request("GET", "/api/whoami/").status_code == 401, (
        "the data survived down -v: nothing to restore"
    )

    # --- a stack with another JOB_ID_SECRET (a fresh gen-prod-env's) is refused, naming it ------
    right = prod.env["JOB_ID_SECRET"]
    with tarfile.open(newest) as tar:
        raw = tar.extractfile("manifest.json").read().decode()
    assert json.loads(raw)["job_id_secret_fingerprint"] == secret_fingerprint(right), raw
    assert right not in raw
    prod.env["JOB_ID_SECRET"] = f"another-{uuid.uuid4().hex}{uuid.uuid4().hex}"
    try:
        prod.up(timeout=UP_TIMEOUT)  # the app containers take the other secret
        refused = script(prod, "restore", str(newest), "--force")
        assert_clean_refusal(refused, "JOB_ID_SECRET", "Nothing was changed")
        assert right not in refused.stdout + refused.stderr
        assert api.request("GET", "/api/whoami/").status_code == 401, "a refused restore restored"
        assert prod.healthy(), "a refused restore stopped services"
    finally:
        prod.env["JOB_ID_SECRET"] = right
        prod.up(timeout=UP_TIMEOUT)
    marker = prod.create_token(f"fresh-{uuid.uuid4().hex[:8]}")

    # --- a truncated archive is refused, nothing overwritten ----------------------------------
    truncated = tmp_path / newest.name.replace(".backup", "-truncated.backup")
    truncated.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    refused = script(prod, "restore", str(truncated))
    assert_clean_refusal(refused, "truncated or corrupt", "nothing was restored")
    # A stack holding data (the marker user) is refused without --force.
    refused = script(prod, "restore", str(newest))
    assert_clean_refusal(refused, "already holds data", "--force", "Nothing was changed")
    assert api_for(prod, marker).request("GET", "/api/whoami/").status_code == 200, (
        "the fresh stack was changed"
    )
    assert api.request("GET", "/api/whoami/").status_code == 401
    assert prod.healthy(), "a refused restore stopped services"

    # --- the restore -------------------------------------------------------------------------
    restored = script(prod, "restore", str(newest), "--force")
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "Traceback" not in restored.stdout + restored.stderr
    prod.wait_healthy()
    assert api.request("GET", "/api/whoami/").status_code == 200, "the old token does not work after restore"
    assert api_for(prod, marker).request("GET", "/api/whoami/").status_code == 401, (
        "restore kept data it replaces"
    )
    listed = api.request("GET", "/api/jobs/").json()
    assert {job["id"] for job in listed["results"]} == set(ids.values()), listed
    for name, job_id in ids.items():
        after = api.job(job_id).json()
        for key in ("state", "result", "error", "finished_at", "kind", "params"):
            assert after[key] == before[name][key], (name, key, after, before[name])
    assert SCHEDULE in schedules(prod)
    assert set(ids.values()) <= set(flower_tasks(prod)), "Flower's history was not restored"

    # Redis keeps the restored data across its own restart: it is in the append-only file.
    prod.compose("restart", "redis")
    prod.wait_healthy("redis", "web")
    assert api.job(ids["sum"]).json()["result"] == before["sum"]["result"]
    # The restored stack runs new jobs, and dedup still sees the restored ones.
    again = api.submit("sum_number", {"x": 20, "y": 22}, name="sum")
    assert again.status_code == 200 and again.json()["id"] == ids["sum"], again.text
    fresh = api.submit("sum_number", {"x": 1, "y": 1}, name=f"after-{uuid.uuid4().hex[:6]}")
    assert fresh.status_code == 202, fresh.text
    assert api.wait_for_state(fresh.json()["id"], "SUCCESS", "FAILURE", timeout=120)["state"] == "SUCCESS"


def test_backup_and_restore_of_a_stack_that_is_not_running(prod, tmp_path):
    absent = Stack(project=f"{PROJECT}-absent", env=dict(prod.env))
    made = script(absent, "backup", "--dir", str(tmp_path))
    assert_clean_refusal(made, "is not running", "docker compose up")
    assert not list(tmp_path.glob("*.tar.gz"))
    # The restore checks the archive first; here it gets a file that is no archive at all.
    bogus = tmp_path / "not-an-archive.backup.tar.gz"
    bogus.write_bytes(b"this is not a backup")
    assert_clean_refusal(script(absent, "restore", str(bogus)), "truncated or corrupt")


# --- PostgreSQL 17 -> 18 ----------------------------------------------------------------------------

POSTGRES18_IMAGE = os.environ.get("POSTGRES18_IMAGE", "postgres:18")


def postgres_version(stack: Stack) -> str:
    return stack.exec(
        "postgres", "sh", "-c", 'psql -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tA -c "SHOW server_version"'
    ).stdout.split()[0]


def test_postgres_17_to_18_in_one_command(prod, tmp_path):
    """scripts/upgrade-postgres on the production-mode stack holding users, tokens, finished jobs
    and a beat schedule: afterwards PostgreSQL 18 runs on a new volume in 18's layout, everything
    is there, the old token still works and jobs run; the 17 volume is untouched, and the
    settings that select the new server are in the env file (docs/production.md)."""
    prod.wait_healthy()
    old_volume, new_volume = f"{PROJECT}_postgres-data", f"{PROJECT}_postgres-data-18"
    docker("volume", "rm", "-f", new_volume)  # left by an earlier, interrupted run
    version = postgres_version(prod)
    versions.record("postgres:17", version, os.environ.get("POSTGRES_IMAGE", "postgres:17"))
    assert version.startswith("17."), version

    token = prod.create_token(f"upgrade-{uuid.uuid4().hex[:8]}")
    api = api_for(prod, token)
    names = {
        "sum": ("sum_number", {"x": 17, "y": 18}),
        "fail": ("fail", {"message": "before 18"}),
        "inference": ("model_inference", {"text": "upgrade", "steps": 2, "step_seconds": 0.2}),
    }
    ids = {}
    for name, (kind, params) in names.items():
        answer = api.submit(kind, params, name=f"pg18-{name}")
        assert answer.status_code == 202, answer.text
        ids[name] = answer.json()["id"]
    before = {
        name: api.wait_for_state(job_id, "SUCCESS", "FAILURE", timeout=120) for name, job_id in ids.items()
    }
    schedule = f"{SCHEDULE}-pg18"
    prod.manage(
        "shell",
        "-c",
        "from django_celery_beat.models import IntervalSchedule, PeriodicTask; "
        "i, _ = IntervalSchedule.objects.get_or_create(every=1, period='days'); "
        f"PeriodicTask.objects.create(name='{schedule}', task='jobs.noop', interval=i)",
    )
    users = prod.manage(
        "shell", "-c", "from django.contrib.auth.models import User; print(User.objects.count())"
    ).stdout.split()[-1]

    env_file = tmp_path / "prod.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in prod.env.items()))
    upgraded = script(
        prod,
        "upgrade-postgres",
        "--to",
        POSTGRES18_IMAGE,
        "--env-file",
        str(env_file),
        "--dir",
        str(tmp_path / "dumps"),
        timeout=1800,
    )
    output = upgraded.stdout + upgraded.stderr
    assert upgraded.returncode == 0, output
    assert "Traceback" not in output and token not in output and prod.env["POSTGRES_PASSWORD"] not in output
    written = read_env_file(env_file)
    settings = {
        name: written[name] for name in ("POSTGRES_IMAGE", "POSTGRES_VOLUME_TARGET", "POSTGRES_VOLUME_NAME")
    }
    assert settings == {
        "POSTGRES_IMAGE": POSTGRES18_IMAGE,
        "POSTGRES_VOLUME_TARGET": "/var/lib/postgresql",
        "POSTGRES_VOLUME_NAME": new_volume,
    }, settings
    assert {n: written[n] for n in prod.env} == prod.env, "the env file's other lines changed"
    [dump] = (tmp_path / "dumps").glob(f"{PROJECT}-postgres17-*.dump")
    assert stat.S_IMODE(dump.stat().st_mode) == 0o600
    prod.env.update(settings)  # from now on every compose command of this stack runs 18

    try:
        prod.wait_healthy()
        version = postgres_version(prod)
        versions.record("postgres:18", version, POSTGRES18_IMAGE)
        assert version.startswith("18."), version
        # Only a superuser (or pg_read_all_settings) may read it: the administrator, not the app's role.
        data_directory = prod.exec(
            "postgres",
            "sh",
            "-c",
            'psql -U "$POSTGRES_ADMIN_USER" -d "$POSTGRES_DB" -tA -c "SHOW data_directory"',
        ).stdout
        assert data_directory.strip() == "/var/lib/postgresql/18/docker", data_directory
        # On 18 too the app's role is no superuser and owns every table it was loaded with.
        roles = prod.exec(
            "postgres",
            "sh",
            "-c",
            'psql -U "$POSTGRES_ADMIN_USER" -d "$POSTGRES_DB" -tA -v app="$POSTGRES_USER"',
            input="SELECT string_agg(rolname, ',') FROM pg_roles WHERE rolsuper;\n"
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public' AND tableowner <> :'app';\n"
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'public';\n",
        ).stdout.split()
        assert roles[0] == "postgres" and roles[1] == "0" and int(roles[2]) > 10, roles
        mount = next(m for m in prod.inspect("postgres")["Mounts"] if m["Type"] == "volume")
        assert (mount["Name"], mount["Destination"]) == (new_volume, "/var/lib/postgresql"), mount
        # The old volume holds PostgreSQL 17's data as it was.
        old = docker(
            "run",
            "--rm",
            "-v",
            f"{old_volume}:/old:ro",
            "--entrypoint",
            "cat",
            POSTGRES18_IMAGE,
            "/old/PG_VERSION",
        ).stdout.strip()
        assert old == "17", old

        assert api.request("GET", "/api/whoami/").status_code == 200, "the old token does not work on 18"
        for name, job_id in ids.items():
            after = api.job(job_id).json()
            for key in ("state", "result", "error", "finished_at", "kind", "params"):
                assert after[key] == before[name][key], (name, key, after, before[name])
        assert {schedule, SCHEDULE} <= set(schedules(prod))
        assert (
            prod.manage(
                "shell", "-c", "from django.contrib.auth.models import User; print(User.objects.count())"
            ).stdout.split()[-1]
            == users
        )
        again = api.submit("sum_number", {"x": 17, "y": 18}, name="pg18-sum")
        assert again.status_code == 200 and again.json()["id"] == ids["sum"], again.text
        fresh = api.submit("sum_number", {"x": 1, "y": 18}, name=f"on-18-{uuid.uuid4().hex[:6]}")
        assert fresh.status_code == 202, fresh.text
        assert api.wait_for_state(fresh.json()["id"], "SUCCESS", "FAILURE", timeout=120)["state"] == "SUCCESS"
        # A second run has nothing to do and says so, changing nothing.
        noop = script(
            prod,
            "upgrade-postgres",
            "--to",
            POSTGRES18_IMAGE,
            "--env-file",
            str(env_file),
            "--dir",
            str(tmp_path / "dumps"),
        )
        assert_clean_refusal(noop, "nothing to upgrade")
        assert prod.healthy()
    finally:
        # The 17 volume is no longer the stack's (its `down -v` removes the 18 one): removed here.
        docker("volume", "rm", old_volume, check=False)
