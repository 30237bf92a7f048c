"""Rows 7 and 8 of scripts/bench: Redis vs RabbitMQ end to end, and the worker pools.

  7. N no-op jobs end to end through the API on a second compose project running the
     RabbitMQ overlay (docker-compose.yml + docker-compose.rabbitmq.yml, the same app image),
     vs the same N on the bench's own Redis stack, measured alternately in the same run
     (best of --broker-rounds on each side); ratio RabbitMQ / Redis.
  8. the four worker pools at the same concurrency on a CPU-bound kind (sum_number) and on the
     I/O-bound kind (wait_io): M jobs sent at once to a worker container of that pool, started
     from the same image and service definition (`docker compose run worker celery ... worker
     --pool P --concurrency C`) on a queue of its own, timed until all M are SUCCESS; jobs per
     minute (the table prints whole numbers), ratio vs prefork. One more line: gevent at a high
     concurrency on the I/O-bound jobs (what gevent is for).

scripts/bench imports this module (scripts/benchlib is put on sys.path) and calls
add_arguments, settle_args, run and build_rows; `bench` below is the scripts/bench module
itself (its Stack, Client, api_end_to_end, BenchError, log, docker).
--short measures row 8 with a few small jobs and skips row 7 (it needs a second stack, about a
minute to start): the table says so. `--short --rows 7` measures it small.
"""

import contextlib
import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

LIB = Path(__file__).resolve().parent
ROOT = LIB.parent.parent
RABBIT_FILES = ("docker-compose.yml", "docker-compose.rabbitmq.yml")
ROWS = {7, 8}
POOLS = ("prefork", "threads", "gevent", "solo")

# name: (full, short)
MODES = {
    "broker_jobs": (2000, 100),  # row 7: no-op jobs on each broker, each round
    "broker_rounds": (2, 1),  # row 7: rounds (Redis, RabbitMQ, Redis, ...); best of each side
    "pool_concurrency": (4, 2),  # row 8: the concurrency every pool runs at (solo: 1)
    "pool_high": (50, 20),  # row 8: gevent's extra high-concurrency line
}
# Row 8's jobs, full and short: (kind, params, how many). sum_number over 5 x 10^7 numbers is
# about 1 s of one CPU holding the GIL (on an idle core here); wait_io waits without using the
# CPU. Jobs of a second or so, not shorter: a threads or gevent worker whose slots are all busy
# takes its next job up to ~1 s after one frees (docs/benchmarks.md, row 8), which would swamp
# jobs of a few milliseconds.
CPU_JOB = {0: ("sum_number", {"x": 1, "y": 50_000_000}, 16), 1: ("sum_number", {"x": 1, "y": 4_000_000}, 4)}
IO_JOB = {0: ("wait_io", {"seconds": 1.0, "steps": 1}, 24), 1: ("wait_io", {"seconds": 0.5, "steps": 1}, 4)}


def add_arguments(parser) -> None:
    group = parser.add_argument_group("rows 7 (Redis vs RabbitMQ) and 8 (worker pools)")
    group.add_argument(
        "--rabbit-project",
        help="row 7: the RabbitMQ overlay's compose project "
        "(default <project>-rabbit; brought up if not running, removed again after)",
    )
    group.add_argument("--rabbit-port", type=int, help="row 7: its web port (default web's + 1)")
    group.add_argument("--broker-jobs", type=int, help="row 7: jobs on each broker (full 2000, short 100)")
    group.add_argument(
        "--broker-rounds", type=int, help="row 7: measurements on each broker (full 2, short 1)"
    )
    group.add_argument(
        "--pool-jobs",
        type=int,
        help="row 8: jobs of each kind per pool (full 16 CPU-bound, 24 I/O-bound; short 4 each)",
    )
    group.add_argument(
        "--pool-concurrency", type=int, help="row 8: concurrency of every pool (full 4, short 2)"
    )
    group.add_argument("--pool-high", type=int, help="row 8: gevent's high concurrency (full 50, short 20)")


def settle_args(args, rows_given: bool) -> None:
    """Fill in the mode's defaults; --short drops row 7 unless --rows asked for it."""
    mode = 1 if args.short else 0
    for name, values in MODES.items():
        if getattr(args, name) is None:
            setattr(args, name, values[mode])
    args.skipped = {}
    if args.short and not rows_given and 7 in args.wanted:
        args.wanted.discard(7)
        args.skipped[7] = (
            "skipped in --short: needs a second stack (the RabbitMQ overlay); --rows 7 measures it"
        )


# --- the RabbitMQ project -------------------------------------------------------------------------


def overlay_stack(bench, project: str, env: dict):
    return bench.Stack(project, env, files=RABBIT_FILES)


def app_image(bench, stack) -> str:
    web = stack.compose("ps", "-q", "web").stdout.split()[0]
    return bench.docker("inspect", "-f", "{{.Config.Image}}", web).strip()


def warm_up(bench, client) -> None:
    for _ in range(5):
        job_id = client.submit()
        deadline = time.monotonic() + 120
        while client.state(job_id) != "SUCCESS":
            if time.monotonic() > deadline:
                raise bench.BenchError(f"warm-up job {job_id} not SUCCESS within 120 s")
            time.sleep(0.01)


def broker_row(bench, stack, env: dict, port: int, args) -> dict:
    project = args.rabbit_project or f"{args.project}-rabbit"
    rabbit_port = args.rabbit_port or port + 1
    rabbit_env = {
        **env,
        "APP_IMAGE": app_image(bench, stack),
        "WEB_PORT": str(rabbit_port),
        "FLOWER_PORT": str(args.flower_port + 1),
        "RABBITMQ_MANAGEMENT_PORT": env.get("BENCH_RABBITMQ_MANAGEMENT_PORT", "55672"),
    }
    rabbit = overlay_stack(bench, project, rabbit_env)
    started = False
    try:
        if not {"web", "worker", "rabbitmq", "redis", "postgres"} <= rabbit.running_services():
            bench.log(
                f"row 7: bringing up project {project} (RabbitMQ overlay, image "
                f"{rabbit_env['APP_IMAGE']}, web on 127.0.0.1:{rabbit_port})"
            )
            rabbit.compose("up", "-d", "--wait", timeout=900)
            started = True
        else:
            rabbit_port = rabbit.published_port("web", 8000) or rabbit_port
        sides = {"redis": (stack, port), "rabbitmq": (rabbit, rabbit_port)}
        clients = {}
        for name, (side, side_port) in sides.items():
            token = side.in_stack("token")["token"]
            clients[name] = (bench.Client(side_port, token), token, f"http://127.0.0.1:{side_port}")
            warm_up(bench, clients[name][0])
        stack.in_stack("drain", "300")
        results = {"redis": [], "rabbitmq": []}
        for round_ in range(1, args.broker_rounds + 1):
            for name in ("redis", "rabbitmq"):
                client, token, base_url = clients[name]
                bench.log(
                    f"row 7: {args.broker_jobs} no-op jobs end to end on {name} "
                    f"(round {round_} of {args.broker_rounds})"
                )
                results[name].append(
                    bench.api_end_to_end(
                        client, base_url, token, args.broker_jobs, args.connections, args.threads
                    )
                )
        return {
            "project": project,
            **{name: max(runs, key=lambda r: r["per_s"]) for name, runs in results.items()},
            "runs": {name: [round(r["per_s"], 1) for r in runs] for name, runs in results.items()},
        }
    finally:
        if started:
            bench.log(f"row 7: removing project {project}")
            rabbit.compose("down", "-v", "--remove-orphans", check=False, timeout=300)


# --- the pools --------------------------------------------------------------------------------


@contextlib.contextmanager
def pool_worker(bench, stack, pool: str, concurrency: int, queue: str):
    """A worker container of this pool on its own queue: the worker service's definition
    (image, environment, limits), started with `docker compose run`, removed afterwards."""
    name = f"{stack.project}-bench-{pool}-{concurrency}-{uuid.uuid4().hex[:6]}"
    stack.compose(
        "run",
        "-d",
        "--no-deps",
        "--name",
        name,
        "-e",
        f"CELERY_WORKER_POOL={pool}",
        "-e",
        f"CELERY_WORKER_CONCURRENCY={concurrency}",
        "worker",
        "celery",
        "--app=config",
        "worker",
        f"--queues={queue}",
        f"--pool={pool}",
        f"--concurrency={concurrency}",
        f"--hostname=bench-{pool}-{concurrency}@%h",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=INFO",
        timeout=300,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=60)
            if re.search(r"\bready\.", logs.stdout + logs.stderr):
                break
            state = bench.docker("inspect", "-f", "{{.State.Status}}", name).strip()
            if state != "running" or time.monotonic() > deadline:
                raise bench.BenchError(
                    f"the {pool} worker did not get ready ({state}):\n{(logs.stdout + logs.stderr)[-3000:]}"
                )
            time.sleep(0.5)
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)


def container_mb(bench, name: str) -> float | None:
    out = bench.docker("stats", "--no-stream", "--format", "{{.MemUsage}}", name)
    match = re.match(r"\s*([\d.]+)\s*([A-Za-z]+)", out)
    return float(match.group(1)) * bench.UNITS[match.group(2)] / bench.MB if match else None


def pool_rows(bench, stack, args) -> dict:
    mode = 1 if args.short else 0
    c, high = args.pool_concurrency, args.pool_high
    both = [CPU_JOB[mode], IO_JOB[mode]]
    configs = [(pool, 1 if pool == "solo" else c, both) for pool in POOLS] + [("gevent", high, both[1:])]
    stack.in_stack("drain", "300")
    results, queues, load = [], [], [os.getloadavg()[0]]
    try:
        for pool, concurrency, kinds in configs:
            queue = f"bench-pool-{pool}-{concurrency}"
            queues.append(queue)
            bench.log(f"row 8: a {pool} worker, concurrency {concurrency}")
            with pool_worker(bench, stack, pool, concurrency, queue) as name:
                for kind, params, n in kinds:
                    n = args.pool_jobs or n
                    bench.log(f"row 8: {n} {kind} jobs on {pool} x {concurrency}")
                    run = stack.in_stack(
                        "run",
                        queue,
                        kind,
                        str(n),
                        json.dumps(params),
                        str(2 * concurrency),
                        "600",
                        script="pools_in_stack.py",
                        timeout=700,
                    )
                    results.append({"pool": pool, "concurrency": concurrency, **run})
                results[-1]["memory_mb"] = container_mb(bench, name)
            load.append(os.getloadavg()[0])
    finally:
        if queues:
            stack.in_stack("cleanup", *queues, script="pools_in_stack.py")
    return {"runs": results, "load": load}


# --- scripts/bench's entry points -------------------------------------------------------------


def run(bench, stack, env: dict, port: int, args) -> dict:
    m = {}
    if 7 in args.wanted:
        m["brokers"] = broker_row(bench, stack, env, port, args)
    if 8 in args.wanted:
        m["pools"] = pool_rows(bench, stack, args)
    return m
