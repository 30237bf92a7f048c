"""The stack on RabbitMQ (docker-compose.yml + docker-compose.rabbitmq.yml), end to end.

A compose project of its own ("djcs-rabbit", own ports and image tag) on the overlay's
defaults: jobs go through a quorum queue with publisher confirms, results stay in Redis. The
consumer timeout, at a shortened scale: a 20 s job cut off by a 10 s timeout on the jobs queue,
then run once under the stack's own setting. Then the chaos scenarios that apply to a broker,
each with 200 jobs and lost = 0 asserted: a worker SIGKILLed mid-run, RabbitMQ restarted
mid-run, a warm stop during a 20 s job, two workers with one SIGKILLed. Their report lines
join the chaos report ("rabbitmq ...").
"""

import json
import os
import re
import time
from datetime import datetime, timedelta, timezone

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
    two_workers_one_killed,
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


SHORT_TIMEOUT_POLICY = "e2e-short-consumer-timeout"
SHORT_CONSUMER_TIMEOUT = 10  # seconds, on the jobs queue only, for the first half of the test below
CUT_JOB_STEPS = 20           # a 20 s job (model_inference, 20 steps of 1 s): twice the short timeout
TIMED_OUT = "has timed out waiting for a consumer acknowledgement"


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


def test_a_job_longer_than_the_consumer_timeout_is_cut_off_and_within_it_runs_once(rabbit, api):
    """The 30-minute scenario at a shortened scale. With a consumer timeout of 10 s on the jobs
    queue (a policy on that queue only), a 20 s acks_late job is cut off: RabbitMQ closes the
    worker's channel 10 s in ("timed out waiting for a consumer acknowledgement"), puts the
    message back, and the job starts again, and again. With the policy gone the stack's own
    consumer_timeout (2 h, compose/rabbitmq/20-jobs.conf) applies: the same job runs once and
    ends SUCCESS.

    RabbitMQ 4.0 checks consumer timeouts on each channel's tick, once a minute by default
    (channel_tick_interval), which would let a 20 s job slip between two checks: the test sets
    the tick to 1 s for channels opened meanwhile (a check of the mechanism, not of a promise;
    restored at the end). A policy's timeout applies to consumers opened after it was set, so
    the worker is restarted after each change."""
    wait_all_healthy(rabbit)
    tick = re.search(r"\{ok,(\d+)\}", rabbit.exec(
        "rabbitmq", "rabbitmqctl", "eval", "application:get_env(rabbit, channel_tick_interval).").stdout)
    assert tick, "channel_tick_interval not readable"
    job = ("model_inference", {"text": "consumer timeout", "steps": CUT_JOB_STEPS, "step_seconds": 1.0})
    try:
        rabbit.exec("rabbitmq", "rabbitmqctl", "eval",
                    "application:set_env(rabbit, channel_tick_interval, 1000).")
        rabbitmqctl(rabbit, "set_policy", "-p", VHOST, "--apply-to", "queues", "--priority", "100",
                    SHORT_TIMEOUT_POLICY, "^jobs$",
                    json.dumps({"consumer-timeout": SHORT_CONSUMER_TIMEOUT * 1000}))
        rabbit.compose("restart", "worker", timeout=300)
        wait_all_healthy(rabbit)

        # 1. Timeout 10 s, job 20 s: cut off and started again.
        began = datetime.now(timezone.utc)
        cut = api.submit(*job)
        assert cut.status_code == 202, cut.text
        cut_id = cut.json()["id"]
        wait_until(lambda: starts(rabbit, cut_id) >= 2, timeout=120, interval=1,
                   what=f"the {CUT_JOB_STEPS} s job started a second time")
        broker_log = rabbit.compose("logs", "--no-color", "--since", since(began), "rabbitmq").stdout
        assert TIMED_OUT in broker_log, broker_log[-3000:]
        assert f"Timeout used: {SHORT_CONSUMER_TIMEOUT * 1000} ms" in broker_log, broker_log[-3000:]
        cut_runs = starts(rabbit, cut_id)

        # Back to the stack's own setting; the cut job's last delivery ends (it runs to the end,
        # or JOB_MAX_DELIVERIES ends it) and nothing is left in the queue.
        rabbitmqctl(rabbit, "clear_policy", "-p", VHOST, SHORT_TIMEOUT_POLICY)
        rabbit.compose("restart", "worker", timeout=300)
        wait_all_healthy(rabbit)
        wait_until(lambda: queue_counts(rabbit) == (0, 0), timeout=180, interval=1,
                   what="the jobs queue empty and nothing unacknowledged")

        # 2. No policy: the compose setting (2 h) holds; the same job runs once, SUCCESS.
        began = datetime.now(timezone.utc)
        whole = api.submit(*job)
        assert whole.status_code == 202, whole.text
        whole_id = whole.json()["id"]
        body = api.wait_for_state(whole_id, "SUCCESS", "FAILURE", timeout=180)
        assert body["state"] == "SUCCESS" and body["result"]["steps"] == CUT_JOB_STEPS, body
        wait_until(lambda: queue_counts(rabbit) == (0, 0), timeout=60, interval=1,
                   what="the job acknowledged")
        assert starts(rabbit, whole_id) == 1, f"the {CUT_JOB_STEPS} s job started {starts(rabbit, whole_id)}x"
        broker_log = rabbit.compose("logs", "--no-color", "--since", since(began), "rabbitmq").stdout
        assert TIMED_OUT not in broker_log, broker_log[-3000:]
        worker_log = rabbit.compose("logs", "--no-color", "--since", since(began), "worker").stdout
        assert "Couldn't ack" not in worker_log, worker_log[-3000:]
        print(f"\n[consumer timeout] {SHORT_CONSUMER_TIMEOUT} s timeout: the {CUT_JOB_STEPS} s job started "
              f"{cut_runs}x; without the policy (2 h): started once, SUCCESS")
    finally:
        if SHORT_TIMEOUT_POLICY in rabbitmqctl(rabbit, "list_policies", "-p", VHOST):
            rabbitmqctl(rabbit, "clear_policy", "-p", VHOST, SHORT_TIMEOUT_POLICY)
        rabbit.exec("rabbitmq", "rabbitmqctl", "eval",
                    f"application:set_env(rabbit, channel_tick_interval, {tick.group(1)}).")


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


VICTIM_STEPS = 20  # long enough that the survivor is still busy when the victim's jobs come back


def test_chaos_two_workers_one_sigkilled(rabbit):
    """--scale worker=2, the second one SIGKILLed while both run long jobs: RabbitMQ hands the
    killed worker's unacknowledged jobs to the survivor as soon as the connection is gone; they
    finish there, and no job of the live worker runs twice (only the dead worker's jobs are in
    the "run twice" column)."""
    wait_all_healthy(rabbit)
    two_workers_one_killed(rabbit, scenario="rabbit-scale", label="rabbitmq 5 two workers, one SIGKILLed",
                           jobs=JOBS, long=8, steps=VICTIM_STEPS)
    wait_all_healthy(rabbit)
