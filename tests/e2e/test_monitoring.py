"""The monitoring overlay (docker-compose.monitoring.yml, issue 22) on a stack of its own.

First, with no stack: the alert rules pass their promtool tests (on the rules' defaults, in the
Prometheus image). Then docker-compose.yml + docker-compose.monitoring.yml, on its own project name,
ports and image tag, with LOG_FORMAT=json and random secrets (so that a leaked one can be found):
every target is up and the job metrics move; every worker stopped fires NoLiveWorker within its
`for:` and it resolves once they are up; workers paused (taking no job, still up) while jobs
arrive fires JobsBacklogGrowing;
a storm of `fail` jobs fires JobsFailing; every query of every dashboard returns data; one job's
request id and job id are in both web's and the worker's JSON lines; and no line of any container
holds a token or a secret.

Alerts are read where an operator's notifications come from: Alertmanager's API. Only what makes
the mechanism quicker to reach is shortened, through the overlay's variables: the scrape, rule
evaluation and DNS intervals and the `for:` durations of the three alerts driven here. Every
threshold keeps its default.
"""

import json
import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.e2e.helpers import contains_secret, unique
from tests.support.stack import ROOT, Api, Stack, running
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

PROJECT = os.environ.get("MONITORING_E2E_PROJECT", "djcs-monitoring")
FILES = ("docker-compose.yml", "docker-compose.monitoring.yml")
PROMETHEUS_PORT = int(os.environ.get("MONITORING_E2E_PROMETHEUS_PORT", "23090"))
ALERTMANAGER_PORT = int(os.environ.get("MONITORING_E2E_ALERTMANAGER_PORT", "23093"))
MONITORING = ROOT / "compose" / "monitoring"
PROMETHEUS_IMAGE = os.environ.get("PROMETHEUS_IMAGE", "prom/prometheus:v3")

SCRAPE = 5  # seconds: scrape, rule evaluation and DNS refresh intervals
ALERT_FOR = 15  # seconds: `for:` of NoLiveWorker, JobsBacklogGrowing and JobsFailing
SECRET_NAMES = (
    "DJANGO_SECRET_KEY",
    "JOB_ID_SECRET",
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "FLOWER_PASSWORD",
    "MONITORING_PASSWORD",
)
SECRETS = {name: secrets.token_urlsafe(24) for name in SECRET_NAMES}
ENV = {
    "APP_IMAGE": os.environ.get("MONITORING_E2E_APP_IMAGE", f"{PROJECT}-app:latest"),
    "WEB_PORT": os.environ.get("MONITORING_E2E_WEB_PORT", "23000"),
    "FLOWER_PORT": os.environ.get("MONITORING_E2E_FLOWER_PORT", "23555"),
    "PROMETHEUS_PORT": str(PROMETHEUS_PORT),
    "ALERTMANAGER_PORT": str(ALERTMANAGER_PORT),
    "LOG_FORMAT": "json",
    "PROMETHEUS_SCRAPE_INTERVAL": f"{SCRAPE}s",
    "PROMETHEUS_SCRAPE_TIMEOUT": f"{SCRAPE - 1}s",
    "PROMETHEUS_EVALUATION_INTERVAL": f"{SCRAPE}s",
    "PROMETHEUS_DNS_REFRESH_INTERVAL": f"{SCRAPE}s",
    "ALERT_NO_WORKER_FOR": f"{ALERT_FOR}s",
    "ALERT_BACKLOG_FOR": f"{ALERT_FOR}s",
    "ALERT_FAILURE_FOR": f"{ALERT_FOR}s",
    "MONITORING_USER": "ops",
    **SECRETS,
}
AUTH = (ENV["MONITORING_USER"], SECRETS["MONITORING_PASSWORD"])
# The jobs of the scrape configuration that must have targets on this stack (no RabbitMQ, no proxy).
JOBS = {"prometheus", "alertmanager", "web", "worker", "beat", "redis", "postgres", "backup"}
TOKENS: list[str] = []  # every token this module created: none may appear in a log line


# --- no stack: the rules' unit tests ----------------------------------------------------------------


def rule_names(path: Path) -> set[str]:
    return {rule["alert"] for group in yaml.safe_load(path.read_text())["groups"] for rule in group["rules"]}


def test_every_alert_rule_passes_its_promtool_tests():
    """alerts.yml rendered on its defaults (no variable set), then `promtool test rules` in the
    image that runs it: every rule has tests, and they pass."""
    test_files = sorted((MONITORING / "prometheus").glob("*.test.yml"))
    tested = {
        case["alertname"]
        for path in test_files
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    }
    rules = rule_names(MONITORING / "prometheus" / "alerts.yml")
    assert rules and rules == tested, f"untested rules: {rules - tested}; tests of no rule: {tested - rules}"
    names = " ".join(path.name for path in test_files)
    script = (
        "cd /tmp && sh /etc/monitoring/render /etc/monitoring/prometheus/alerts.yml > alerts.yml"
        " && cp /etc/monitoring/prometheus/*.test.yml . && promtool check rules alerts.yml"
        f" && promtool test rules {names}"
    )
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "sh",
            "-v",
            f"{MONITORING}:/etc/monitoring:ro",
            PROMETHEUS_IMAGE,
            "-c",
            script,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"SUCCESS: {len(rules)} rules found" in output, output


# --- the stack ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def backup_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("monitoring-backups")
    directory.chmod(0o755)  # the backup exporter reads it as an unprivileged user
    return directory


@pytest.fixture(scope="module")
def stack(backup_dir):
    with running(
        Stack(project=PROJECT, files=FILES, env={**ENV, "BACKUP_DIR": str(backup_dir)}), up_timeout=420
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(stack) -> Api:
    token = stack.create_token("monitoring-alice")
    TOKENS.append(token)
    return Api(stack.url(""), token)


def prometheus(path: str, **params) -> dict:
    answer = requests.get(f"http://127.0.0.1:{PROMETHEUS_PORT}{path}", params=params, auth=AUTH, timeout=30)
    answer.raise_for_status()
    body = answer.json()
    assert body["status"] == "success", body
    return body["data"]


def query(expr: str) -> float | None:
    """The value of an expression with one result (None: no result)."""
    result = prometheus("/api/v1/query", query=expr)["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def firing(alertname: str) -> list[dict]:
    """The alert's instances Alertmanager holds as active: to be notified, neither silenced nor
    inhibited by another alert (resolved ones are not listed at all)."""
    answer = requests.get(
        f"http://127.0.0.1:{ALERTMANAGER_PORT}/api/v2/alerts",
        params={
            "filter": f'alertname="{alertname}"',
            "active": "true",
            "silenced": "false",
            "inhibited": "false",
        },
        auth=AUTH,
        timeout=30,
    )
    answer.raise_for_status()
    alerts = answer.json()
    assert all(alert["status"]["state"] == "active" for alert in alerts), alerts
    return alerts


def targets() -> list[dict]:
    return prometheus("/api/v1/targets", state="active")["activeTargets"]


def all_up() -> list[dict] | None:
    active = targets()
    jobs = {target["labels"]["job"] for target in active}
    return active if jobs == JOBS and all(target["health"] == "up" for target in active) else None


def test_every_target_is_up_and_the_uis_need_the_login(stack):
    active = wait_until(all_up, timeout=120, interval=2, what=f"every target of {sorted(JOBS)} up")
    assert {t["labels"]["job"] for t in active} == JOBS, active
    for port in (PROMETHEUS_PORT, ALERTMANAGER_PORT):
        assert requests.get(f"http://127.0.0.1:{port}/", timeout=30).status_code == 401
        wrong = requests.get(f"http://127.0.0.1:{port}/", auth=(AUTH[0], "not-it"), timeout=30)
        assert wrong.status_code == 401
    bindings = stack.inspect("monitoring-proxy")["NetworkSettings"]["Ports"]
    assert {b["HostIp"] for port in bindings.values() for b in port or []} == {"127.0.0.1"}, bindings
    # The app's metrics ports are on the compose network only.
    for service in ("web", "worker", "beat"):
        assert "9808/tcp" not in (stack.inspect(service)["HostConfig"]["PortBindings"] or {}), service


def test_job_metrics_move_when_jobs_run(stack, api):
    kind = "sum_number"
    counters = {
        "submitted": f'sum(jobs_submitted_total{{kind="{kind}"}})',
        "started": f'sum(jobs_started_total{{kind="{kind}"}})',
        "succeeded": f'sum(jobs_succeeded_total{{kind="{kind}"}})',
        "run": f'sum(jobs_run_seconds_count{{kind="{kind}", outcome="success"}})',
        "accepted": "sum(django_http_responses_total_by_status_view_method_total"
        '{view="job-list", method="POST", status="202"}) or vector(0)',
    }

    def served():
        # Every counter exists from the start at 0, but for the run time, observed per outcome.
        values = {name: query(expr) for name, expr in counters.items() if name != "run"}
        return values if None not in values.values() else None

    before = wait_until(served, timeout=60, interval=2, what="the job counters to be served")
    before["run"] = query(counters["run"]) or 0.0
    jobs = 3
    for n in range(jobs):
        submitted = api.submit(kind, {"x": 1, "y": 10 + n})
        assert submitted.status_code == 202, submitted.text
        assert api.wait_for_state(submitted.json()["id"], "SUCCESS", "FAILURE")["state"] == "SUCCESS"

    def moved():
        now = {name: query(expr) or 0.0 for name, expr in counters.items()}
        return now if all(now[name] >= before[name] + jobs for name in counters) else None

    wait_until(moved, timeout=60, interval=2, what=f"every counter of {kind} to grow by {jobs}")
    # A ping answered within a second, from a busy machine too: the next scrape's, if not this one's.
    wait_until(lambda: query("max(jobs_workers_live)") == 1, timeout=30, interval=2, what="one live worker")
    assert query('jobs_queue_messages{queue="jobs"}') == 0


def alert_fires(alertname: str, timeout: float) -> dict:
    [alert] = wait_until(
        lambda: firing(alertname), timeout=timeout, interval=1, what=f"Alertmanager to list {alertname}"
    )
    return alert


def test_no_live_worker_fires_within_its_time_and_resolves_after_up(stack):
    assert not firing("NoLiveWorker")
    stopping = time.monotonic()
    stack.compose("stop", "worker", timeout=300)
    stopped = time.monotonic()
    # The last scrape that found a worker was at most one interval before it stopped; the rule turns
    # pending at the next evaluation, firing at the first evaluation after its `for:`, and is sent
    # to Alertmanager at once; 15 s more for a busy machine.
    budget = (stopped - stopping) + SCRAPE + ALERT_FOR + 2 * SCRAPE + 15
    alert = alert_fires("NoLiveWorker", timeout=budget + 30)
    fired = time.monotonic() - stopping
    assert ALERT_FOR <= fired <= budget, f"fired {fired:.0f} s after the stop began (budget {budget:.0f} s)"
    assert alert["labels"]["severity"] == "critical", alert

    stack.up("worker", timeout=300)
    started = time.monotonic()
    wait_until(
        lambda: not firing("NoLiveWorker"),
        timeout=120,
        interval=1,
        what="NoLiveWorker to resolve once a worker is up",
    )
    print(
        f"NoLiveWorker: fired {fired:.0f} s after the stop began; resolved "
        f"{time.monotonic() - started:.0f} s after the worker was healthy"
    )


def worker_control(stack: Stack, *args: str) -> None:
    """Celery's remote control, sent from the worker container to every worker."""
    stack.exec("worker", "celery", "--app=config", "control", *args)


def test_backlog_alert_fires_while_workers_are_paused(stack, api):
    """The workers stop taking jobs (Celery's cancel_consumer) but stay up, as saturated ones do:
    NoLiveWorker stays quiet, and JobsBacklogGrowing is the alert an operator gets."""
    worker_control(stack, "cancel_consumer", "jobs")
    try:
        deadline = time.monotonic() + 120
        submitted = 0
        while not firing("JobsBacklogGrowing"):
            assert time.monotonic() < deadline, f"JobsBacklogGrowing did not fire; {submitted} jobs queued"
            answer = api.submit("noop", name=unique("backlog"))
            assert answer.status_code == 202, answer.text
            submitted += 1
            time.sleep(1)
        waiting = query('jobs_queue_messages{queue="jobs"}')
        assert waiting and waiting > 0, waiting
        assert not firing("NoLiveWorker")
        wait_until(
            lambda: query("max(jobs_workers_live)") == 1,
            timeout=30,
            interval=2,
            what="the paused worker to answer pings",
        )
    finally:
        worker_control(stack, "add_consumer", "jobs")
    wait_until(
        lambda: query('jobs_queue_messages{queue="jobs"}') == 0,
        timeout=120,
        interval=2,
        what="the backlog to drain once the workers run again",
    )


def test_failure_ratio_alert_fires_on_a_storm_of_failing_jobs(stack, api):
    assert not firing("JobsFailing")
    ids = []
    for _ in range(40):
        answer = api.submit("fail", name=unique("storm"))
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["id"])
    for job_id in ids:
        assert api.wait_for_state(job_id, "SUCCESS", "FAILURE")["state"] == "FAILURE"
    alert = alert_fires("JobsFailing", timeout=ALERT_FOR + 6 * SCRAPE + 30)
    assert alert["labels"]["severity"] == "warning", alert


def test_every_dashboard_query_returns_data(stack, backup_dir):
    # A backup, so that the backup panel has something to show (and the record reaches Prometheus).
    env = {**os.environ, **stack.env, "COMPOSE_DISABLE_ENV_FILE": "1"}
    files = [arg for name in FILES for arg in ("-f", str(ROOT / name))]
    backup = subprocess.run(
        [str(ROOT / "scripts" / "backup"), "-p", PROJECT, *files, "--dir", str(backup_dir)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert backup.returncode == 0, backup.stdout + backup.stderr
    wait_until(
        lambda: query(f'stack_backup_last_success_timestamp_seconds{{project="{PROJECT}"}}'),
        timeout=60,
        interval=2,
        what="the backup's record in Prometheus",
    )
    assert not firing("BackupTooOld")

    dashboards = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
    assert dashboards
    end = time.time()
    empty = []
    checked = 0
    for path in dashboards:
        for panel in json.loads(path.read_text())["panels"]:
            for target in panel["targets"]:
                # Grafana's $__rate_interval: at least four scrape intervals.
                expr = target["expr"].replace("$__rate_interval", "1m")
                data = prometheus("/api/v1/query_range", query=expr, start=end - 600, end=end, step=15)
                checked += 1
                if not any(series["values"] for series in data["result"]):
                    empty.append(f"{path.name}: {panel['title']}: {target['expr']}")
    assert checked and not empty, "panels without data:\n" + "\n".join(empty)


def json_lines(stack: Stack, service: str) -> list[dict]:
    out = stack.compose("logs", "--no-color", "--no-log-prefix", service).stdout
    lines = []
    for line in out.splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def test_json_logs_follow_one_job_from_the_request_to_the_worker(stack, api):
    submitted = api.submit(
        "model_inference", {"text": "follow me", "steps": 2, "step_seconds": 0.1}, name=unique("traced")
    )
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    request_id = submitted.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id), request_id
    assert api.wait_for_state(job_id, "SUCCESS", "FAILURE")["state"] == "SUCCESS"

    def lines_of_the_job(service):
        found = [
            line
            for line in json_lines(stack, service)
            if line.get("job_id") == job_id and line.get("request_id") == request_id
        ]
        return found or None

    web = wait_until(lambda: lines_of_the_job("web"), timeout=30, what="web's line of the job")
    worker = wait_until(lambda: lines_of_the_job("worker"), timeout=30, what="the worker's lines of the job")
    assert any("submitted" in line["message"] for line in web), web
    assert any("started" in line["message"] for line in worker), worker
    for line in web + worker:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
    # Every log line of web and the worker is JSON: the lines that are not are Celery's start-up
    # banner (printed, not logged), none in a text log format (a time first, ours or Celery's).
    for service in ("web", "worker"):
        out = stack.compose("logs", "--no-color", "--no-log-prefix", service).stdout.splitlines()
        text = [line for line in out if re.match(r"\[?\d{4}-\d\d-\d\d[ T]\d\d:\d\d", line)]
        assert not text, f"{service}: {len(text)} log lines are not JSON, e.g. {text[:3]}"


def test_no_token_or_secret_in_any_log_line(stack):
    """Last: every container's whole log, after all of the above."""
    assert TOKENS
    logs = stack.compose("logs", "--no-color").stdout
    assert len(logs) > 10_000
    for name, value in (*((f"token {n}", t) for n, t in enumerate(TOKENS)), *SECRETS.items()):
        assert not contains_secret(logs, value), f"{name} appears in the logs"
