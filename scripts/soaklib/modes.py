"""scripts/soak's modes (soak, flood, backlog, footprint): what each does is in scripts/soak's
usage text; method and figures in docs/capacity.md."""

import json
import threading
import time
from collections import Counter

from stack import FINISHED, T0, Client, Ledger, Sampler, Stack, log


def run_clients(count: int, target) -> None:
    threads = [threading.Thread(target=target, args=(n,), daemon=True) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def accepted_states(clients: list[Client], ledger: Ledger) -> dict[str, str]:
    states = {}
    for client in clients:
        mine = client.states()
        states.update((job_id, mine.get(job_id, "MISSING")) for job_id in ledger.accepted.get(client.token, []))
    return states


def drain(stack: Stack, clients: list[Client], ledger: Ledger, timeout: float, recheck_after: float = 0) -> dict:
    """Wait until every accepted job finished; its final states as the API shows them. With
    recheck_after (the stack's JOB_HOT_SECONDS), read them all again once that long has passed,
    when Redis no longer holds them: the API then answers from PostgreSQL, and that is the
    answer counted."""
    deadline = time.monotonic() + timeout
    log(f"waiting for the {ledger.accepted_count()} accepted jobs to finish")
    while True:
        states = accepted_states(clients, ledger)
        unfinished = sum(1 for state in states.values() if state not in FINISHED)
        if not unfinished or time.monotonic() > deadline:
            break
        log(f"{unfinished} jobs not finished yet")
        time.sleep(5)
    result = {"final_states_from_redis": dict(Counter(states.values()))}
    if recheck_after and not unfinished:
        log(f"waiting {recheck_after + 5:.0f} s (JOB_HOT_SECONDS): then every job again, from PostgreSQL")
        time.sleep(recheck_after + 5)
        states = accepted_states(clients, ledger)
    counts = Counter(states.values())
    result.update({"final_states": dict(counts),
                   "lost": sum(count for state, count in counts.items() if state != "SUCCESS")})
    return result


class Pacer:
    """Spaces the submissions of every client thread together at `rate` per second."""

    def __init__(self, rate: float):
        self.interval = 1 / rate
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            self.next = max(self.next + self.interval, now)
            delay = self.next - now
        if delay > 0:
            time.sleep(delay)


def soak(stack: Stack, clients: list[Client], ledger: Ledger, args) -> dict:
    body = {"kind": args.kind, "params": args.params}
    stop_at = time.monotonic() + args.minutes * 60
    pacer = Pacer(args.rate) if args.rate else None

    def client_loop(n: int) -> None:
        client = clients[n]
        while time.monotonic() < stop_at:
            batch = set()
            for _ in range(args.window):
                if pacer:
                    pacer.wait()
                status, answer = client.call("POST", "/api/jobs/", body)
                if ledger.record(client.token, status, answer):
                    batch.add(answer["id"])
                elif status == 503:
                    time.sleep(float(args.retry_after))
            while batch and time.monotonic() < stop_at + 600:
                states = client.states(newest=args.window)
                batch = {job_id for job_id in batch if states.get(job_id) not in FINISHED}
                if batch:
                    time.sleep(0.2)

    sampler = Sampler(stack, ledger, args.interval).start()
    run_clients(len(clients), client_loop)
    sampler.stop()
    result = drain(stack, clients, ledger, timeout=600, recheck_after=args.hot_seconds)
    # Three samples from --compare-after on, against the last three: their medians, so that one
    # sample taken as a batch of jobs finished does not decide.
    series, start = sampler.series, sampler.series[0]["t"]
    early_rows = [row for row in series if row["t"] - start >= args.compare_after][:3] or series[-3:]
    early = sorted(row["redis_used"] for row in early_rows)[len(early_rows) // 2]
    late_rows = series[-3:]
    late = sorted(row["redis_used"] for row in late_rows)[len(late_rows) // 2]
    end = series[-1]
    result.update({
        "seconds": round(args.minutes * 60),
        "jobs_per_s": round(ledger.accepted_count() / (args.minutes * 60), 1),
        "compare_after_s": args.compare_after,
        "redis_used_early": early, "redis_used_at_end": late,
        "redis_growth": round(late / early - 1, 3),
        "redis_used_max": max(row["redis_used"] for row in sampler.series),
        "postgres_bytes_start": sampler.series[0]["postgres_bytes"], "postgres_bytes_end": end["postgres_bytes"],
        "series": sampler.series,
    })
    return result


def flood(stack: Stack, clients: list[Client], ledger: Ledger, args) -> dict:
    body = {"kind": args.kind, "params": args.params}
    stop_at = time.monotonic() + args.seconds

    def client_loop(n: int) -> None:
        client = clients[n]
        while time.monotonic() < stop_at:
            status, answer = client.call("POST", "/api/jobs/", body)
            if not ledger.record(client.token, status, answer) and status >= 500:
                time.sleep(0.05)  # a flood: no waiting out Retry-After

    sampler = Sampler(stack, ledger, args.interval).start()
    run_clients(len(clients), client_loop)
    flood_end = time.monotonic()
    # How long until the stack takes a new job again, nobody having touched it.
    probe, accepted_again = clients[0], None
    while time.monotonic() - flood_end < 600:
        status, answer = probe.call("POST", "/api/jobs/", {"kind": "noop"})
        if ledger.record(probe.token, status, answer):
            accepted_again = round(time.monotonic() - flood_end, 1)
            break
        time.sleep(1)
    log(f"a new job was accepted again {accepted_again} s after the flood ended")
    sampler.stop()
    result = drain(stack, clients, ledger, timeout=1800, recheck_after=args.hot_seconds)
    result.update({"seconds": args.seconds, "serves_again_after_s": accepted_again,
                   "redis_used_max": max(row["redis_used"] for row in sampler.series),
                   "redis_max": sampler.series[-1]["redis_max"],
                   "redis_rss_max": max(row["redis_rss"] for row in sampler.series),
                   "series": sampler.series})
    return result


def backlog(stack: Stack, clients: list[Client], ledger: Ledger, args) -> dict:
    body = {"kind": args.kind, "params": args.params}
    log("stopping the workers")
    stack.compose("stop", "worker")
    sampler = Sampler(stack, ledger, args.interval).start()
    remaining = [args.jobs]
    lock = threading.Lock()

    def client_loop(n: int) -> None:
        client = clients[n]
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            status, answer = client.call("POST", "/api/jobs/", body)
            if not ledger.record(client.token, status, answer):
                with lock:
                    remaining[0] += 1  # refused: this one is submitted again
                time.sleep(float(args.retry_after) if status == 503 else 0.05)

    run_clients(len(clients), client_loop)
    log(f"{ledger.accepted_count()} jobs queued")
    passes = []

    def housekeeping(when: str) -> None:
        report = json.loads(stack.exec("web", "python", "manage.py", "housekeeping", "--json").splitlines()[-1])
        passes.append({"when": when, **report})
        log(f"housekeeping ({when}): {json.dumps(report)}")

    # The lost-job recovery looks at jobs older than JOB_RECOVERY_AFTER: wait for the oldest.
    elapsed = time.monotonic() - T0 - sampler.series[0]["t"]
    wait = float(args.recovery_after) - elapsed + 5
    if wait > 0:
        log(f"waiting {wait:.0f} s until the first jobs are older than JOB_RECOVERY_AFTER")
        time.sleep(wait)
    housekeeping("workers stopped, queue full")
    log("starting the workers")
    stack.compose("start", "worker")
    while int(stack.redis("LLEN", "jobs") or 0) > 0:
        housekeeping("draining")
        time.sleep(args.interval)
    housekeeping("drained")
    sampler.stop()
    result = drain(stack, clients, ledger, timeout=1800, recheck_after=args.hot_seconds)
    longest = max(((name, figures["seconds"]) for entry in passes for name, figures in entry.items()
                   if isinstance(figures, dict)), key=lambda item: item[1])
    result.update({
        "jobs": args.jobs,
        "longest_pass": {"name": longest[0], "seconds": longest[1]},
        "largest_reply_bytes": max(figures.get("largest_reply_bytes", 0) for entry in passes
                                   for figures in entry.values() if isinstance(figures, dict)),
        "redis_used_max": max(row["redis_used"] for row in sampler.series),
        "redis_max": sampler.series[-1]["redis_max"],
        "passes": passes,
        "series": sampler.series,
    })
    return result


def footprint(stack: Stack, clients: list[Client], ledger: Ledger, args) -> dict:
    """Bytes per job in Redis (queued, finished and hot, after the hot window) and in PostgreSQL."""
    body = {"kind": args.kind, "params": args.params}

    def redis_used() -> int:
        return int(stack.redis_info("memory")["used_memory"])

    def table_bytes() -> int:
        sql = "SELECT pg_total_relation_size('jobs_job')"
        return int(stack.exec("postgres", "sh", "-c",
                              f'psql -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "{sql}"').strip())

    def key_bytes(job_id: str) -> dict:
        usage = {name: int(stack.redis("MEMORY", "USAGE", key, db=1) or 0)
                 for name, key in (("meta", f"celery-task-meta-{job_id}"), ("record_copy", f"jobs:record:{job_id}"),
                                   ("deliveries", f"jobs:deliveries:{job_id}"))}
        return usage

    stack.compose("stop", "worker")
    time.sleep(2)
    redis0, table0 = redis_used(), table_bytes()
    client = clients[0]
    for _ in range(args.jobs):
        status, answer = client.call("POST", "/api/jobs/", body)
        ledger.record(client.token, status, answer)
    jobs = ledger.accepted_count()
    sample = ledger.accepted[client.token][-1]
    queued = {"total": (redis_used() - redis0) / jobs, **key_bytes(sample),
              "message": int(stack.redis("MEMORY", "USAGE", "jobs") or 0) / max(1, int(stack.redis("LLEN", "jobs")))}
    stack.compose("start", "worker")
    result = drain(stack, clients, ledger, timeout=1800)
    time.sleep(3)  # the archive's next pass
    hot = {"total": (redis_used() - redis0) / jobs, **key_bytes(sample)}
    postgres = (table_bytes() - table0) / jobs
    log(f"waiting {args.hot_seconds + 10} s: the hot window (JOB_HOT_SECONDS) passes")
    time.sleep(args.hot_seconds + 10)
    after = (redis_used() - redis0) / jobs
    result.update({"jobs": jobs, "redis_bytes_per_queued_job": queued, "redis_bytes_per_hot_finished_job": hot,
                   "redis_bytes_per_job_after_hot_window": after, "postgres_bytes_per_job": postgres})
    log(f"Redis bytes per job: queued {queued['total']:.0f} ({json.dumps(queued)}), finished and hot "
        f"{hot['total']:.0f}, after the hot window {after:.0f}; PostgreSQL bytes per job {postgres:.0f}")
    return result


MODES = {"soak": soak, "flood": flood, "backlog": backlog, "footprint": footprint}
DEFAULTS = {  # mode: clients, kind, params
    "soak": (8, "noop", {}),
    "flood": (12, "model_inference", {"text": "x" * 2000, "steps": 1, "step_seconds": 0}),
    "backlog": (16, "noop", {}),
    "footprint": (1, "noop", {}),
}
