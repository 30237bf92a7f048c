"""scripts/soak's modes (soak, flood, backlog, footprint): what each does is in scripts/soak's
usage text; method and figures in docs/capacity.md."""

import threading
import time
from collections import Counter

from stack import FINISHED, Client, Ledger, Sampler, Stack, log


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
        states.update(
            (job_id, mine.get(job_id, "MISSING")) for job_id in ledger.accepted.get(client.token, [])
        )
    return states


def drain(
    stack: Stack, clients: list[Client], ledger: Ledger, timeout: float, recheck_after: float = 0
) -> dict:
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
    result.update(
        {
            "final_states": dict(counts),
            "lost": sum(count for state, count in counts.items() if state != "SUCCESS"),
        }
    )
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
    result.update(
        {
            "seconds": round(args.minutes * 60),
            "jobs_per_s": round(ledger.accepted_count() / (args.minutes * 60), 1),
            "compare_after_s": args.compare_after,
            "redis_used_early": early,
            "redis_used_at_end": late,
            "redis_growth": round(late / early - 1, 3),
            "redis_used_max": max(row["redis_used"] for row in sampler.series),
            "postgres_bytes_start": sampler.series[0]["postgres_bytes"],
            "postgres_bytes_end": end["postgres_bytes"],
            "series": sampler.series,
        }
    )
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
    result.update(
        {
            "seconds": args.seconds,
            "serves_again_after_s": accepted_again,
            "redis_used_max": max(row["redis_used"] for row in sampler.series),
            "redis_max": sampler.series[-1]["redis_max"],
            "redis_rss_max": max(row["redis_rss"] for row in sampler.series),
            "series": sampler.series,
        }
    )
    return result
