"""Load on the API: wrk for throughput, http.client for sequential probes and for jobs end to
end (submitted, run, read back)."""

import http.client
import json
import math
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from common import LIB, NOOP_BODY, WARNINGS, BenchError


def wrk(
    url: str,
    *,
    token: str | None,
    method: str = "GET",
    body: str | None = None,
    duration: int,
    connections: int,
    threads: int,
) -> dict:
    env = {**os.environ, "BENCH_TOKEN": token or "", "BENCH_METHOD": method, "BENCH_BODY": body or ""}
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LIB / "load.lua"),
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=duration + 60)
    lines = [line for line in result.stdout.splitlines() if line.startswith("BENCH ")]
    if result.returncode != 0 or not lines:
        raise BenchError(
            f"wrk {method} {url} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    stats = json.loads(lines[-1][len("BENCH ") :])
    errors = sum(
        stats[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    stats["errors"] = errors
    stats["ok"] = stats["requests"] - stats["status_errors"]
    stats["per_s"] = stats["ok"] / (stats["duration_us"] / 1e6)
    if errors:
        WARNINGS.append(
            f"wrk {method} {url}: {errors} errors in {stats['requests']} requests "
            f"({stats['status_errors']} non-2xx)"
        )
    if stats["requests"] == 0 and not errors and duration < 8:
        # Nothing answered and nothing failed within a short window (--short's 1 s on a host busy
        # with other work): no figure to report, so measure again over twice as long.
        WARNINGS.append(
            f"wrk {method} {url}: no answer within {duration} s; measured again over {2 * duration} s"
        )
        return wrk(
            url,
            token=token,
            method=method,
            body=body,
            duration=2 * duration,
            connections=connections,
            threads=threads,
        )
    if stats["ok"] == 0 or errors > 0.01 * max(stats["requests"], 1):
        raise BenchError(f"wrk {method} {url}: too many errors: {stats}")
    return stats


class Client:
    """One keep-alive connection, as a polling client would hold."""

    def __init__(self, port: int, token: str):
        self.port = port
        self.token = token
        self.headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: str | None = None) -> tuple[int, dict]:
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=body, headers=self.headers)
                response = self.conn.getresponse()
                return response.status, json.loads(response.read() or b"null")
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # gunicorn recycled the worker holding this keep-alive connection.
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def submit(self, api: str = "/api/jobs/") -> str:
        status, body = self.call("POST", api, NOOP_BODY)
        if status != 202:
            raise BenchError(f"POST {api} answered {status}: {body}")
        return body["id"]

    def state(self, job_id: str, api: str = "/api/jobs/") -> str:
        status, body = self.call("GET", f"{api}{job_id}/")
        if status != 200:
            raise BenchError(f"GET {api}{job_id}/ answered {status}: {body}")
        return body["state"]


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p99 of 100 samples is the 99th smallest)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def api_latency(client: Client, samples: int) -> list[float]:
    """Row 4, API side: submit, then poll the job until SUCCESS; milliseconds per job."""
    latencies = []
    for _ in range(samples):
        start = time.perf_counter()
        job_id = client.submit()
        while (state := client.state(job_id)) != "SUCCESS":
            if state in ("FAILURE", "REVOKED", "EXPIRED"):
                raise BenchError(f"no-op job {job_id} ended {state}")
            time.sleep(0.001)
        latencies.append((time.perf_counter() - start) * 1000)
    return latencies


def progress_of(out: str, threads: int) -> str:
    """What the wrk threads of submit_n.lua have reported so far (changes while they progress)."""
    seen = []
    for i in range(threads):
        for suffix in ("done", "progress"):
            try:
                seen.append(f"{suffix}:{Path(f'{out}.{i}.{suffix}').read_text()}")
                break
            except OSError:
                pass
    return " ".join(seen)


def api_end_to_end(
    client: Client, base_url: str, token: str, n: int, connections: int, threads: int, api: str = "/api/jobs/"
) -> dict:
    """Row 2, API side: N submissions through wrk, then wait until the API shows all N SUCCESS
    (api: the jobs endpoint, the peer's for row 6; both list {"results": [{"id", "state"}]})."""
    connections = max(threads, min(connections, n // threads))
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out = os.path.join(tmp, "ids")
        env = {
            **os.environ,
            "BENCH_TOKEN": token,
            "BENCH_BODY": NOOP_BODY,
            "BENCH_N": str(n),
            "BENCH_THREADS": str(threads),
            "BENCH_OUT": out,
            "BENCH_SUBMIT_PATH": api,
        }
        command = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            "-d600s",
            "--timeout",
            "30s",
            "-s",
            str(LIB / "submit_n.lua"),
            base_url + api,
        ]
        markers = [f"{out}.{i}.done" for i in range(threads)]
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        progress, progressed, checked = "", start, start
        try:
            while not all(os.path.exists(f) for f in markers):
                now = time.perf_counter()
                if proc.poll() is not None:
                    raise BenchError(f"wrk submitting {n} jobs stopped (exit {proc.poll()})")
                if now - checked > 0.25:
                    checked, seen = now, progress_of(out, threads)
                    if seen != progress:
                        progress, progressed = seen, now
                    elif now - progressed > 15:
                        # A connection dropped with a request in flight: that answer never comes.
                        WARNINGS.append("row 2: a submission's answer was lost (connection dropped)")
                        break
                time.sleep(0.002)
            submitted = time.perf_counter() - start
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                stdout, stderr = proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                stdout, stderr = proc.communicate()
        if not os.path.exists(out):
            raise BenchError(f"wrk submitting {n} jobs wrote no ids:\n{stdout}\n{stderr}")
        lines = Path(out).read_text().split()
        failed, ids = int(lines[3]), lines[4:]
    if failed or len(set(ids)) < 0.99 * n:
        # Answers counted twice show as repeated ids (seen once, 60 of 1,000, not reproduced).
        raise BenchError(
            f"{n} submissions through wrk ({api}): {len(set(ids))} jobs, {failed} failed, "
            f"{len(ids)} ids answered of which {len(ids) - len(set(ids))} repeated"
        )
    n = len(set(ids))

    # All N read back through the API: the list endpoint (one MGET per page of 200), newest
    # page first (the last jobs to finish), then every page until none is left unfinished.
    unfinished = set(ids)
    pages = math.ceil(n / 200)
    newest_first_done = False
    while unfinished:
        for page in [1] if not newest_first_done else range(1, pages + 1):
            status, body = client.call("GET", f"{api}?page_size=200&page={page}")
            if status != 200:
                raise BenchError(f"GET {api} page {page} answered {status}")
            page_done = True
            for job in body["results"]:
                if job["state"] == "SUCCESS":
                    unfinished.discard(job["id"])
                elif job["id"] in unfinished:
                    page_done = False
                    if job["state"] in ("FAILURE", "REVOKED", "EXPIRED"):
                        raise BenchError(f"no-op job {job['id']} ended {job['state']}")
            if page == 1 and page_done:
                newest_first_done = True
        if unfinished:
            time.sleep(0.005)
    elapsed = time.perf_counter() - start
    return {"n": n, "seconds": elapsed, "per_s": n / elapsed, "submit_per_s": n / submitted}
