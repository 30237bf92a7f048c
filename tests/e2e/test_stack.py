"""The compose stack as a whole: services, health, outages of Redis and PostgreSQL, Flower,
a job through the real worker, persistence across `down`/`up`, the compose file with no .env,
and beat restarts.

Each test leaves every service running and healthy for the next one.
"""

import hashlib
import json
import os
import re
import shutil
import subprocess

import pytest
import requests

from tests.e2e.helpers import FLOWER_AUTH, flower, flower_workers_online, hostnames, redis_cli
from tests.support.stack import LONG_RUNNING, ROOT
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

EXPECTED_REDIS_VERSION = os.environ.get("EXPECT_REDIS_VERSION", "5.0.")
PROMPT = 10  # seconds: an answer must come within this, even while a backing service is down


def healthz(stack) -> requests.Response:
    return requests.get(stack.url("/healthz"), timeout=PROMPT)


def psql(stack, query: str) -> str:
    return stack.exec("postgres", "psql", "-U", "app", "-d", "app", "-tAc", query).stdout.strip()


def test_services_are_healthy_and_redis_is_5_0(stack, capsys):
    stack.wait_healthy()
    state = stack.state()
    for name in LONG_RUNNING:
        containers = state.get(name)
        assert containers, f"{name} has no container"
        for container in containers:
            assert (container["State"], container["Health"]) == ("running", "healthy"), container
    assert state.get("migrate"), "the migrate one-shot never ran"
    for container in state["migrate"]:
        assert (container["State"], container["ExitCode"]) == ("exited", 0), container

    info = redis_cli(stack, "INFO", "server")
    match = re.search(r"^redis_version:(\S+)", info, re.MULTILINE)
    assert match, f"no redis_version in INFO server:\n{info}"
    version = match.group(1)
    with capsys.disabled():  # always in the CI log, not only when the test fails
        print(f"\n[e2e] Redis server version in the stack: {version} (expected {EXPECTED_REDIS_VERSION}*)")
    assert version.startswith(EXPECTED_REDIS_VERSION)


def test_redis_keeps_its_data_below_its_memory_limit_and_evicts_nothing(stack):
    # compose/redis/start-redis: maxmemory is 60 % of the container's limit (the rest for the AOF
    # rewrite's fork and the allocator), and a full Redis refuses writes rather than drop a job.
    info = redis_cli(stack, "INFO", "memory")
    maxmemory = int(re.search(r"^maxmemory:(\d+)", info, re.MULTILINE).group(1))
    policy = re.search(r"^maxmemory_policy:(\S+)", info, re.MULTILINE).group(1)
    limit = stack.inspect("redis")["HostConfig"]["Memory"]
    assert limit == 512 * 1024 * 1024
    assert maxmemory == limit // 100 * 60
    assert policy == "noeviction"


def test_healthz_reports_database_and_redis(stack):
    response = healthz(stack)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}


@pytest.mark.parametrize(("service", "part"), [("redis", "redis"), ("postgres", "database")])
def test_outage_answers_503_then_recovers_without_restarting_web(stack, api, service, part):
    finished = api.submit("noop").json()
    api.wait_for_state(finished["id"], "SUCCESS")
    web_before = stack.inspect("web")
    assert healthz(stack).status_code == 200

    stack.compose("stop", service)
    try:
        response = healthz(stack)
        assert response.status_code == 503, response.text
        body = response.json()
        other = "database" if part == "redis" else "redis"
        assert body["status"] == "unavailable"
        assert body[part] == "down"
        assert body[other] == "ok"

        calls = [("GET", "/api/jobs/", None), ("POST", "/api/jobs/", {"kind": "noop", "params": {}})]
        status = api.request("GET", f"/api/jobs/{finished['id']}/", timeout=PROMPT)
        if part == "database" and status.status_code == 200:
            # A status read needs no PostgreSQL while the token's user is in Redis (verified less
            # than API_TOKEN_CACHE_SECONDS ago) and the record's copy too: the same answer as before.
            assert {k: status.json()[k] for k in ("id", "state")} == {
                "id": finished["id"],
                "state": "SUCCESS",
            }
        else:
            calls.append(("GET", f"/api/jobs/{finished['id']}/", None))
        for method, path, payload in calls:
            response = api.request(method, path, json=payload, timeout=PROMPT)
            assert response.status_code == 503, (
                f"{method} {path}: {response.status_code} {response.text[:500]}"
            )
            assert response.headers["Content-Type"].startswith("application/json")
            assert response.json()["error"] == "service_unavailable"
            assert response.json()["service"] == part
            assert int(response.headers["Retry-After"]) > 0
    finally:
        stack.compose("start", service)

    wait_until(
        lambda: healthz(stack).status_code == 200,
        timeout=120,
        interval=1,
        what=f"/healthz back to 200 after {service} restarted",
    )
    assert healthz(stack).json() == {"status": "ok", "database": "ok", "redis": "ok"}
    web_after = stack.inspect("web")
    assert web_after["Id"] == web_before["Id"], "web was recreated"
    assert web_after["State"]["StartedAt"] == web_before["State"]["StartedAt"], "web was restarted"
    assert web_after["RestartCount"] == web_before["RestartCount"]

    # Back to normal end to end: the job submitted during the outage was refused, a new one runs.
    assert api.job(finished["id"]).json()["state"] == "SUCCESS"
    again = api.submit("noop")
    assert again.status_code == 202
    api.wait_for_state(again.json()["id"], "SUCCESS", timeout=120)
    stack.wait_healthy()


def test_flower_requires_credentials_and_lists_the_worker(stack):
    for path in ("/", "/api/workers?status=true", "/api/tasks"):
        assert flower(stack, path, auth=None).status_code == 401, path
    assert flower(stack, "/api/workers?status=true", auth=(FLOWER_AUTH[0], "wrong")).status_code == 401

    expected = {f"celery@{name}" for name in hostnames(stack, "worker").values()}
    assert expected

    def all_online():
        online = flower_workers_online(stack)
        return online if all(online.get(name) is True for name in expected) else None

    online = wait_until(all_online, timeout=90, interval=1, what=f"Flower showing {expected} online")
    assert expected <= {name for name, alive in online.items() if alive}


def test_job_runs_in_the_worker_container(stack, api):
    submitted = api.submit("sum_number", {"x": 1, "y": 100_000})
    assert submitted.status_code == 202, submitted.text
    body = api.wait_for_state(submitted.json()["id"], "SUCCESS", "FAILURE")
    assert body["state"] == "SUCCESS", body
    assert body["result"] == {"sum": 5_000_050_000, "count": 100_000}

    workers = hostnames(stack, "worker")
    assert body["worker"] in workers.values(), f"ran on {body['worker']!r}, workers are {workers}"
    if len(workers) == 1:
        assert body["worker"] == workers[1]
    assert body["worker"] not in hostnames(stack, "web").values()
    # And read back through web by anyone holding the token: a second read gives the same.
    assert api.job(body["id"]).json()["result"] == body["result"]


def test_gevent_worker_from_the_image_runs_io_bound_jobs(stack, api):
    """A second worker container on the gevent pool (CELERY_WORKER_POOL, as a user sets it):
    the image has gevent, start-worker passes the pool so Celery patches before loading, its
    liveness check passes, and it runs jobs from the shared queue."""
    name = f"{stack.project}-gevent-worker"
    stack.compose(
        "run",
        "-d",
        "--no-deps",
        "--name",
        name,
        "-e",
        "CELERY_WORKER_POOL=gevent",
        "-e",
        "CELERY_WORKER_CONCURRENCY=20",
        "worker",
    )
    try:
        wait_until(
            lambda: "concurrency: 20 (gevent)" in docker_logs(name),
            timeout=120,
            interval=1,
            what="the gevent worker's banner",
        )
        wait_until(
            lambda: (
                subprocess.run(
                    ["docker", "exec", name, "healthcheck-worker"], capture_output=True, timeout=30
                ).returncode
                == 0
            ),
            timeout=60,
            interval=1,
            what="the gevent worker's liveness check",
        )
        gevent_host = subprocess.run(
            ["docker", "exec", name, "hostname"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()
        ids = [api.submit("wait_io", {"seconds": 2}).json()["id"] for _ in range(20)]
        bodies = [api.wait_for_state(job_id, "SUCCESS", "FAILURE") for job_id in ids]
        assert all(body["state"] == "SUCCESS" for body in bodies), bodies
        ran_on = {body["worker"] for body in bodies}
        assert gevent_host in ran_on, (gevent_host, ran_on)
    finally:
        subprocess.run(["docker", "stop", name], capture_output=True, timeout=180)
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def docker_logs(container: str) -> str:
    result = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=60)
    return result.stdout + result.stderr


def test_down_and_up_keeps_results_and_rows(stack, api):
    text = "persist me"
    submitted = api.submit("model_inference", {"text": text, "steps": 1, "step_seconds": 0.1})
    assert submitted.status_code == 202, submitted.text
    before = api.wait_for_state(submitted.json()["id"], "SUCCESS")
    web_before = stack.inspect("web")["Id"]

    stack.compose("down", timeout=300)  # no -v: volumes stay
    assert not stack.container_ids("web", all=True)
    stack.up()

    assert stack.inspect("web")["Id"] != web_before, "containers were not recreated"
    after = api.job(before["id"])
    assert after.status_code == 200, after.text
    after = after.json()
    for key in ("state", "result", "worker", "started_at", "finished_at", "name", "params"):
        assert after[key] == before[key], key
    digest = hashlib.sha256(text.encode()).digest()
    assert after["result"]["score"] == round(digest[1] / 255, 3)

    assert psql(stack, "SELECT count(*) FROM auth_user WHERE username = 'e2e-alice'") == "1"
    assert (
        psql(
            stack,
            "SELECT count(*) FROM knox_authtoken t JOIN auth_user u ON u.id = t.user_id "
            "WHERE u.username = 'e2e-alice'",
        )
        != "0"
    )
    assert (
        psql(stack, f"SELECT kind || ' ' || name FROM jobs_job WHERE id = '{before['id']}'")
        == f"model_inference {before['name']}"
    )
    stack.wait_healthy()


def test_compose_config_needs_no_env(tmp_path):
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copytree(ROOT / "compose", tmp_path / "compose")
    assert not (tmp_path / ".env").exists()
    clean_env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/root")}

    def config(*args):
        return subprocess.run(
            ["docker", "compose", "config", *args],
            cwd=tmp_path,
            env=clean_env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    quiet = config("-q")
    assert quiet.returncode == 0, quiet.stderr
    assert "not set" not in quiet.stderr, quiet.stderr  # no variable left without a default

    resolved = json.loads(config("--format", "json").stdout)
    services = resolved["services"]
    assert set(LONG_RUNNING) | {"migrate"} <= set(services)
    # The upstream images are the defaults; an offline machine swaps them by variable only.
    assert services["redis"]["image"] == "redis:5.0-alpine"
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["web"]["build"]["args"]["PYTHON_IMAGE"].startswith("python:3.13")
    for name, service in services.items():
        for port in service.get("ports", []):
            assert port.get("host_ip") == "127.0.0.1", f"{name} publishes {port} beyond loopback"


def test_beat_survives_three_restarts_in_a_row(stack):
    original = stack.inspect("beat")
    starts_before = stack.logs("beat").count("beat: Starting...")
    started_at = original["State"]["StartedAt"]
    for attempt in range(1, 4):
        stack.compose("restart", "beat")
        current = stack.inspect("beat")
        assert current["Id"] == original["Id"]
        assert current["State"]["StartedAt"] != started_at, f"restart {attempt} did not restart beat"
        started_at = current["State"]["StartedAt"]
        stack.wait_healthy("beat", timeout=120)
        current = stack.inspect("beat")
        assert current["State"]["Running"] and current["State"]["StartedAt"] == started_at, (
            f"beat crashed and restarted after restart {attempt}"
        )
    logs = stack.logs("beat")
    assert logs.count("beat: Starting...") >= starts_before + 3
    assert "pidfile" not in logs.lower(), logs[-3000:]
    stack.wait_healthy()
