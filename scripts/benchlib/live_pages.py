"""Row 9 of scripts/bench: what open job pages cost web, beside clients polling the API.

  9. P open job pages (100) following running jobs for D seconds: each polls GET /jobs/live/?id=
     with the session's cookie as static/jobs/pages.js does (If-None-Match with the last ETag; the
     next poll 1 s after an answer that changed, the wait doubling up to 8 s while answers are 304
     Not Modified), vs P clients polling GET /api/jobs/<id>/ with a token once a second (what the
     old progress page did, and what a naive client does), on the same jobs. Two cases:
     - progressing: two wait_io jobs reporting progress every second (50 pages on each), so
       nearly every poll finds a change: the pages' worst case;
     - unchanged: two wait_io jobs in one long step (STARTED, nothing to report), measured once
       the pages' waits have grown to their cap, over whole periods of it (8 s): a queued job or
       a long step.
     Each case: status reads/s and the share answered 304, web's CPU time per second of the window
     (CPU ms/s: 1,000 is one core) and per 1,000 reads, and the whole stack's CPU time per second.
     The CPU times are the containers' cgroups' (scripts/benchlib/cgroup_cpu.py, via scripts/bench's
     StackCpu) over the measured window, while the pollers run.

The pollers are threads of this process (on the host, not charged to the stack), each with its
own keep-alive connection, started at spread-out moments. They model a job's own page (one id per
poll); the job list polls every unfinished job of its page in one request. A hidden tab does not
poll at all (pages.js); every page here is "visible".

scripts/bench imports this module (scripts/benchlib is on sys.path) and calls add_arguments,
settle_args, run, build_rows and notes; `bench` is the scripts/bench module itself.
"""

import http.client
import json
import math
import random
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlencode

ROW = 9
# As static/jobs/pages.js.
POLL_S = 1.0
MAX_POLL_S = 8.0
ERROR_POLL_S = 8.0
API_POLL_S = 1.0  # the old progress page's period (and the usual naive client's)
# The pages' waits reach MAX_POLL_S after 1 + 2 + 4 + 8 s of unchanged answers.
BACKOFF_WARM_UP_S = 15.0
JOB_SECONDS = 600  # long enough for every phase (wait_io's most); cancelled at the end

# name: (full, short)
MODES = {
    "live_pages": (100, 100),  # open pages on each side
    "live_seconds": (20, 5),  # the measured window of each side and case
}


def add_arguments(parser) -> None:
    group = parser.add_argument_group("row 9 (open job pages)")
    group.add_argument("--live-pages", type=int, help="row 9: open pages, and API pollers (100)")
    group.add_argument(
        "--live-seconds",
        type=int,
        help="row 9: seconds measured on each side of each case (full 20, short 5)",
    )


def settle_args(args) -> None:
    mode = 1 if args.short else 0
    for name, values in MODES.items():
        if getattr(args, name) is None:
            setattr(args, name, values[mode])


def next_page_wait(status: int, wait: float) -> float:
    """How long a page waits before its next poll after an answer (pages.js's rule; pure)."""
    if status == 304:
        return min(wait * 2, MAX_POLL_S)
    if 200 <= status < 300:
        return POLL_S
    return ERROR_POLL_S


@dataclass
class Poller:
    """One open page (or API client): a thread polling one job on its own connection."""

    port: int
    path: str
    headers: dict
    conditional: bool  # a page: If-None-Match, and pages.js's waits
    answers: list = field(default_factory=list)  # (monotonic time answered, status), appended

    def run(self, stop: threading.Event, start_after: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        etag, wait = None, POLL_S
        if stop.wait(start_after):
            return
        while not stop.is_set():
            headers = dict(self.headers)
            if self.conditional and etag:
                headers["If-None-Match"] = etag
            status = 0
            for attempt in (1, 2):
                try:
                    conn.request("GET", self.path, headers=headers)
                    response = conn.getresponse()
                    response.read()
                    status = response.status
                    if self.conditional and status == 200:
                        etag = response.getheader("ETag")
                    break
                except (http.client.HTTPException, OSError):
                    # The server closed an idle keep-alive connection (gunicorn's keepalive is
                    # shorter than the pages' longest wait): a browser opens a new one, so do we.
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                    if attempt == 2:
                        status = 0
            self.answers.append((time.monotonic(), status))
            wait = next_page_wait(status, wait) if self.conditional else API_POLL_S
            stop.wait(wait)
        conn.close()


def sign_in(bench, port: int, username: str, password: str) -> str:
    """The session cookie of a sign-in through the pages' form (CSRF token and all)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/accounts/login/")
    response = conn.getresponse()
    response.read()
    cookies = {}
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        cookies[name] = rest.split(";", 1)[0]
    csrf = cookies.get("csrftoken")
    if not csrf:
        raise bench.BenchError("GET /accounts/login/ set no csrftoken cookie")
    body = urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf})
    conn.request(
        "POST",
        "/accounts/login/",
        body=body,
        headers={"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"csrftoken={csrf}"},
    )
    response = conn.getresponse()
    response.read()
    conn.close()
    for header in response.headers.get_all("Set-Cookie") or []:
        name, _, rest = header.partition("=")
        if name == "sessionid":
            return rest.split(";", 1)[0]
    raise bench.BenchError(f"signing in to the pages answered {response.status} with no session")


def measure(bench, meter, pollers: list[Poller], warm_up: float, seconds: float) -> dict:
    """Start the pollers, let them run `warm_up` s, then count their answers and the stack's CPU
    time over `seconds`; stop them."""
    stop = threading.Event()
    spread = min(POLL_S, API_POLL_S)
    threads = [
        threading.Thread(target=p.run, args=(stop, random.uniform(0, spread)), daemon=True) for p in pollers
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(warm_up)
        before = meter.snapshot(settle=False)  # the pollers keep the stack busy: never at rest
        start = time.monotonic()
        stop.wait(seconds)
        cpu_s = meter.spent(before)
        end = time.monotonic()
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=40)
    answers = [status for p in pollers for at, status in p.answers if start <= at < end]
    failed = sum(1 for status in answers if not (200 <= status < 300 or status == 304))
    if not answers:
        raise bench.BenchError("row 9: no poll was answered in the measured window")
    if failed > 0.01 * len(answers):
        raise bench.BenchError(f"row 9: {failed} of {len(answers)} polls failed")
    if failed:
        bench.WARNINGS.append(f"row 9: {failed} of {len(answers)} polls failed")
    window = end - start
    return {
        "reads": len(answers),
        "seconds": window,
        "per_s": len(answers) / window,
        "not_modified": sum(1 for status in answers if status == 304) / len(answers),
        "cpu_s": cpu_s,
        "web_cpu_ms_per_s": cpu_s.get("web", 0.0) * 1000 / window,
        "stack_cpu_ms_per_s": sum(cpu_s.values()) * 1000 / window,
        "web_cpu_ms_per_1000": cpu_s.get("web", 0.0) * 1e6 / len(answers),
    }


def run(bench, stack, port: int, args) -> dict:
    if ROW not in args.wanted:
        return {}
    token = stack.in_stack("token")["token"]
    password = stack.in_stack("page-password")["password"]
    client = bench.Client(port, token)
    session = sign_in(bench, port, "bench", password)
    meter = bench.StackCpu(stack)
    n, seconds = args.live_pages, args.live_seconds
    # Unchanged, the pages (started within a second of each other) poll together every 8 s: that
    # case is measured over whole periods of it, so that its rate is the average one.
    whole_periods = math.ceil(seconds / MAX_POLL_S) * MAX_POLL_S
    cases = {}
    # (case, steps of the two jobs: one a second, or a single long one)
    for case, steps, warm_up, window in (
        ("progressing", JOB_SECONDS, 2.0, seconds),
        ("unchanged", 1, BACKOFF_WARM_UP_S, whole_periods),
    ):
        bench.log(f"row 9: {n} open job pages vs {n} API pollers, jobs {case}")
        body = json.dumps({"kind": "wait_io", "params": {"seconds": JOB_SECONDS, "steps": steps}})
        job_ids = []
        for _ in range(2):  # the worker's two processes run both at once
            status, answer = client.call("POST", "/api/jobs/", body)
            if status != 202:
                raise bench.BenchError(f"row 9: POST /api/jobs/ answered {status}: {answer}")
            job_ids.append(answer["id"])
        deadline = time.monotonic() + 120
        want = "PROGRESS" if case == "progressing" else "STARTED"
        while not all(client.state(job_id) == want for job_id in job_ids):
            if time.monotonic() > deadline:
                raise bench.BenchError(f"row 9: the {case} jobs did not reach {want} in 120 s")
            time.sleep(0.1)
        try:
            pages = [
                Poller(
                    port,
                    f"/jobs/live/?id={job_ids[i % 2]}",
                    {"Cookie": f"sessionid={session}", "Accept": "application/json"},
                    True,
                )
                for i in range(n)
            ]
            api = [
                Poller(
                    port,
                    f"/api/jobs/{job_ids[i % 2]}/",
                    {"Authorization": f"Token {token}", "Accept": "application/json"},
                    False,
                )
                for i in range(n)
            ]
            cases[case] = {
                "pages": measure(bench, meter, pages, warm_up, window),
                "api": measure(bench, meter, api, 2.0, window),
            }
        finally:
            for job_id in job_ids:
                client.call("DELETE", f"/api/jobs/{job_id}/")
    stack.in_stack("drain", "120")
    return {"live_pages": {"n": n, "seconds": seconds, **cases}}
