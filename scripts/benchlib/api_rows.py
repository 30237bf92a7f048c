"""Rows 1 to 6 of scripts/bench, measured on one stack in one pass (they share its warm-up, and
row 6 measures rows 1-3 of ours in alternation with the peer's)."""

import time

from abba import alternated, cpu_ms_per_1000, merged_e2e, merged_wrk
from bench_stack import Stack, StackCpu, add_cpu_per_thousand, paused, with_cpu
from common import NOOP_BODY, PEER_API, BenchError, log
from load import Client, api_end_to_end, api_latency, wrk
from report import image_sizes, memory


def run(stack: Stack, env: dict, base_url: str, port: int, args) -> dict:
    wanted, m = args.measured, {"extra": {}}
    load = {"duration": args.duration, "connections": args.connections, "threads": args.threads}
    token = stack.in_stack("token")["token"]
    client = Client(port, token)
    meter = StackCpu(stack)
    if wanted & {1, 2}:
        meter.snapshot(settle=False)  # fails now, not minutes in, where no CPU time can be read
        m["extra"]["CPU lines"] = (
            "are the cgroup CPU time of every container of the project (not "
            "wrk's nor docker-proxy's: host processes); raw Celery's client runs "
            "in web (docker compose exec); their ratio is the baseline's / ours "
            "(> 1: ours cheaper)"
        )
    peer = None
    if 6 in wanted:
        answer = stack.in_stack("peer-token")
        if answer.get("absent"):
            m["extra"]["row 6"] = "not measured: the stack runs without BENCH_PEER_APP=1"
        else:
            peer = Client(port, answer["token"])
    log("warming up")
    status, body = client.call("GET", "/api/whoami/")
    if status != 200:
        raise BenchError(f"GET /api/whoami/ answered {status}: {body}")
    for path in ("/", "/api/whoami/") * 10:
        client.call("GET", path)
    if not args.short:
        wrk(
            base_url + "/api/whoami/",
            token=token,
            duration=2,
            connections=args.connections,
            threads=args.threads,
        )

    if 4 in wanted:
        log(f"row 4: {args.samples} sequential no-op jobs through the API")
        m["latency_api"] = api_latency(client, args.samples)
    if 3 in wanted:
        log("row 3: status reads")
        # A job just finished: the state a poller reads last, while Redis still holds it
        # (JOB_HOT_SECONDS; the reads take well under a minute). Submitted here, not earlier,
        # so that the rows before do not age it out of that window.
        job_id = client.submit()
        if peer is not None:
            peer_job_id = peer.submit(PEER_API)
            for _ in range(10):
                peer.state(peer_job_id, PEER_API)
        while client.state(job_id) != "SUCCESS":
            time.sleep(0.01)
        if peer is None:
            m["status"] = wrk(f"{base_url}/api/jobs/{job_id}/", token=token, **load)
        else:
            log("row 6: status reads, ours and the peer's in alternation (ABBA)")
            while peer.state(peer_job_id, PEER_API) != "SUCCESS":
                time.sleep(0.01)
            half = {**load, "duration": max(1, args.duration // 2)}
            m["status"], m["peer_status"] = alternated(
                lambda: with_cpu(
                    meter,
                    lambda: wrk(f"{base_url}/api/jobs/{job_id}/", token=token, **half),
                    with_leftovers=False,
                ),
                lambda: with_cpu(
                    meter,
                    lambda: wrk(f"{base_url}{PEER_API}{peer_job_id}/", token=peer.token, **half),
                    with_leftovers=False,
                ),
                merged_wrk,
                m["extra"],
                "row 6 status reads/s",
                {"row 6 CPU ms per 1,000 status reads ABBA": lambda part: cpu_ms_per_1000(part, "ok")},
            )
    if 1 in wanted or 3 in wanted:
        log("rows 1 and 3: bare views")

        def whoami() -> dict:
            return wrk(base_url + "/api/whoami/", token=token, **load)

        # Row 1 sets its CPU per request beside a submission's.
        m["whoami"] = with_cpu(meter, whoami, with_leftovers=False) if 1 in wanted else whoami()
    if 1 in wanted:
        m["index"] = wrk(base_url + "/", token=None, **load)
    if 2 in wanted:
        log(f"row 2: {args.jobs} no-op jobs end to end through the API")
        if peer is None:
            m["e2e"] = with_cpu(
                meter,
                lambda: api_end_to_end(client, base_url, token, args.jobs, args.connections, args.threads),
                with_leftovers=True,
            )
        else:
            log(f"row 6: {args.jobs} jobs end to end on each side, ours and the peer's in alternation (ABBA)")
            half = max(args.threads, args.jobs // 2)
            m["e2e"], m["peer_e2e"] = alternated(
                lambda: with_cpu(
                    meter,
                    lambda: api_end_to_end(client, base_url, token, half, args.connections, args.threads),
                    with_leftovers=True,
                ),
                lambda: with_cpu(
                    meter,
                    lambda: api_end_to_end(
                        peer, base_url, peer.token, half, args.connections, args.threads, api=PEER_API
                    ),
                    with_leftovers=True,
                ),
                merged_e2e,
                m["extra"],
                "row 6 end to end jobs/s",
                {"row 6 end to end CPU ms per 1,000 jobs ABBA": cpu_ms_per_1000},
            )
            m["extra"]["row 6 peer submissions alone"] = f"{m['peer_e2e']['submit_per_s']:.0f}/s"
        m["extra"]["row 2 submissions alone"] = f"{m['e2e']['submit_per_s']:.0f}/s"
    if 1 in wanted:
        log("row 1: job submissions while the worker runs them")
        m["submit_busy"] = wrk(base_url + "/api/jobs/", token=token, method="POST", body=NOOP_BODY, **load)
        log("row 1: job submissions with the workers paused (the web tier alone, like the baselines)")
        with paused(stack, "worker"):
            if peer is None:
                m["submit"] = with_cpu(
                    meter,
                    lambda: wrk(base_url + "/api/jobs/", token=token, method="POST", body=NOOP_BODY, **load),
                    with_leftovers=False,
                )
            else:
                log("row 6: submissions, ours and the peer's in alternation (ABBA)")
                half = {**load, "duration": max(1, args.duration // 2)}
                m["submit"], m["peer_submit"] = alternated(
                    lambda: with_cpu(
                        meter,
                        lambda: wrk(
                            base_url + "/api/jobs/", token=token, method="POST", body=NOOP_BODY, **half
                        ),
                        with_leftovers=False,
                    ),
                    lambda: with_cpu(
                        meter,
                        lambda: wrk(
                            base_url + PEER_API, token=peer.token, method="POST", body=NOOP_BODY, **half
                        ),
                        with_leftovers=False,
                    ),
                    merged_wrk,
                    m["extra"],
                    "row 6 submissions/s",
                    {"row 6 CPU ms per 1,000 submissions ABBA": lambda part: cpu_ms_per_1000(part, "ok")},
                )
    if 2 in wanted or 4 in wanted:
        log("rows 2 and 4: raw Celery inside the stack (after the queue drained)")
        # in_stack.py marks the N tasks' phase (sent, run, read back): its CPU time, not that of the
        # script's start, the drain before or the round trips after.
        marks: dict = {}

        def on_mark(name: str) -> None:
            if name == "start":
                marks["before"] = meter.snapshot()
            elif name == "end":  # the N jobs are read back: their leftovers are theirs
                marks["cpu_s"] = meter.spent(marks["before"], settle=True)

        m["raw"] = stack.in_stack(
            "raw",
            str(args.jobs),
            str(args.samples),
            "300",
            timeout=900,
            on_mark=on_mark if 2 in wanted else None,
        )
        if 2 in wanted:
            if "cpu_s" not in marks:
                raise BenchError("in_stack.py raw marked no start and end of its N tasks")
            m["raw"]["cpu_s"] = marks["cpu_s"]
        m["extra"]["queue drained in"] = f"{m['raw']['drain_seconds']:.1f} s"
        m["extra"]["raw enqueue alone"] = f"{m['raw']['enqueue_per_s']:.0f}/s"
    if 5 in wanted:
        log("row 5: the stack at rest")
        time.sleep(2)
        m["memory"] = memory(stack)
        m["image"] = image_sizes(stack, env)
    add_cpu_per_thousand(m)
    return m
