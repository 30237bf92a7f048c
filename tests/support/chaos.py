"""Helpers of the chaos suite (tests/e2e/test_chaos.py): a ledger of submitted jobs, counting
executions in worker logs, watching web during an outage, and the per-scenario report.

A job counts as submitted only once the API accepted it (202, or 200 for the same name sent
again after an answer was lost); it is lost if it is not SUCCESS when the scenario ends.
"""

import json
import os
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import requests

from tests.support.docker import docker
from tests.support.stack import ARTIFACTS, Api, Stack
from tests.support.wait import wait_until

FINISHED = ("SUCCESS", "FAILURE", "REVOKED", "EXPIRED")
RUNNING = ("STARTED", "PROGRESS")
# CHAOS_REPORT: another file, for a pytest run beside this one (scripts/test runs two lanes).
REPORT_PATH = Path(os.environ.get("CHAOS_REPORT", ARTIFACTS / "chaos-report.txt"))
# One line per scenario, in the order they ran; printed by tests/conftest.py at the end.
REPORT: list[str] = []

# JobTask.before_start logs this once per execution of a job (services/jobs/tasks.py).
STARTED_LINE = re.compile(r"Job ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}) started \(")


# --- jobs --------------------------------------------------------------------------------------


def long_job(n: int, steps: int = 6) -> tuple[str, dict]:
    """A multi-step model_inference taking about `steps` seconds."""
    return "model_inference", {"text": f"chaos {n}", "steps": steps, "step_seconds": 1.0}


def short_job(n: int) -> tuple[str, dict]:
    return ("noop", {}) if n % 2 else ("sum_number", {"x": 1, "y": 1000 + n})


def job_mix(count: int, long: int, start: int = 0, steps: int = 6) -> list[tuple[str, dict]]:
    """`long` long jobs first (so they are running when a fault hits), then short ones."""
    return [long_job(start + i, steps) for i in range(long)] + [
        short_job(start + i) for i in range(long, count)
    ]


@dataclass
class Ledger:
    """Every job one scenario submitted, under one token of its own (one list read = all states)."""

    scenario: str
    base_url: str
    token: str
    ids: dict[str, str] = field(default_factory=dict)  # job id -> kind
    names: dict[str, str] = field(default_factory=dict)  # job id -> name
    refusals: list[tuple[int | str, str]] = field(default_factory=list)  # answers retried
    # Answers after which the client sends the same name again. 503: web refused (a backing
    # service is down). The swarm tests add the proxy's 502/504 (a node died under the request).
    retry_statuses: tuple[int, ...] = (503,)
    # Sent with every request (the swarm tests act as the TLS load balancer: X-Forwarded-Proto).
    headers: dict[str, str] = field(default_factory=dict)
    # Every request's (monotonic start, seconds to its answer or failure, status or exception name).
    answers: list[tuple[float, float, int | str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _local: threading.local = field(default_factory=threading.local)
    _counter: int = 0

    @property
    def api(self) -> Api:
        """A client (HTTP session) per thread: submissions run in several threads at once."""
        if not hasattr(self._local, "api"):
            self._local.api = Api(self.base_url, self.token)
            self._local.api.session.headers.update(self.headers)
        return self._local.api

    def _answered(self, started: float, status: int | str) -> None:
        with self._lock:
            self.answers.append((started, time.monotonic() - started, status))

    def submit(self, kind: str, params: dict, *, deadline: float = 240) -> str:
        """Submit until accepted. While Redis or PostgreSQL is down the API answers 503: the
        client retries with the same name, so an answer lost on the way cannot create a
        second job (the same name returns the first one with 200)."""
        with self._lock:
            self._counter += 1
            name = f"{self.scenario}-{self._counter:04d}"
        give_up = time.monotonic() + deadline
        while True:
            started = time.monotonic()
            try:
                response = self.api.submit(kind, params, name=name)
                status: int | str = response.status_code
                self._answered(started, status)
                if status in (200, 202):
                    body = response.json()
                    with self._lock:
                        self.ids[body["id"]] = kind
                        self.names[body["id"]] = name
                    return body["id"]
                detail = response.text[:300]
                if status not in self.retry_statuses:
                    raise AssertionError(f"submit {kind} {name}: {status} {detail}")
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.exceptions.ChunkedEncodingError,
            ) as exc:
                # ChunkedEncodingError: the answer was cut off mid-body (the server died while
                # sending it); like a connection error, the client cannot know what happened.
                status, detail = type(exc).__name__, str(exc)[:300]
                self._answered(started, status)
            with self._lock:
                self.refusals.append((status, detail))
            if time.monotonic() > give_up:
                raise AssertionError(
                    f"submit {kind} {name} not accepted within {deadline}s: {status} {detail}"
                )
            time.sleep(0.5)

    def submit_all(self, jobs: Iterable[tuple[str, dict]], threads: int = 4) -> list[str]:
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(lambda job: self.submit(*job), jobs))

    def submit_in_background(self, jobs: list[tuple[str, dict]], threads: int = 2) -> "Background":
        return Background(lambda: self.submit_all(jobs, threads))

    def states(self) -> dict[str, dict]:
        """Job id -> the job as GET /api/jobs/ shows it (every page, 200 per read)."""
        jobs: dict[str, dict] = {}
        page = 1
        while True:
            started = time.monotonic()
            try:
                response = self.api.request("GET", f"/api/jobs/?page_size=200&page={page}", timeout=30)
            except requests.RequestException as exc:
                self._answered(started, type(exc).__name__)
                raise
            self._answered(started, response.status_code)
            response.raise_for_status()
            body = response.json()
            jobs.update({job["id"]: job for job in body["results"]})
            if not body.get("next"):
                return jobs
            page += 1

    def running(self, kind: str | None = None) -> list[dict]:
        return [
            job
            for job in self.states().values()
            if job["state"] in RUNNING and (kind is None or job["kind"] == kind)
        ]

    def wait_finished(self, timeout: float) -> dict[str, dict]:
        """Wait until every accepted job is finished (or the deadline); return the last states.

        Does not fail on the deadline: what is unfinished then counts as lost."""
        last: dict[str, dict] = {}

        def all_finished():
            nonlocal last
            last = self.states()
            return all(last.get(job_id, {}).get("state") in FINISHED for job_id in self.ids)

        try:
            wait_until(
                all_finished,
                timeout=timeout,
                interval=2,
                what=f"{len(self.ids)} jobs of {self.scenario} to finish",
            )
        except AssertionError:
            pass
        return last

    def lost(self, states: dict[str, dict]) -> list[str]:
        return [job_id for job_id in self.ids if states.get(job_id, {}).get("state") != "SUCCESS"]


class Background:
    """Runs fn in a thread; join() returns its value or raises its exception."""

    def __init__(self, fn):
        self._value = None
        self._error: BaseException | None = None

        def run():
            try:
                self._value = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to join()
                self._error = exc

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def join(self, timeout: float = 600):
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise AssertionError(f"background work still running after {timeout}s")
        if self._error:
            raise self._error
        return self._value


# --- executions, from the worker logs ------------------------------------------------------------


def executions(worker_logs: str) -> Counter:
    """Job id -> how many times a worker started it (all worker containers' logs)."""
    return Counter(STARTED_LINE.findall(worker_logs))


def run_twice(worker_logs: str, job_ids: Iterable[str]) -> list[str]:
    counts = executions(worker_logs)
    return [job_id for job_id in job_ids if counts[job_id] >= 2]


def held_by(worker_log: str) -> set[str]:
    """Ids of the jobs a worker received and never finished (succeeded, failed or retried)."""

    def ids(event: str) -> set[str]:
        return set(re.findall(rf"Task jobs\.\w+\[([0-9a-f-]{{36}})\] {event}", worker_log))

    return ids("received") - ids("succeeded") - ids("raised") - ids("retry")


def container_logs(container: str) -> str:
    """One container's log (it may be dead: `docker logs` still has it until it is removed)."""
    logs = docker("logs", container, check=False, timeout=60)
    return logs.stdout + logs.stderr


def worker_logs(stack: Stack) -> str:
    """Logs of every worker container that still exists (a removed container's are gone)."""
    return stack.compose("logs", "--no-color", "worker").stdout


def broker_diagnostics(stack: Stack, job_ids: Iterable[str]) -> str:
    """Where unfinished jobs are in the broker: waiting (list `jobs`), taken but unacknowledged
    (hash `unacked`, zset `unacked_index`), or nowhere."""

    def cli(*args):
        return stack.exec("redis", "redis-cli", "--no-auth-warning", "-n", "0", *args, check=False).stdout

    waiting = cli("LRANGE", "jobs", "0", "-1")
    unacked = cli("HVALS", "unacked")
    lines = [
        f"LLEN jobs={cli('LLEN', 'jobs').strip()} HLEN unacked={cli('HLEN', 'unacked').strip()} "
        f"ZCARD unacked_index={cli('ZCARD', 'unacked_index').strip()}"
    ]
    for job_id in job_ids:
        where = [name for name, blob in (("waiting", waiting), ("unacked", unacked)) if job_id in blob]
        lines.append(f"  {job_id}: {', '.join(where) or 'not in the broker'}")
    return "\n".join(lines)


# --- a scenario's ledger and its end ----------------------------------------------------------


def new_ledger(stack: Stack, scenario: str) -> Ledger:
    token = stack.create_token(f"chaos-{scenario}-{uuid.uuid4().hex[:8]}")
    return Ledger(scenario=scenario, base_url=stack.url(""), token=token)


# Until every job finished: a killed worker's jobs come back within JOB_WORKER_LOST_AFTER (30 s)
# plus a sweep and the restarted worker's own 30 s, on a 2-core machine that may run other
# stacks too.
FINISH_TIMEOUT = 420


def finish(
    stack: Stack,
    ledger: Ledger,
    label: str,
    started: float,
    note: str = "",
    fault: float | None = None,
    minimum: int = 200,
    timeout: float = FINISH_TIMEOUT,
):
    """Wait for every job, count executions, record the report line, assert nothing was lost.

    fault: when the fault ended (monotonic); the note then says how long after it all finished.
    Returns (final states, executions per job id)."""
    states = ledger.wait_finished(timeout)
    if fault is not None:
        note = f"{note}; all finished {time.monotonic() - fault:.0f} s after the fault"
    logs = worker_logs(stack)
    counts = executions(logs)
    lost = ledger.lost(states)
    twice = [job_id for job_id in ledger.ids if counts[job_id] >= 2]
    finished = sum(1 for job_id in ledger.ids if states.get(job_id, {}).get("state") == "SUCCESS")
    line = record(
        label,
        submitted=len(ledger.ids),
        finished=finished,
        lost=len(lost),
        twice=len(twice),
        seconds=time.monotonic() - started,
        note=note,
    )
    print(f"\n[chaos] {line}")
    if lost:
        (ARTIFACTS / f"chaos-{ledger.scenario}-worker.log").write_text(logs)
        details = "\n".join(
            f"  {job_id} {ledger.names[job_id]} {ledger.ids[job_id]}: "
            f"{states.get(job_id, {}).get('state', 'not listed')} "
            f"{states.get(job_id, {}).get('error') or ''} started {counts[job_id]}x"
            for job_id in lost[:20]
        )
        raise AssertionError(
            f"{len(lost)} accepted jobs not SUCCESS:\n{details}\n{broker_diagnostics(stack, lost[:20])}"
        )
    assert finished == len(ledger.ids) >= minimum
    return states, counts


# --- web during an outage ------------------------------------------------------------------------


@dataclass
class Answer:
    at: float
    what: str
    status: int | None
    json_error: str | None
    problem: str | None


class OutageWatch:
    """Polls /healthz and one API read in a background thread while a service is down.

    Every answer must come within `prompt` seconds, and be 200 or 503 with a JSON body naming
    the unavailable service; anything else (a 500, an HTML page, a hang) is a problem."""

    def __init__(self, stack: Stack, token: str, api_path: str, prompt: float = 10):
        api = Api(stack.url(""), token)
        self.targets = {
            "healthz": (requests.Session(), stack.url("/healthz")),
            "api": (api.session, api.base_url + api_path),
        }
        self.prompt = prompt
        self.answers: list[Answer] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(30)

    def _run(self):
        while not self._stop.is_set():
            for what, (session, url) in self.targets.items():
                self.answers.append(self._probe(what, session, url))
            self._stop.wait(0.5)

    def _probe(self, what, session, url) -> Answer:
        started = time.monotonic()
        try:
            response = session.get(url, timeout=self.prompt)
        except requests.RequestException as exc:
            return Answer(started, what, None, None, f"no answer: {type(exc).__name__}")
        status, error, problem = response.status_code, None, None
        if status == 503:
            try:
                body = response.json()
                error = body.get("error") or body.get("status")
            except ValueError:
                problem = f"503 without JSON: {response.text[:100]!r}"
            if error not in ("service_unavailable", "unavailable"):
                problem = problem or f"503 body not a service error: {response.text[:200]}"
        elif status != 200:
            problem = f"{status}: {response.text[:200]}"
        return Answer(started, what, status, error, problem)

    def saw_503(self, what: str) -> bool:
        return any(a.what == what and a.status == 503 and not a.problem for a in self.answers)

    def counts(self) -> Counter:
        return Counter((a.what, a.status) for a in self.answers)

    def problems(self) -> list[Answer]:
        return [a for a in self.answers if a.problem]


# --- containers ---------------------------------------------------------------------------------


def parse_time(value: str) -> float:
    """Unix time of an ISO-8601 timestamp (Docker's nanoseconds cut to microseconds)."""
    value = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00"))
    return datetime.fromisoformat(value).timestamp()


# --- report ------------------------------------------------------------------------------------


def record(
    scenario: str, *, submitted: int, finished: int, lost: int, twice: int, seconds: float, note: str = ""
) -> str:
    return record_line(
        f"{scenario}: submitted {submitted} / finished {finished} / lost {lost} / "
        f"run twice {twice}  ({seconds:.0f} s{'; ' + note if note else ''})"
    )


def record_line(line: str) -> str:
    """Add a line to the report, and rewrite artifacts/chaos-report.txt with every line so far."""
    REPORT.append(line)
    ARTIFACTS.mkdir(exist_ok=True)
    REPORT_PATH.write_text("".join(f"{entry}\n" for entry in REPORT))
    return line


def two_workers_one_killed(
    stack: Stack, *, scenario: str, label: str, jobs: int, long: int, steps: int, while_waiting=None
) -> None:
    """Chaos on either broker: --scale worker=2, the second worker SIGKILLed while both run long
    jobs. Its jobs finish on the survivor, each started twice, and no job of the live worker runs
    twice. `while_waiting(ledger, victim_ids, killed)` runs before the rest is awaited and returns a
    phrase for the report line. Scales back to the one worker it started with."""
    from tests.e2e.helpers import hostnames  # the e2e helpers ask the containers themselves

    started = time.monotonic()
    survivor_container = stack.container_ids("worker")[0]
    stack.compose("up", "-d", "--no-recreate", "--no-deps", "--scale", "worker=2", "worker")
    try:
        names = hostnames(stack, "worker")
        assert sorted(names) == [1, 2], names
        survivor, victim = names[1], names[2]
        victim_container = next(c["ID"] for c in stack.state()["worker"] if c["Name"].endswith("-2"))
        wait_until(
            lambda: "ready." in container_logs(victim_container),
            timeout=180,
            interval=1,
            what="worker 2 ready",
        )

        ledger = new_ledger(stack, scenario)
        mix = job_mix(jobs, long=long, steps=steps)
        ledger.submit_all(mix[:long])
        rest = ledger.submit_in_background(mix[long:])
        on_victim = wait_until(
            lambda: [
                j
                for j in ledger.running("model_inference")
                if j["worker"] == victim and j["progress"] and j["progress"]["current"] <= 5
            ],
            timeout=180,
            interval=0.5,
            what=f"long jobs running on worker 2 ({victim})",
        )
        # Its restart policy would not bring it back after `docker kill` anyway; say so.
        docker("update", "--restart=no", victim_container, timeout=120)
        docker("kill", "-s", "KILL", victim_container, timeout=120)
        killed = time.monotonic()
        # What the victim held when it died: received and not finished, by its own log.
        victim_ids = held_by(container_logs(victim_container))
        assert {job["id"] for job in on_victim} <= victim_ids
        shown = while_waiting(ledger, victim_ids, killed) if while_waiting else ""
        rest.join()

        # Counted before scaling down: a removed container's logs are gone.
        states, counts = finish(
            stack,
            ledger,
            label,
            started,
            fault=killed,
            note=f"{len(on_victim)} long jobs running on the killed worker{shown}, then finished on the other",
        )
        for job in on_victim:
            final = states[job["id"]]
            assert final["worker"] == survivor, f"{job['id']} finished on {final['worker']}"
            assert counts[job["id"]] == 2 and final["deliveries"] == 2, (counts[job["id"]], final)
        twice = {job_id for job_id in ledger.ids if counts[job_id] >= 2}
        assert twice <= victim_ids, f"run twice: {sorted(twice - victim_ids)} were not the killed worker's"
    finally:
        stack.compose("up", "-d", "--no-recreate", "--no-deps", "--scale", "worker=1", "worker")
    assert stack.container_ids("worker") == [survivor_container]


# --- scenarios run on more than one stack -------------------------------------------------------
# Each runs on the stack it is given, as a user's stack runs: every compose timeout as shipped.

JOBS = 200
LONG = 8  # long jobs per scenario (model_inference, LONG_STEPS x 1 s)
LONG_STEPS = 6
# What the issue promises on the defaults: a killed worker's running job runs again within this.
RUNNING_AGAIN_WITHIN = 90
PROMPT = 10  # seconds: web must answer within this even while a backing service is down
# A backing service stays down at least this long: long jobs report progress meanwhile, and
# workers and beat notice the lost connections.
OUTAGE = 10


def early_in_run(job: dict) -> bool:
    """Running and at most halfway: it is certainly still running a moment later."""
    progress = job["progress"]
    return job["state"] in RUNNING and (progress is None or progress["current"] <= progress["total"] // 2)


def restart_counts(stack: Stack, *services: str) -> dict[str, int]:
    return {service: stack.inspect(service)["RestartCount"] for service in services}


def healthz(stack: Stack) -> requests.Response:
    return requests.get(stack.url("/healthz"), timeout=PROMPT)


def worker_events_after(stack: Stack, since: float) -> tuple[float, float]:
    """Seconds from `since` (a kill) to the worker's next "ready." and its first put-back."""
    lines = stack.compose("logs", "--no-color", "--timestamps", "worker").stdout.splitlines()

    def first(needle: str) -> float:
        times = [parse_time(line.split()[2]) for line in lines if needle in line and len(line.split()) > 2]
        later = [at - since for at in times if at > since]
        return min(later, default=float("nan"))

    return first(" ready."), first("put back in the queue")


def worker_sigkilled_mid_run(stack: Stack, *, scenario: str, label: str) -> None:
    """A 20-step job running, the worker container SIGKILLed and started again
    (`docker compose up -d --wait worker`): the job runs again within 90 s, under the same id,
    ends SUCCESS and says it was delivered twice; 199 other jobs meanwhile, none lost (Redis
    broker: the live workers' recovery of orphaned deliveries puts the killed one's back)."""
    stack.wait_healthy()
    started = time.monotonic()
    ledger = new_ledger(stack, scenario)
    twenty = ledger.submit(*long_job(0, steps=20))
    jobs = job_mix(JOBS - 1, long=LONG - 1, start=1, steps=LONG_STEPS)
    rest = ledger.submit_in_background(jobs)

    def early():
        job = ledger.api.job(twenty).json()
        return job if job["state"] == "PROGRESS" and 2 <= job["progress"]["current"] <= 6 else None

    before = wait_until(early, timeout=180, interval=0.3, what="the 20-step job running")
    interrupted = {job["id"] for job in ledger.running()}
    container = stack.container_ids("worker")[0]
    docker("kill", "-s", "KILL", container, timeout=120)
    killed, killed_at = time.monotonic(), time.time()
    wait_until(
        lambda: not json.loads(docker("inspect", container, timeout=120).stdout)[0]["State"]["Running"],
        timeout=60,
        what="the killed worker to be gone",
    )
    stack.up("worker")

    def started_again():
        job = ledger.api.job(twenty).json()
        return job if job["deliveries"] == 2 and job["state"] in (*RUNNING, "SUCCESS") else None

    # `up --wait` returns once the healthcheck passed, which may be after the job started
    # again: when it did is its second run's own start time.
    again = wait_until(
        started_again, timeout=RUNNING_AGAIN_WITHIN + 60, interval=0.3, what="the 20-step job started again"
    )
    took = parse_time(again["started_at"]) - killed_at
    ready, put_back = worker_events_after(stack, killed_at)
    rest.join()

    states, counts = finish(
        stack,
        ledger,
        label,
        started,
        note=f"the 20-step job (step {before['progress']['current']} at the kill) "
        f"ran again {took:.0f} s after the kill (worker ready again after "
        f"{ready:.0f} s, jobs put back after {put_back:.0f} s); "
        f"{len(interrupted)} jobs were running at the kill",
        fault=killed,
    )
    assert took <= RUNNING_AGAIN_WITHIN, f"running again only {took:.0f} s after the kill"
    assert again["started_at"] != before["started_at"]
    assert states[twenty]["result"]["steps"] == 20
    assert states[twenty]["deliveries"] == 2, states[twenty]
    assert counts[twenty] == 2
    for job_id in interrupted:
        assert counts[job_id] >= 2, f"{job_id} was running when killed but started {counts[job_id]}x"
    stack.wait_healthy(timeout=240)


def backing_service_restarted_mid_run(stack: Stack, *, service: str, scenario: str, label: str) -> None:
    """Stop + start of postgres or redis (a restart one can watch): queued jobs and finished results
    survive, web answers 503 JSON meanwhile and recovers by itself, workers and beat reconnect."""
    from tests.e2e.helpers import redis_cli  # the e2e helpers ask the containers themselves

    stack.wait_healthy()
    started = time.monotonic()
    ledger = new_ledger(stack, scenario)
    early = ledger.submit_all([short_job(n) for n in range(10)])
    wait_until(
        lambda: all(ledger.states()[job_id]["state"] == "SUCCESS" for job_id in early),
        timeout=180,
        interval=1,
        what="the first jobs to finish",
    )

    # Submitted in the background and watched meanwhile: on a loaded machine submitting 90 jobs
    # can outlast the long ones, and the fault must hit while they run.
    batch = ledger.submit_in_background(job_mix(90, long=4, start=10, steps=2 * LONG_STEPS))

    def mid_run():
        states = ledger.states()
        running = [j for j in states.values() if j["kind"] == "model_inference" and early_in_run(j)]
        queued = [job_id for job_id, j in states.items() if j["state"] == "PENDING"]
        return (running, queued) if running and queued else None

    running, queued = wait_until(
        mid_run, timeout=180, interval=0.5, what="long jobs running with others queued"
    )
    waiting = int(redis_cli(stack, "-n", "0", "LLEN", "jobs").strip() or 0)
    web_before = stack.inspect("web")
    restarts_before = restart_counts(stack, "web", "worker", "beat")

    with OutageWatch(stack, ledger.token, f"/api/jobs/{early[0]}/", prompt=PROMPT) as watch:
        stack.compose("stop", service)
        down = time.monotonic()
        # Submitted while the service is down: refused with 503 until it is back.
        during = ledger.submit_in_background([short_job(n) for n in range(100, 200)])
        wait_until(
            lambda: (
                watch.saw_503("healthz")
                and watch.saw_503("api")
                and ledger.refusals
                and time.monotonic() - down >= OUTAGE
            ),
            timeout=90,
            interval=0.5,
            what=f"503 answers while {service} is down",
        )
        stack.compose("start", service)
        wait_until(
            lambda: healthz(stack).status_code == 200,
            timeout=180,
            interval=1,
            what=f"/healthz 200 after {service} came back",
        )
        back = time.monotonic()
        outage = back - down
        # Results finished before the restart read SUCCESS after it.
        survived = {job_id: ledger.api.job(job_id).json()["state"] for job_id in early}
        during.join()
        batch.join()

    assert set(survived.values()) == {"SUCCESS"}, survived
    problems = watch.problems()
    assert not problems, f"web answered badly while {service} was down: {problems[:5]}"
    bad_refusals = [r for r in ledger.refusals if r[0] != 503]
    assert not bad_refusals, f"submissions failed otherwise than 503: {bad_refusals[:5]}"

    web_after = stack.inspect("web")
    assert (web_after["Id"], web_after["State"]["StartedAt"]) == (
        web_before["Id"],
        web_before["State"]["StartedAt"],
    ), "web was recreated or restarted"
    assert web_after["RestartCount"] == 0
    restarts_after = restart_counts(stack, "web", "worker", "beat")
    crashed = [name for name, count in restarts_after.items() if count != restarts_before[name]]
    logs = "\n".join(
        stack.compose("logs", "--no-color", "--tail", "60", name, check=False).stdout for name in crashed
    )
    assert not crashed, f"{crashed} restarted ({restarts_before} -> {restarts_after}):\n{logs}"

    seen = watch.counts()
    states, counts = finish(
        stack,
        ledger,
        label,
        started,
        note=f"down {outage:.0f} s; {len(queued)} queued ({waiting} waiting in Redis) and "
        f"{len(running)} running at the stop; {len(ledger.refusals)} submissions refused 503 "
        f"then retried; web 503 JSON: healthz {seen[('healthz', 503)]}x, API read "
        f"{seen[('api', 503)]}x; web restarts 0",
        fault=back,
    )
    assert all(states[job_id]["state"] == "SUCCESS" for job_id in queued)
    stack.wait_healthy(timeout=240)
