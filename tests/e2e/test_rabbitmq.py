"""The stack on RabbitMQ (docker-compose.yml + docker-compose.rabbitmq.yml), end to end.

A compose project of its own ("djcs-rabbit", own ports and image tag) on the overlay's
defaults: jobs go through a quorum queue with publisher confirms, results stay in Redis, and
RabbitMQ refuses transient non-exclusive queues (deprecated; compose/rabbitmq/20-jobs.conf), so
every queue of Celery, Flower and the stack is durable or exclusive. Flower sees the worker and
its jobs; a worker started again under its name while RabbitMQ still holds its old connection
comes back healthy. The consumer timeout, at a shortened scale: a 20 s job cut off by a 10 s
timeout on the jobs queue, then run once under the stack's own setting. Then the chaos
scenarios that apply to a broker, each with 200 jobs and lost = 0 asserted: a worker SIGKILLed
mid-run, RabbitMQ restarted mid-run, a warm stop during a 20 s job, two workers with one
SIGKILLed. Their report lines join the chaos report ("rabbitmq ..."); the RabbitMQ version
joins the versions printed at the end (tests/support/versions.py).
"""

import json
import os
import re
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
import requests

from tests.e2e.helpers import flower, flower_workers_online, hostnames
from tests.support import versions
from tests.support.chaos import (
    RUNNING,
    OutageWatch,
    docker,
    executions,
    finish,
    job_mix,
    long_job,
    new_ledger,
    parse_time,
    short_job,
    two_workers_one_killed,
    worker_logs,
)
from tests.support.stack import ROOT, Api, Stack, running
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

PROJECT = os.environ.get("RABBIT_E2E_PROJECT", "djcs-rabbit")
FILES = ("docker-compose.yml", "docker-compose.rabbitmq.yml")
MANAGEMENT_PORT = int(os.environ.get("RABBIT_E2E_MANAGEMENT_PORT", "19672"))
ENV = {
    "APP_IMAGE": f"{PROJECT}-app:latest",
    "WEB_PORT": os.environ.get("RABBIT_E2E_WEB_PORT", "19000"),
    "FLOWER_PORT": os.environ.get("RABBIT_E2E_FLOWER_PORT", "19555"),
    "RABBITMQ_MANAGEMENT_PORT": str(MANAGEMENT_PORT),
}
# The overlay's development defaults (docker-compose.rabbitmq.yml): the app's account, and the
# management UI's administrator.
USER, VHOST, PASSWORD = "app", "jobs", "insecure-dev-rabbitmq-password"
ADMIN = ("admin", "insecure-dev-rabbitmq-admin-password")
ENV_IMAGE = os.environ.get("RABBITMQ_IMAGE", "rabbitmq:4-management-alpine")
JOBS = 200
TASK_TIME_LIMIT = 3600  # CELERY_TASK_TIME_LIMIT's default, seconds


@pytest.fixture(scope="module")
def rabbit():
    with running(Stack(project=PROJECT, files=FILES, env=ENV)) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(rabbit) -> Api:
    return Api(rabbit.url(""), rabbit.create_token("rabbit-alice"))


def management(path: str, auth: tuple[str, str] | None = ADMIN) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{MANAGEMENT_PORT}/api/{path}", auth=auth, timeout=30)


def jobs_queue() -> dict:
    response = management(f"queues/{VHOST}/jobs")
    response.raise_for_status()
    return response.json()


def published(queue: dict) -> int:
    return queue.get("message_stats", {}).get("publish", 0)


def rabbitmqctl(stack: Stack, *args: str) -> str:
    return stack.exec("rabbitmq", "rabbitmqctl", "-q", *args).stdout


def wait_all_healthy(stack: Stack) -> None:
    stack.wait_healthy("rabbitmq", "redis", "postgres", "web", "worker", "beat", "flower", timeout=240)


# --- the broker in the job flow -----------------------------------------------------------------


def test_rabbitmq_denies_transient_nonexclusive_queues(rabbit):
    """The overlay runs RabbitMQ with the deprecated feature `transient_nonexcl_queues` denied, as
    RabbitMQ will by default: a queue neither durable nor exclusive is refused. Celery's own
    control and event queues would be (the worker crash-loops); the stack declares them durable
    and exclusive (config/settings/celery_jobs.py), so none is in use."""
    wait_all_healthy(rabbit)
    version = rabbitmqctl(rabbit, "version").strip()
    versions.record("rabbitmq:4-management-alpine", version, ENV_IMAGE)
    assert version.startswith("4."), version
    features = json.loads(rabbitmqctl(rabbit, "list_deprecated_features", "--formatter", "json"))
    [feature] = [f for f in features if f["name"] == "transient_nonexcl_queues"]
    assert feature["state"] == "denied", feature
    in_use = json.loads(rabbitmqctl(rabbit, "list_deprecated_features", "--used", "--formatter", "json"))
    assert in_use == [], in_use
    worker = f"celery@{hostnames(rabbit, 'worker')[1]}"

    def queues() -> list[dict]:
        found = json.loads(
            rabbitmqctl(
                rabbit, "list_queues", "-p", VHOST, "name", "durable", "exclusive", "--formatter", "json"
            )
        )
        names = {q["name"] for q in found}
        # The worker's control queue, and Flower's event queue once its event capture runs.
        return (
            found
            if f"{worker}.celery.pidbox" in names and any(n.startswith("celeryev.") for n in names)
            else []
        )

    found = wait_until(queues, timeout=60, interval=1, what="the worker's control queue and an event queue")
    transient = [q["name"] for q in found if not q["durable"] and not q["exclusive"]]
    assert not transient, transient
    assert_no_transient_queue_refused(rabbit)


def assert_no_transient_queue_refused(stack: Stack) -> None:
    """RabbitMQ logs each refused declaration of a transient non-exclusive queue."""
    refused = [
        line
        for line in stack.logs("rabbitmq").splitlines()
        if "Deprecated features: `transient_nonexcl_queues`" in line
    ]
    assert not refused, refused[:5]


def test_job_goes_through_rabbitmq_and_is_read_by_id_from_any_container(rabbit, api):
    wait_all_healthy(rabbit)
    health = requests.get(rabbit.url("/healthz"), timeout=10).json()
    assert health == {"status": "ok", "database": "ok", "redis": "ok", "rabbitmq": "ok"}, health

    queue = jobs_queue()
    assert queue["type"] == "quorum" and queue["durable"], queue
    before = published(queue)
    name = "rabbit-sum"
    submitted = api.submit("sum_number", {"x": 1, "y": 1000}, name=name)
    assert submitted.status_code == 202, submitted.text
    body = api.wait_for_state(submitted.json()["id"], "SUCCESS", "FAILURE")
    assert body["state"] == "SUCCESS" and body["result"] == {"sum": 500500, "count": 1000}, body
    # The management API counts the message that carried it (its statistics lag a few seconds).
    wait_until(
        lambda: published(jobs_queue()) >= before + 1,
        timeout=60,
        interval=1,
        what="the jobs queue's publish count to move",
    )

    # The id is derived from the token and the name: the worker container computes the same
    # one and reads the same state (results live in Redis whatever the broker).
    token = api.session.headers["Authorization"].split()[1]
    out = rabbit.exec(
        "worker", "python", "manage.py", "job", "status", "--name", name, "--token-stdin", input=token + "\n"
    ).stdout
    read = json.loads(out)
    assert read["id"] == body["id"] and read["state"] == "SUCCESS" and read["result"] == body["result"], read


def test_flower_sees_the_worker_and_its_jobs(rabbit, api):
    """Flower gets the workers' events (through its exclusive event queue) and answers its
    inspect calls (replies through the durable control queues)."""
    wait_all_healthy(rabbit)
    worker = f"celery@{hostnames(rabbit, 'worker')[1]}"
    submitted = api.submit("sum_number", {"x": 1, "y": 10}, name=f"flower-{time.monotonic_ns()}")
    assert submitted.status_code == 202, submitted.text
    job_id = submitted.json()["id"]
    assert api.wait_for_state(job_id, "SUCCESS", "FAILURE")["state"] == "SUCCESS"
    wait_until(
        lambda: flower_workers_online(rabbit).get(worker) is True,
        timeout=90,
        interval=1,
        what=f"Flower showing {worker} online",
    )
    task = wait_until(
        lambda: flower(rabbit, f"/api/task/info/{job_id}").json(),
        timeout=60,
        interval=1,
        what=f"Flower knowing job {job_id}",
    )
    assert task["state"] == "SUCCESS" and task["worker"] == worker, task
    # An inspect call through Flower: the worker answers on its control queue.
    stats = wait_until(
        lambda: flower(rabbit, "/api/workers?refresh=1").json().get(worker),
        timeout=60,
        interval=2,
        what=f"Flower's inspect of {worker}",
    )
    assert stats.get("stats", {}).get("broker", {}).get("transport") == "amqp", stats


# Holds a worker's control queue as that worker's connection did: declared as the stack's settings
# declare it and consumed, on a connection kept alive (heartbeats) until its stdin closes (an
# exec'd process outlives its `docker compose exec` client).
STALE_CONNECTION = """
import os, sys, threading
from kombu import Consumer
from config.celery import app
threading.Thread(target=lambda: (sys.stdin.read(), os._exit(0)), daemon=True).start()
conn = app.connection_for_write()
channel = conn.channel()
queue = app.control.mailbox.get_queue(sys.argv[1])(channel)
queue.declare()
Consumer(channel, queues=[queue], no_ack=True, callbacks=[lambda body, message: None]).consume()
print("holding", queue.name, flush=True)
while True:
    conn.heartbeat_check()
    try:
        conn.drain_events(timeout=1)
    except TimeoutError:
        pass
"""


def control_queue_consumers(stack: Stack, worker: str) -> int:
    queues = json.loads(
        rabbitmqctl(stack, "list_queues", "-p", VHOST, "name", "consumers", "--formatter", "json")
    )
    return next((q["consumers"] for q in queues if q["name"] == f"{worker}.celery.pidbox"), 0)


def test_worker_restarted_under_its_name_while_rabbitmq_holds_its_old_connection(rabbit, tmp_path):
    """A SIGKILLed worker whose connection RabbitMQ has not seen close yet (its host vanished:
    RabbitMQ notices when heartbeats stop, a minute later) is started again under the same name.
    With exclusive control queues its start fails with RESOURCE_LOCKED until then and it restarts
    in a loop (seen with Celery's control_queue_exclusive); with the stack's durable one it is
    healthy at once, beside the old connection, and runs jobs."""
    wait_all_healthy(rabbit)
    container = rabbit.container_ids("worker")[0]
    name = f"celery@{hostnames(rabbit, 'worker')[1]}"
    restarts = rabbit.inspect("worker")["RestartCount"]
    docker("kill", "-s", "KILL", container)
    command = [
        "docker",
        "compose",
        "-p",
        rabbit.project,
        *(a for f in FILES for a in ("-f", str(ROOT / f))),
        "exec",
        "-T",
        "web",
        "python",
        "-c",
        STALE_CONNECTION,
        name,
    ]
    output = tmp_path / "stale-connection.log"
    with output.open("w") as out:
        holder = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, **rabbit.env, "COMPOSE_DISABLE_ENV_FILE": "1"},
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: "holding" in output.read_text() or holder.poll() is not None,
            timeout=60,
            what="a connection holding the worker's control queue",
        )
        assert holder.poll() is None, output.read_text()
        began = time.monotonic()
        rabbit.up("worker", timeout=180)
        took = time.monotonic() - began
        assert rabbit.container_ids("worker") == [container]
        assert f"celery@{hostnames(rabbit, 'worker')[1]}" == name
        # The old connection is still there: the queue has its consumer and the new worker's.
        assert holder.poll() is None, output.read_text()
        assert control_queue_consumers(rabbit, name) == 2
        assert rabbit.inspect("worker")["RestartCount"] == restarts, "the worker restarted in a loop"
        logs = rabbit.compose("logs", "--no-color", "--since", "3m", "worker").stdout
        assert "RESOURCE_LOCKED" not in logs, logs[-3000:]
        wait_until(
            lambda: flower_workers_online(rabbit).get(name) is True,
            timeout=90,
            interval=1,
            what=f"Flower showing {name} online again",
        )
        api = Api(rabbit.url(""), rabbit.create_token("rabbit-restart"))
        job = api.submit("noop", name=f"after-restart-{time.monotonic_ns()}")
        assert job.status_code == 202, job.text
        assert api.wait_for_state(job.json()["id"], "SUCCESS", "FAILURE")["state"] == "SUCCESS"
        print(f"\n[rabbitmq] {name} healthy {took:.0f} s after its start, its old connection still open")
    finally:
        holder.stdin.close()
        try:
            holder.wait(30)
        except subprocess.TimeoutExpired:
            holder.kill()
    # Once the old connection is gone, the worker is its queue's only consumer.
    wait_until(
        lambda: control_queue_consumers(rabbit, name) == 1,
        timeout=90,
        interval=1,
        what="the old connection's consumer gone",
    )


def user_tags(stack: Stack) -> dict[str, str]:
    rows = rabbitmqctl(stack, "list_users", "--no-table-headers").splitlines()
    return {name: tags.strip() for name, _, tags in (row.partition("\t") for row in rows if row.strip())}


def test_own_vhost_and_user_no_guest_and_management_behind_auth_on_localhost(rabbit):
    # The app's user: no tag (no management UI, no administration); the UI's login is another one.
    assert user_tags(rabbit) == {USER: "[]", ADMIN[0]: "[administrator]"}, user_tags(rabbit)
    assert VHOST in rabbitmqctl(rabbit, "list_vhosts").split()
    permissions = rabbitmqctl(rabbit, "list_user_permissions", USER)
    assert re.search(rf"^{VHOST}\s+\.\*\s+\.\*\s+\.\*$", permissions, re.M), permissions

    assert management("overview", auth=None).status_code == 401
    assert management("overview", auth=("guest", "guest")).status_code == 401
    assert management("overview", auth=(USER, PASSWORD)).status_code == 401, "the app's login opens the UI"
    assert management("overview").status_code == 200
    bindings = rabbit.inspect("rabbitmq")["NetworkSettings"]["Ports"]["15672/tcp"]
    assert {binding["HostIp"] for binding in bindings} == {"127.0.0.1"}, bindings
    assert "5672/tcp" not in rabbit.inspect("rabbitmq")["HostConfig"]["PortBindings"]


def test_an_app_user_left_administrator_by_the_older_overlay_is_demoted_at_the_next_start(rabbit, api):
    """Before the split the app's user was RabbitMQ's first user, an administrator; a volume from
    then keeps it so until rabbitmq starts again with the accounts imported."""
    rabbitmqctl(rabbit, "set_user_tags", USER, "administrator")
    assert user_tags(rabbit)[USER] == "[administrator]"
    rabbit.compose("restart", "rabbitmq", timeout=300)
    wait_all_healthy(rabbit)
    assert user_tags(rabbit) == {USER: "[]", ADMIN[0]: "[administrator]"}, user_tags(rabbit)
    assert management("overview", auth=(USER, PASSWORD)).status_code == 401
    answer = api.submit("sum_number", {"x": 2, "y": 3}, name=f"after-demotion-{int(time.time())}")
    assert answer.status_code == 202, answer.text
    assert api.wait_for_state(answer.json()["id"], "SUCCESS", "FAILURE", timeout=180)["state"] == "SUCCESS"


def test_consumer_timeout_outlasts_the_longest_job(rabbit):
    """RabbitMQ closes a consumer that holds a message unacknowledged past consumer_timeout
    (30 minutes by default) and delivers the message again: a job allowed to run an hour
    (CELERY_TASK_TIME_LIMIT) would be cut off and run twice. The running broker's value must
    exceed the time limit; without compose/rabbitmq/20-jobs.conf it is the default and fails."""
    out = rabbit.exec(
        "rabbitmq", "rabbitmqctl", "eval", "application:get_env(rabbit, consumer_timeout)."
    ).stdout
    match = re.search(r"\{ok,(\d+)\}", out)
    assert match, f"consumer_timeout not set: {out!r}"
    assert int(match.group(1)) > TASK_TIME_LIMIT * 1000, out


SHORT_TIMEOUT_POLICY = "e2e-short-consumer-timeout"
SHORT_CONSUMER_TIMEOUT = 10  # seconds, on the jobs queue only, for the first half of the test below
CUT_JOB_STEPS = 20  # a 20 s job (model_inference, 20 steps of 1 s): twice the short timeout
# How a consumer past its timeout is cut off: up to RabbitMQ 4.2 the broker closes its channel
# and logs this; from 4.3 on the quorum queue cancels the consumer (basic.cancel), which the worker
# logs as ConsumerCancelled and takes for a lost connection. Either way the message goes back.
CUT_OFF = ("has timed out waiting for a consumer acknowledgement", "ConsumerCancelled")


def since(moment: datetime) -> str:
    """A `docker compose logs --since` value a second before this moment (UTC)."""
    return (moment - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ")


def queue_counts(stack: Stack) -> tuple[int, int]:
    """(ready, unacknowledged) messages of the jobs queue, from the broker itself (no lag)."""
    out = rabbitmqctl(stack, "list_queues", "-p", VHOST, "name", "messages_ready", "messages_unacknowledged")
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == "jobs":
            return int(fields[1]), int(fields[2])
    raise AssertionError(f"no jobs queue in: {out}")


def starts(stack: Stack, job_id: str) -> int:
    return executions(worker_logs(stack))[job_id]


def timed_lines(stack: Stack, began: datetime) -> list[tuple[float, str]]:
    """(Unix time, text) of the worker's and RabbitMQ's log lines since `began`."""
    out = stack.compose(
        "logs", "--no-color", "--timestamps", "--since", since(began), "worker", "rabbitmq"
    ).stdout
    found = (re.search(r"\| (\d{4}-\d\d-\d\dT\S+Z) (.*)$", line) for line in out.splitlines())
    return sorted((parse_time(m.group(1)), m.group(2)) for m in found if m)


def cut_offs(lines: list[tuple[float, str]]) -> list[float]:
    return [at for at, text in lines if any(sign in text for sign in CUT_OFF)]


def test_a_job_longer_than_the_consumer_timeout_is_cut_off_and_within_it_runs_once(rabbit, api):
    """The 30-minute scenario at a shortened scale. With a consumer timeout of 10 s on the jobs
    queue (a policy on that queue only), a 20 s acks_late job is cut off 10 s in (RabbitMQ 4.3
    cancels the worker's consumer, earlier releases closed its channel: CUT_OFF), the message goes
    back, and the job starts again, and again. With the policy gone the stack's own
    consumer_timeout (2 h, compose/rabbitmq/20-jobs.conf) applies: the same job runs once and
    ends SUCCESS.

    RabbitMQ before 4.3 checked consumer timeouts on each channel's tick, once a minute by default
    (channel_tick_interval), which would let a 20 s job slip between two checks: the test sets
    the tick to 1 s for channels opened meanwhile (a check of the mechanism, not of a promise;
    restored at the end; 4.3's quorum queues check on their own). A policy's timeout applies to
    consumers opened after it was set, so the worker is restarted after each change."""
    wait_all_healthy(rabbit)
    tick = re.search(
        r"\{ok,(\d+)\}",
        rabbit.exec(
            "rabbitmq", "rabbitmqctl", "eval", "application:get_env(rabbit, channel_tick_interval)."
        ).stdout,
    )
    assert tick, "channel_tick_interval not readable"
    job = ("model_inference", {"text": "consumer timeout", "steps": CUT_JOB_STEPS, "step_seconds": 1.0})
    try:
        rabbit.exec(
            "rabbitmq", "rabbitmqctl", "eval", "application:set_env(rabbit, channel_tick_interval, 1000)."
        )
        rabbitmqctl(
            rabbit,
            "set_policy",
            "-p",
            VHOST,
            "--apply-to",
            "queues",
            "--priority",
            "100",
            SHORT_TIMEOUT_POLICY,
            "^jobs$",
            json.dumps({"consumer-timeout": SHORT_CONSUMER_TIMEOUT * 1000}),
        )
        rabbit.compose("restart", "worker", timeout=300)
        wait_all_healthy(rabbit)

        # 1. Timeout 10 s, job 20 s: cut off and started again.
        began = datetime.now(UTC)
        cut = api.submit(*job)
        assert cut.status_code == 202, cut.text
        cut_id = cut.json()["id"]
        wait_until(
            lambda: starts(rabbit, cut_id) >= 2,
            timeout=120,
            interval=1,
            what=f"the {CUT_JOB_STEPS} s job started a second time",
        )
        lines = timed_lines(rabbit, began)
        first_start = min(at for at, text in lines if f"Job {cut_id} started" in text)
        cut_at = [at - first_start for at in cut_offs(lines) if at > first_start]
        # Cut off by the 10 s timeout, not at the job's end (20 s).
        assert cut_at and SHORT_CONSUMER_TIMEOUT - 1 <= cut_at[0] < CUT_JOB_STEPS, (cut_at, lines[-40:])
        cut_runs = starts(rabbit, cut_id)

        # Back to the stack's own setting; the cut job's last delivery ends (it runs to the end,
        # or JOB_MAX_DELIVERIES ends it) and nothing is left in the queue.
        rabbitmqctl(rabbit, "clear_policy", "-p", VHOST, SHORT_TIMEOUT_POLICY)
        rabbit.compose("restart", "worker", timeout=300)
        wait_all_healthy(rabbit)
        wait_until(
            lambda: queue_counts(rabbit) == (0, 0),
            timeout=180,
            interval=1,
            what="the jobs queue empty and nothing unacknowledged",
        )

        # 2. No policy: the compose setting (2 h) holds; the same job runs once, SUCCESS.
        began = datetime.now(UTC)
        whole = api.submit(*job)
        assert whole.status_code == 202, whole.text
        whole_id = whole.json()["id"]
        body = api.wait_for_state(whole_id, "SUCCESS", "FAILURE", timeout=180)
        assert body["state"] == "SUCCESS" and body["result"]["steps"] == CUT_JOB_STEPS, body
        wait_until(
            lambda: queue_counts(rabbit) == (0, 0), timeout=60, interval=1, what="the job acknowledged"
        )
        assert starts(rabbit, whole_id) == 1, f"the {CUT_JOB_STEPS} s job started {starts(rabbit, whole_id)}x"
        lines = timed_lines(rabbit, began)
        assert not cut_offs(lines), lines[-40:]
        assert not [text for _, text in lines if "Couldn't ack" in text], lines[-40:]
        print(
            f"\n[consumer timeout] {SHORT_CONSUMER_TIMEOUT} s timeout: the {CUT_JOB_STEPS} s job cut off "
            f"{cut_at[0]:.1f} s in, started {cut_runs}x; without the policy (2 h): started once, SUCCESS"
        )
    finally:
        if SHORT_TIMEOUT_POLICY in rabbitmqctl(rabbit, "list_policies", "-p", VHOST):
            rabbitmqctl(rabbit, "clear_policy", "-p", VHOST, SHORT_TIMEOUT_POLICY)
        rabbit.exec(
            "rabbitmq",
            "rabbitmqctl",
            "eval",
            f"application:set_env(rabbit, channel_tick_interval, {tick.group(1)}).",
        )


def test_outage_answers_503_json_and_publisher_confirms_are_on(rabbit, api):
    """While RabbitMQ is stopped a submission is refused with 503 JSON naming the broker, within
    seconds (never a 500 or a hang), /healthz says so, and a read of a finished job still works
    (results are in Redis). Then it comes back by itself."""
    wait_all_healthy(rabbit)
    done = api.submit("noop").json()["id"]
    api.wait_for_state(done, "SUCCESS")
    rabbit.compose("stop", "rabbitmq")
    try:
        refused = api.submit("noop")
        assert refused.status_code == 503, refused.text
        assert refused.json()["service"] == "rabbitmq", refused.text
        health = requests.get(rabbit.url("/healthz"), timeout=15)
        assert health.status_code == 503 and health.json()["rabbitmq"] == "down", health.text
        assert api.job(done).json()["state"] == "SUCCESS"
    finally:
        rabbit.compose("start", "rabbitmq")
    wait_until(
        lambda: requests.get(rabbit.url("/healthz"), timeout=10).status_code == 200,
        timeout=180,
        interval=1,
        what="/healthz 200 after RabbitMQ came back",
    )
    accepted = api.submit("noop")
    assert accepted.status_code == 202, accepted.text
    assert api.wait_for_state(accepted.json()["id"], "SUCCESS", "FAILURE")["state"] == "SUCCESS"


# --- chaos on RabbitMQ ---------------------------------------------------------------------------


def test_chaos_worker_sigkilled_mid_run(rabbit):
    """The worker container SIGKILLed while long jobs run: RabbitMQ puts its unacknowledged
    messages back as soon as the connection is gone; after `up` every job ends SUCCESS."""
    wait_all_healthy(rabbit)
    started = time.monotonic()
    ledger = new_ledger(rabbit, "rabbit-kill")
    ledger.retry_statuses = (503,)
    rest = ledger.submit_in_background(job_mix(JOBS, long=8, steps=6))
    running_jobs = wait_until(
        lambda: ledger.running("model_inference"), timeout=180, interval=0.3, what="long jobs running"
    )
    container = rabbit.container_ids("worker")[0]
    docker("kill", "-s", "KILL", container)
    killed = time.monotonic()
    rabbit.up("worker")
    rest.join()
    _, counts = finish(
        rabbit,
        ledger,
        "rabbitmq 1 worker SIGKILL mid-run, started again",
        started,
        note=f"{len(running_jobs)} jobs were running at the kill",
        fault=killed,
    )
    for job in running_jobs:
        assert counts[job["id"]] >= 2, f"{job['id']} was running at the kill but started {counts[job['id']]}x"


def test_chaos_broker_restarted_mid_run(rabbit):
    """RabbitMQ stopped and started while jobs run and others wait: queued messages survive in
    the quorum queue, submissions meanwhile get 503 and are sent again, nothing is lost."""
    wait_all_healthy(rabbit)
    started = time.monotonic()
    ledger = new_ledger(rabbit, "rabbit-restart")
    batch = ledger.submit_in_background(job_mix(100, long=4, steps=12))

    def mid_run():
        states = ledger.states()
        busy = [j for j in states.values() if j["state"] in RUNNING]
        queued = [j for j in states.values() if j["state"] == "PENDING"]
        return (busy, queued) if busy and queued else None

    busy, queued = wait_until(mid_run, timeout=180, interval=0.5, what="jobs running with others queued")
    with OutageWatch(rabbit, ledger.token, "/healthz", prompt=10) as watch:
        rabbit.compose("stop", "rabbitmq")
        down = time.monotonic()
        during = ledger.submit_in_background([short_job(n) for n in range(100, 200)])
        wait_until(
            lambda: ledger.refusals and time.monotonic() - down >= 10,
            timeout=90,
            interval=0.5,
            what="submissions refused while RabbitMQ is down",
        )
        rabbit.compose("start", "rabbitmq")
        wait_until(
            lambda: requests.get(rabbit.url("/healthz"), timeout=10).status_code == 200,
            timeout=180,
            interval=1,
            what="/healthz 200 after RabbitMQ came back",
        )
        back = time.monotonic()
        during.join()
        batch.join()
    bad = [r for r in ledger.refusals if r[0] != 503]
    assert not bad, f"submissions failed otherwise than 503: {bad[:5]}"
    assert watch.saw_503("healthz")
    finish(
        rabbit,
        ledger,
        "rabbitmq 2 broker restart mid-run",
        started,
        note=f"down {back - down:.0f} s; {len(busy)} running and {len(queued)} queued at the stop; "
        f"{len(ledger.refusals)} submissions refused 503 then sent again",
        fault=back,
    )
    wait_all_healthy(rabbit)


def test_chaos_warm_stop_during_a_20_second_job(rabbit):
    """`docker compose stop worker` while a 20 s job runs: it finishes before the worker exits,
    runs once, and the 199 others wait in the queue for the worker's return."""
    wait_all_healthy(rabbit)
    started = time.monotonic()
    ledger = new_ledger(rabbit, "rabbit-stop")
    slow = ledger.submit(*long_job(0, steps=20))
    rest = ledger.submit_in_background([short_job(n) for n in range(1, JOBS)])
    wait_until(
        lambda: ledger.api.job(slow).json()["state"] == "PROGRESS",
        timeout=180,
        interval=0.3,
        what="the 20 s job running",
    )
    rabbit.compose("stop", "worker", timeout=300)
    assert ledger.api.job(slow).json()["state"] == "SUCCESS", "the worker exited before the 20 s job ended"
    rabbit.compose("start", "worker")
    rest.join()
    _, counts = finish(
        rabbit,
        ledger,
        "rabbitmq 4 worker stop during a 20 s job",
        started,
        note=f"the 20 s job ran {executions(worker_logs(rabbit))[slow]}x",
    )
    assert counts[slow] == 1


VICTIM_STEPS = 20  # long enough that the survivor is still busy when the victim's jobs come back


def test_chaos_two_workers_one_sigkilled(rabbit):
    """--scale worker=2, the second one SIGKILLed while both run long jobs: RabbitMQ hands the
    killed worker's unacknowledged jobs to the survivor as soon as the connection is gone; they
    finish there, and no job of the live worker runs twice (only the dead worker's jobs are in
    the "run twice" column)."""
    wait_all_healthy(rabbit)
    two_workers_one_killed(
        rabbit,
        scenario="rabbit-scale",
        label="rabbitmq 5 two workers, one SIGKILLed",
        jobs=JOBS,
        long=8,
        steps=VICTIM_STEPS,
    )
    wait_all_healthy(rabbit)


def test_no_queue_of_the_stack_was_refused_as_transient_nonexclusive(rabbit):
    """After every scenario above (restarts, kills, Flower's inspect calls), RabbitMQ never had to
    refuse a transient non-exclusive queue."""
    assert_no_transient_queue_refused(rabbit)
