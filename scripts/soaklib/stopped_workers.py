"""scripts/soak's modes that stop the workers: backlog (a queue of N jobs, housekeeping passes
while it waits and drains) and footprint (Redis and PostgreSQL bytes per job)."""

import json
import threading
import time

from modes import drain, run_clients
from stack import T0, Client, Ledger, Sampler, Stack, log


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
        report = json.loads(
            stack.exec("web", "python", "manage.py", "housekeeping", "--json").splitlines()[-1]
        )
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
    longest = max(
        (
            (name, figures["seconds"])
            for entry in passes
            for name, figures in entry.items()
            if isinstance(figures, dict)
        ),
        key=lambda item: item[1],
    )
    result.update(
        {
            "jobs": args.jobs,
            "longest_pass": {"name": longest[0], "seconds": longest[1]},
            "largest_reply_bytes": max(
                figures.get("largest_reply_bytes", 0)
                for entry in passes
                for figures in entry.values()
                if isinstance(figures, dict)
            ),
            "redis_used_max": max(row["redis_used"] for row in sampler.series),
            "redis_max": sampler.series[-1]["redis_max"],
            "passes": passes,
            "series": sampler.series,
        }
    )
    return result


def footprint(stack: Stack, clients: list[Client], ledger: Ledger, args) -> dict:
    """Bytes per job in Redis (queued, finished and hot, after the hot window) and in PostgreSQL."""
    body = {"kind": args.kind, "params": args.params}

    def redis_used() -> int:
        return int(stack.redis_info("memory")["used_memory"])

    def table_bytes() -> int:
        sql = "SELECT pg_total_relation_size('jobs_job')"
        return int(
            stack.exec(
                "postgres",
                "sh",
                "-c",
                f'psql -h 127.0.0.1 -U "$POSTGRES_USER" -d "$POSTGRES_DB" -tAc "{sql}"',
            ).strip()
        )

    def key_bytes(job_id: str) -> dict:
        usage = {
            name: int(stack.redis("MEMORY", "USAGE", key, db=1) or 0)
            for name, key in (
                ("meta", f"celery-task-meta-{job_id}"),
                ("record_copy", f"jobs:record:{job_id}"),
                ("deliveries", f"jobs:deliveries:{job_id}"),
            )
        }
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
    queued = {
        "total": (redis_used() - redis0) / jobs,
        **key_bytes(sample),
        "message": int(stack.redis("MEMORY", "USAGE", "jobs") or 0)
        / max(1, int(stack.redis("LLEN", "jobs"))),
    }
    stack.compose("start", "worker")
    result = drain(stack, clients, ledger, timeout=1800)
    time.sleep(3)  # the archive's next pass
    hot = {"total": (redis_used() - redis0) / jobs, **key_bytes(sample)}
    postgres = (table_bytes() - table0) / jobs
    log(f"waiting {args.hot_seconds + 10} s: the hot window (JOB_HOT_SECONDS) passes")
    time.sleep(args.hot_seconds + 10)
    after = (redis_used() - redis0) / jobs
    result.update(
        {
            "jobs": jobs,
            "redis_bytes_per_queued_job": queued,
            "redis_bytes_per_hot_finished_job": hot,
            "redis_bytes_per_job_after_hot_window": after,
            "postgres_bytes_per_job": postgres,
        }
    )
    log(
        f"Redis bytes per job: queued {queued['total']:.0f} ({json.dumps(queued)}), finished and hot "
        f"{hot['total']:.0f}, after the hot window {after:.0f}; PostgreSQL bytes per job {postgres:.0f}"
    )
    return result
