"""Chaos on the real compose stack, on its defaults: no accepted job is ever lost.

Each scenario submits at least 200 jobs under a token of its own - a few long ones
(model_inference, several steps of 1 s) first so that they are running when the fault hits,
the rest short (noop, sum_number) - breaks something mid-run, lets it come back, and then waits
until every job finished. The stack runs every timeout as docker-compose.yml sets it (the
visibility timeout stays 2 h): a dead worker's jobs come back through the live workers'
recovery of orphaned deliveries (services/jobs/dead_workers.py, JOB_WORKER_LOST_AFTER 30 s).
It records one line:

    submitted / finished (SUCCESS) / lost (accepted but not SUCCESS at the end) / run twice

"run twice" counts jobs a worker started more than once ("Job <id> started" log lines of
JobTask.before_start over every worker container). The lines are printed at the end of the
pytest run (tests/conftest.py) and written to artifacts/chaos-report.txt.

Every scenario asserts lost == 0 and leaves every service running and healthy for the next.
The fuzz run is last: the jobs it generates can be long, and it cancels them all at the end.
"""

import json
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.helpers import redis_cli
from tests.support.chaos import (
    FINISHED,
    JOBS,
    LONG,
    LONG_STEPS,
    RUNNING,
    RUNNING_AGAIN_WITHIN,
    Ledger,
    backing_service_restarted_mid_run,
    docker,
    executions,
    finish,
    job_mix,
    long_job,
    new_ledger,
    parse_time,
    record_line,
    restart_counts,
    short_job,
    two_workers_one_killed,
    worker_logs,
    worker_sigkilled_mid_run,
)
from tests.support.stack import ARTIFACTS, Stack
from tests.support.wait import wait_until

pytestmark = pytest.mark.slow

# JOBS per scenario, LONG long ones of LONG_STEPS steps, RUNNING_AGAIN_WITHIN: tests/support/chaos.py,
# where the scenarios that other stacks run too are written.

# The compose timeouts no chaos scenario may shorten.
TIMEOUT_VARIABLES = (
    "CELERY_VISIBILITY_TIMEOUT",
    "CELERY_TASK_TIME_LIMIT",
    "CELERY_TASK_SOFT_TIME_LIMIT",
    "JOB_WORKER_LOST_AFTER",
    "JOB_MAX_DELIVERIES",
    "WORKER_STOP_GRACE_PERIOD",
)


# --- 0 ---------------------------------------------------------------------------------------


def test_the_stack_runs_the_compose_timeouts(stack):
    """The promises below are made on the defaults users get: no timeout of the worker is
    overridden in this stack (an unset pass-through variable reaches Docker as a bare name,
    which sets nothing)."""
    env = dict(item.split("=", 1) for item in stack.inspect("worker")["Config"]["Env"] if "=" in item)
    assert not set(TIMEOUT_VARIABLES) & set(env), {
        name: env[name] for name in TIMEOUT_VARIABLES if name in env
    }
    grace = stack.inspect("worker")["Config"].get("StopTimeout")
    assert grace == 120, grace


# --- 1 ---------------------------------------------------------------------------------------


def test_worker_sigkilled_mid_run_its_job_runs_again_within_90_s(stack):
    """A 20-step job running, the worker container SIGKILLed and started again
    (`docker compose up -d --wait worker`): the job runs again within 90 s, under the same id,
    ends SUCCESS and says it was delivered twice; 199 other jobs meanwhile, none lost."""
    worker_sigkilled_mid_run(stack, scenario="kill", label="1 worker SIGKILL mid-run, started again")


# --- 2 and 3 ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("service", "part", "label"),
    [("redis", "redis", "2 redis restart mid-run"), ("postgres", "database", "3 postgres restart mid-run")],
    ids=["redis", "postgres"],
)
def test_backing_service_restarted_mid_run(stack, service, part, label):
    """Stop + start (a restart one can watch): queued jobs and finished results survive, web
    answers 503 JSON meanwhile and recovers by itself, workers and beat reconnect."""
    backing_service_restarted_mid_run(stack, service=service, scenario=service, label=label)


# --- 4 ---------------------------------------------------------------------------------------


def test_stop_worker_during_a_20_second_job(stack):
    """`docker compose stop worker` while a 20 s job runs: warm shutdown lets it finish before
    the container exits (within stop_grace_period), it ran once, and the queue waits."""
    stack.wait_healthy()
    started = time.monotonic()
    ledger = new_ledger(stack, "stop")
    slow = ledger.submit(*long_job(0, steps=20))
    rest = ledger.submit_in_background([short_job(n) for n in range(1, JOBS)])

    def slow_running():
        job = ledger.api.job(slow).json()
        return job["state"] == "PROGRESS" and 2 <= job["progress"]["current"] <= 10

    wait_until(slow_running, timeout=180, interval=0.3, what="the 20 s job to be running")
    container = stack.container_ids("worker")[0]
    warm_shutdowns = worker_logs(stack).lower().count("warm shutdown")
    stop_started = time.monotonic()
    stack.compose("stop", "worker", timeout=300)
    stop_took = time.monotonic() - stop_started

    job = ledger.api.job(slow).json()
    assert job["state"] == "SUCCESS", f"the worker exited before finishing the 20 s job: {job}"
    exited_at = parse_time(json.loads(docker("inspect", container).stdout)[0]["State"]["FinishedAt"])
    assert parse_time(job["finished_at"]) <= exited_at, "job finished after the worker exited?"
    assert worker_logs(stack).lower().count("warm shutdown") > warm_shutdowns

    stack.compose("start", "worker")
    rest.join()
    states, counts = finish(
        stack,
        ledger,
        "4 worker stop during a 20 s job",
        started,
        note=f"stop took {stop_took:.0f} s; the 20 s job finished before "
        f"the worker exited and ran {executions(worker_logs(stack))[slow]}x",
    )
    assert counts[slow] == 1, f"the 20 s job started {counts[slow]} times"
    assert states[slow]["result"]["steps"] == 20
    stack.wait_healthy(timeout=240)


# --- 5 ---------------------------------------------------------------------------------------

VICTIM_STEPS = 20  # long enough that the survivor is still busy when the victim's jobs come back


def test_two_workers_one_killed(stack):
    """--scale worker=2, the second one SIGKILLed while both run long jobs: the killed worker's
    jobs show RETRY (worker lost) while they wait, then finish on the survivor; no job of the
    live worker runs twice (only the dead worker's jobs are in the "run twice" column)."""
    stack.wait_healthy()

    def shown_retry(ledger: Ledger, victim_ids: set[str], killed: float) -> str:
        # The API tells the truth while they wait for the busy survivor: not PROGRESS any more,
        # but RETRY saying the worker was lost.
        wait_until(
            lambda: [
                j
                for j in ledger.states().values()
                if j["id"] in victim_ids
                and j["state"] == "RETRY"
                and j["error"]
                and "worker running this job stopped" in j["error"]
            ],
            timeout=RUNNING_AGAIN_WITHIN,
            interval=0.5,
            what="the killed worker's jobs shown as RETRY",
        )
        return f" shown RETRY {time.monotonic() - killed:.0f} s after the kill"

    two_workers_one_killed(
        stack,
        scenario="scale",
        label="5 two workers, one SIGKILLed",
        jobs=JOBS,
        long=LONG,
        steps=VICTIM_STEPS,
        while_waiting=shown_retry,
    )
    stack.wait_healthy(timeout=240)


# --- 6 ---------------------------------------------------------------------------------------

INTERVAL = 5  # seconds


def beat_sends(stack: Stack, task_name: str) -> list[float]:
    """Unix times at which beat logged sending task_name (Docker's timestamp of each line)."""
    pattern = re.compile(r"(\d{4}-\d\d-\d\dT[\d:.]+Z) .*Sending due task " + re.escape(task_name) + r" \(")
    logs = stack.compose("logs", "--no-color", "--timestamps", "beat").stdout
    return [parse_time(match.group(1)) for match in map(pattern.search, logs.splitlines()) if match]


def test_beat_restarted_repeatedly_fires_once_per_interval(stack):
    """A 5 s periodic task while beat is restarted four times - twice at once (`restart`), twice
    staying down across a due time (stop, 1.5 intervals, start) - : never two sends closer than
    the interval, never more sends than the window allows; 200 API jobs run meanwhile."""
    stack.wait_healthy()
    started = time.monotonic()
    task_name = f"chaos-beat-{uuid.uuid4().hex[:8]}"
    stack.manage(
        "shell",
        "-c",
        (
            "from django_celery_beat.models import IntervalSchedule, PeriodicTask\n"
            f"every, _ = IntervalSchedule.objects.get_or_create(every={INTERVAL}, period=IntervalSchedule.SECONDS)\n"
            f"PeriodicTask.objects.create(name={task_name!r}, task='jobs.noop', interval=every)\n"
        ),
    )
    created = time.time()
    ledger = new_ledger(stack, "beat")
    batches = [job_mix(50, long=1, start=50 * b, steps=LONG_STEPS) for b in range(4)]
    try:
        for restart in range(4):
            batch = ledger.submit_in_background(batches[restart])
            before = len(beat_sends(stack, task_name))
            wait_until(
                lambda: len(beat_sends(stack, task_name)) >= before + 2,
                timeout=120,
                interval=1,
                what=f"two sends before beat restart {restart + 1}",
            )
            batch.join()
            if restart % 2 == 0:
                stack.compose("restart", "beat")
            else:
                stack.compose("stop", "beat")
                last_send = beat_sends(stack, task_name)[-1]
                # Down across a due time: on start it sends that one once, not a burst.
                wait_until(
                    lambda: time.time() - last_send >= 1.5 * INTERVAL,
                    timeout=60,
                    interval=0.2,
                    what="a due time to pass while beat is down",
                )
                stack.compose("start", "beat")
        before = len(beat_sends(stack, task_name))
        wait_until(
            lambda: len(beat_sends(stack, task_name)) >= before + 2,
            timeout=120,
            interval=1,
            what="two sends after the last restart",
        )
    finally:
        stack.manage(
            "shell",
            "-c",
            (
                "from django_celery_beat.models import PeriodicTask\n"
                f"PeriodicTask.objects.filter(name={task_name!r}).delete()\n"
            ),
        )
    deleted = time.time()
    sends = beat_sends(stack, task_name)
    assert len(sends) >= 10, sends
    sends_in_window = [t for t in sends if t <= deleted]
    gaps = [later - earlier for earlier, later in zip(sends, sends[1:], strict=False)]
    window = deleted - created

    finish(
        stack,
        ledger,
        "6 beat restarted 4x",
        started,
        note=f"periodic {INTERVAL} s task: {len(sends)} sends in {window:.0f} s "
        f"(at most {int(window // INTERVAL) + 1} allowed), shortest gap {min(gaps):.2f} s",
    )
    assert min(gaps) >= INTERVAL - 0.5, f"two sends {min(gaps):.2f} s apart: {gaps}"
    assert len(sends_in_window) <= window // INTERVAL + 1
    assert len(sends) == len(sends_in_window) or len(sends) == len(sends_in_window) + 1
    assert restart_counts(stack, "beat") == {"beat": 0}
    stack.wait_healthy(timeout=240)


# --- 8 ---------------------------------------------------------------------------------------

WHOLE_STACK_WITHIN = 180  # seconds after `up -d --wait` returned


def test_whole_stack_killed_mid_run(stack):
    """`docker compose kill` of every service while jobs run and others wait (a host losing
    power, as far as containers can tell), then `up -d --wait`: all 200 jobs SUCCESS within
    3 minutes of the stack being back; none lost."""
    stack.wait_healthy()
    started = time.monotonic()
    ledger = new_ledger(stack, "power")
    # Still submitting when the power goes: those requests fail and the client sends them
    # again (same name) once the stack is back.
    batch = ledger.submit_in_background(job_mix(JOBS, long=LONG, steps=LONG_STEPS), threads=4)

    def mid_run():
        states = ledger.states()
        running = [j for j in states.values() if j["state"] in RUNNING]
        queued = [j for j in states.values() if j["state"] == "PENDING"]
        return (running, queued) if running and queued else None

    running, queued = wait_until(mid_run, timeout=180, interval=0.3, what="jobs running with others queued")
    stack.compose("kill")
    killed = time.monotonic()
    assert not stack.container_ids("web") and not stack.container_ids("redis")
    stack.up()
    back = time.monotonic()
    batch.join()

    states, counts = finish(
        stack,
        ledger,
        "8 whole stack killed (docker compose kill), then up",
        started,
        note=f"{len(running)} running and {len(queued)} queued at the kill; stack back "
        f"{back - killed:.0f} s after it",
        fault=back,
        timeout=WHOLE_STACK_WITHIN,
    )
    for job in running:
        assert counts[job["id"]] >= 2, f"{job['id']} was running at the kill but started {counts[job['id']]}x"
    stack.wait_healthy(timeout=240)


# --- 9 ---------------------------------------------------------------------------------------

WORKER_MEMORY = "400m"  # the test worker's limit
HOG_MEGABYTES = 1024  # what the greedy job allocates: well past the limit
MAX_DELIVERIES = 3  # JOB_MAX_DELIVERIES, the compose default


def oom_kills(container: str) -> int | None:
    """The kernel's count of OOM kills in the container's memory cgroup (cgroup v1), if readable."""
    for path in (
        f"/sys/fs/cgroup/memory/docker/{container}/memory.oom_control",
        f"/sys/fs/cgroup/memory/system.slice/docker-{container}.scope/memory.oom_control",
    ):
        try:
            lines = dict(line.split() for line in open(path).read().splitlines())
        except OSError:
            continue
        return int(lines.get("oom_kill", 0))
    return None


def test_worker_oom_killed(stack):
    """The worker under a memory limit; a job allocating past it gets its pool process killed
    by the kernel's OOM killer on every delivery: after JOB_MAX_DELIVERIES it ends FAILURE with
    a message saying so (no endless loop), while the job beside it and the others succeed."""
    stack.wait_healthy()
    started = time.monotonic()
    container = stack.inspect("worker")["Id"]
    docker("update", "--memory", WORKER_MEMORY, "--memory-swap", WORKER_MEMORY, container)
    try:
        ledger = new_ledger(stack, "oom")
        good = ledger.submit(*long_job(0, steps=LONG_STEPS * 2))
        wait_until(
            lambda: ledger.api.job(good).json()["state"] == "PROGRESS",
            timeout=120,
            interval=0.3,
            what="the good job running",
        )
        # The greedy job is not in the ledger: it is meant to fail.
        hog = ledger.api.submit("allocate", {"megabytes": HOG_MEGABYTES, "seconds": 1}).json()["id"]
        ledger.submit_all([short_job(n) for n in range(1, 50)])
        final = ledger.api.wait_for_state(hog, "FAILURE", "SUCCESS", timeout=300)
        kills = oom_kills(container)
        logs = worker_logs(stack)
        starts = executions(logs)[hog]
        states, counts = finish(
            stack,
            ledger,
            "9 worker OOM-killed (memory limit)",
            started,
            minimum=50,
            note=f"the {HOG_MEGABYTES} MiB job ended {final['state']} after {starts} starts "
            f"({kills if kills is not None else 'unknown'} kernel OOM kills); the job beside it "
            f"started {executions(logs)[good]}x",
        )
        assert final["state"] == "FAILURE", final
        assert final["error"] == (
            f"The job was started {MAX_DELIVERIES} times and each time its worker "
            "died before it finished (killed, or out of memory); it is not "
            "started again."
        ), final
        assert starts == MAX_DELIVERIES + 1, starts
        assert logs.count("signal 9 (SIGKILL)") >= MAX_DELIVERIES
        if kills is not None:
            assert kills >= MAX_DELIVERIES, kills
        assert states[good]["state"] == "SUCCESS"
    finally:
        # Back to the stack's own worker, without the limit.
        stack.compose("up", "-d", "--force-recreate", "--wait", "worker")
    stack.wait_healthy(timeout=240)


# --- 7 ---------------------------------------------------------------------------------------

MIN_FUZZ_REQUESTS = 500


def test_fuzz_the_api_from_its_schema(stack, tmp_path):
    """schemathesis from /api/schema/, authenticated: no 5xx over at least 500 requests.
    Then every job it created is cancelled, so no long generated job clogs the worker."""
    stack.wait_healthy()
    started = time.monotonic()
    fuzzer = new_ledger(stack, "fuzz")
    har = tmp_path / "fuzz.har"  # holds the token: kept out of artifacts/
    command = [
        str(Path(sys.executable).parent / "st"),
        "run",
        stack.url("/api/schema/"),
        "--header",
        f"Authorization: Token {fuzzer.token}",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        "150",
        "--seed",
        "20261123",
        "--workers",
        "2",
        "--request-timeout",
        "30",
        "--suppress-health-check",
        "all",
        "--report",
        "har",
        "--report-har-path",
        str(har),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=900)
    summary = run.stdout[-3000:]
    (ARTIFACTS / "chaos-fuzz-summary.txt").write_text(run.stdout[-20000:] + run.stderr[-5000:])

    entries = json.loads(har.read_text())["log"]["entries"]
    statuses = [entry["response"]["status"] for entry in entries]
    errors = [
        (entry["request"]["method"], entry["request"]["url"], entry["response"]["status"])
        for entry in entries
        if entry["response"]["status"] >= 500
    ]

    # Cancel whatever the fuzz started; wait until the worker has nothing of it left.
    cancelled = cancel_all(stack, fuzzer)
    by_status = dict(sorted(Counter(statuses).items()))
    record_line(
        f"7 API fuzz (schemathesis): {len(entries)} requests / 5xx {len(errors)}  "
        f"({time.monotonic() - started:.0f} s; statuses {by_status}; "
        f"{cancelled} generated jobs cancelled after)"
    )
    print(f"\n[chaos] fuzz: {len(entries)} requests, statuses {by_status}")
    assert run.returncode == 0, summary + run.stderr[-2000:]
    assert not errors, errors[:10]
    assert len(entries) >= MIN_FUZZ_REQUESTS, f"only {len(entries)} requests\n{summary}"
    stack.wait_healthy(timeout=240)


def cancel_all(stack: Stack, ledger: Ledger) -> int:
    """DELETE every unfinished job of the ledger's user; wait until all are finished and the
    broker holds no message (queued or unacknowledged) any more."""
    unfinished = [job_id for job_id, job in ledger.states().items() if job["state"] not in FINISHED]
    for job_id in unfinished:
        response = ledger.api.request("DELETE", f"/api/jobs/{job_id}/")
        assert response.status_code in (202, 409), response.text
    wait_until(
        lambda: all(job["state"] in FINISHED for job in ledger.states().values()),
        timeout=300,
        interval=2,
        what="the fuzz's jobs to be cancelled",
    )

    def broker_empty():
        return all(
            redis_cli(stack, "-n", "0", command, key).strip() == "0"
            for command, key in (("LLEN", "jobs"), ("HLEN", "unacked"))
        )

    wait_until(broker_empty, timeout=300, interval=2, what="the broker to hold no fuzz job")
    return len(unfinished)
