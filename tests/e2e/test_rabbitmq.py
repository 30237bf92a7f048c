"""The stack on RabbitMQ (docker-compose.yml + docker-compose.rabbitmq.yml), end to end.

A compose project of its own ("djcs-rabbit", own ports and image tag) on the overlay's
defaults: jobs go through a quorum queue with publisher confirms, results stay in Redis. Then
the chaos scenarios that apply to a broker, each with 200 jobs and lost = 0 asserted: a worker
SIGKILLed mid-run, RabbitMQ restarted mid-run, a warm stop during a 20 s job. Their report
lines join the chaos report ("rabbitmq ...").
"""

import json
import os
import re
import time

import pytest
import requests

from tests.support.chaos import (
    RUNNING,
    OutageWatch,
    docker,
    executions,
    finish,
    job_mix,
    long_job,
    new_ledger,
    short_job,
    worker_logs,
)
from tests.support.stack import Api, Stack, running
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
# The overlay's development defaults (docker-compose.rabbitmq.yml).
USER, VHOST, PASSWORD = "app", "jobs", "insecure-dev-rabbitmq-password"
JOBS = 200
TASK_TIME_LIMIT = 3600  # CELERY_TASK_TIME_LIMIT's default, seconds


@pytest.fixture(scope="module")
def rabbit():
    with running(Stack(project=PROJECT, files=FILES, env=ENV)) as stack:
        yield stack


@pytest.fixture(scope="module")
def api(rabbit) -> Api:
    return Api(rabbit.url(""), rabbit.create_token("rabbit-alice"))


def management(path: str, auth: tuple[str, str] | None = (USER, PASSWORD)) -> requests.Response:
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
    wait_until(lambda: published(jobs_queue()) >= before + 1, timeout=60, interval=1,
               what="the jobs queue's publish count to move")

    # The id is derived from the token and the name: the worker container computes the same
    # one and reads the same state (results live in Redis whatever the broker).
    token = api.session.headers["Authorization"].split()[1]
    out = rabbit.exec("worker", "python", "manage.py", "job", "status", "--name", name,
                      "--token-stdin", input=token + "\n").stdout
    read = json.loads(out)
    assert read["id"] == body["id"] and read["state"] == "SUCCESS" and read["result"] == body["result"], read


def test_own_vhost_and_user_no_guest_and_management_behind_auth_on_localhost(rabbit):
    users = rabbitmqctl(rabbit, "list_users").split()
    assert USER in users and "guest" not in users, users
    assert VHOST in rabbitmqctl(rabbit, "list_vhosts").split()
    permissions = rabbitmqctl(rabbit, "list_user_permissions", USER)
    assert re.search(rf"^{VHOST}\s+\.\*\s+\.\*\s+\.\*$", permissions, re.M), permissions

    assert management("overview", auth=None).status_code == 401
    assert management("overview", auth=("guest", "guest")).status_code == 401
    assert management("overview").status_code == 200
    bindings = rabbit.inspect("rabbitmq")["NetworkSettings"]["Ports"]["15672/tcp"]
    assert {binding["HostIp"] for binding in bindings} == {"127.0.0.1"}, bindings
    assert "5672/tcp" not in rabbit.inspect("rabbitmq")["HostConfig"]["PortBindings"]


def test_consumer_timeout_outlasts_the_longest_job(rabbit):
    """RabbitMQ closes a consumer that holds a message unacknowledged past consumer_timeout
    (30 minutes by default) and delivers the message again: a job allowed to run an hour
    (CELERY_TASK_TIME_LIMIT) would be cut off and run twice. The running broker's value must
    exceed the time limit; without compose/rabbitmq/20-jobs.conf it is the default and fails."""
    out = rabbit.exec("rabbitmq", "rabbitmqctl", "eval", "application:get_env(rabbit, consumer_timeout).").stdout
    match = re.search(r"\{ok,(\d+)\}", out)
    assert match, f"consumer_timeout not set: {out!r}"
    assert int(match.group(1)) > TASK_TIME_LIMIT * 1000, out


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
    wait_until(lambda: requests.get(rabbit.url("/healthz"), timeout=10).status_code == 200,
               timeout=180, interval=1, what="/healthz 200 after RabbitMQ came back")
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
    running_jobs = wait_until(lambda: ledger.running("model_inference"), timeout=180, interval=0.3,
                              what="long jobs running")
    container = rabbit.container_ids("worker")[0]
    docker("kill", "-s", "KILL", container)
    killed = time.monotonic()
    rabbit.up("worker")
    rest.join()
    _, counts = finish(rabbit, ledger, "rabbitmq 1 worker SIGKILL mid-run, started again", started,
                       note=f"{len(running_jobs)} jobs were running at the kill", fault=killed)
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
        wait_until(lambda: ledger.refusals and time.monotonic() - down >= 10, timeout=90, interval=0.5,
                   what="submissions refused while RabbitMQ is down")
        rabbit.compose("start", "rabbitmq")
        wait_until(lambda: requests.get(rabbit.url("/healthz"), timeout=10).status_code == 200,
                   timeout=180, interval=1, what="/healthz 200 after RabbitMQ came back")
        back = time.monotonic()
        during.join()
        batch.join()
    bad = [r for r in ledger.refusals if r[0] != 503]
    assert not bad, f"submissions failed otherwise than 503: {bad[:5]}"
    assert watch.saw_503("healthz")
    finish(rabbit, ledger, "rabbitmq 2 broker restart mid-run", started,
           note=f"down {back - down:.0f} s; {len(busy)} running and {len(queued)} queued at the stop; "
                f"{len(ledger.refusals)} submissions refused 503 then sent again", fault=back)
    wait_all_healthy(rabbit)


def test_chaos_warm_stop_during_a_20_second_job(rabbit):
    """`docker compose stop worker` while a 20 s job runs: it finishes before the worker exits,
    runs once, and the 199 others wait in the queue for the worker's return."""
    wait_all_healthy(rabbit)
    started = time.monotonic()
    ledger = new_ledger(rabbit, "rabbit-stop")
    slow = ledger.submit(*long_job(0, steps=20))
    rest = ledger.submit_in_background([short_job(n) for n in range(1, JOBS)])
    wait_until(lambda: ledger.api.job(slow).json()["state"] == "PROGRESS", timeout=180, interval=0.3,
               what="the 20 s job running")
    rabbit.compose("stop", "worker", timeout=300)
    assert ledger.api.job(slow).json()["state"] == "SUCCESS", "the worker exited before the 20 s job ended"
    rabbit.compose("start", "worker")
    rest.join()
    _, counts = finish(rabbit, ledger, "rabbitmq 4 worker stop during a 20 s job", started,
                       note=f"the 20 s job ran {executions(worker_logs(rabbit))[slow]}x")
    assert counts[slow] == 1
