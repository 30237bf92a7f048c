"""The stack scripts/bench measures: its compose project (and scripts run inside web), and the
CPU time its containers spend around a measured phase."""

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import cgroup_cpu  # noqa: E402 - CPU time of the containers, rows 1, 2, 6 and 9
from common import IMAGE_VARS, LIB, OFFLINE_ENV, ROOT, WARNINGS, BenchError
from composelib import ComposeProject, docker


class Stack(ComposeProject):
    def in_stack(self, *args: str, script: str = "in_stack.py", timeout: float = 600, on_mark=None) -> dict:
        """Run scripts/benchlib/<script> (in_stack.py, pools_in_stack.py) inside the web container;
        its last line is JSON. With on_mark, each `MARK <name>` line the script prints calls
        on_mark(name) while the script waits for it (in_stack.py's mark())."""
        if on_mark is None:
            result = self.compose(
                "exec", "-T", "web", "python", "-", *args, input=(LIB / script).read_text(), timeout=timeout
            )
            stdout, stderr = result.stdout, result.stderr
        else:
            stdout, stderr = self.exec_marked(script, args, on_mark, timeout)
        lines = [line for line in stdout.splitlines() if line.startswith("{")]
        if not lines:
            raise BenchError(f"{script} {args[0]} printed no result:\n{stdout[-2000:]}\n{stderr[-2000:]}")
        answer = json.loads(lines[-1])
        if "error" in answer:
            raise BenchError(f"{script} {args[0]}: {answer}")
        return answer

    def exec_marked(self, script: str, args: tuple[str, ...], on_mark, timeout: float) -> tuple[str, str]:
        """in_stack() with a handshake: the script goes in with `python -c` so that stdin stays
        free; each `MARK <name>` line calls on_mark(name), then a newline on stdin lets the script
        go on. Returns the other stdout lines and stderr."""
        exec_args = ("exec", "-T", "web", "python", "-c", (LIB / script).read_text(), *args)
        with tempfile.TemporaryFile(mode="w+") as stderr:
            proc = subprocess.Popen(
                self.command(*exec_args),
                cwd=ROOT,
                env=self.env,
                text=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
            # Reading stdout blocks; the timer ends a script that hangs.
            timer = threading.Timer(timeout, proc.kill)
            timer.start()
            lines = []
            try:
                for line in proc.stdout:
                    if line.startswith("MARK "):
                        on_mark(line.split()[1])
                        proc.stdin.write("\n")
                        proc.stdin.flush()
                    else:
                        lines.append(line)
                returncode = proc.wait()
            finally:
                timer.cancel()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            stderr.seek(0)
            errors = stderr.read()
        if returncode != 0:
            raise self.failed(("exec", "web", script), returncode, errors)
        return "".join(lines), errors

    def container_ids(self) -> list[str]:
        return self.compose("ps", "-q").stdout.split()


@contextlib.contextmanager
def paused(stack: Stack, service: str):
    """Freeze a service's containers (docker compose pause) for the length of the block."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.getsignal(sig) for sig in signals}

    def interrupted(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    for sig in signals:
        signal.signal(sig, interrupted)  # unpause even when interrupted
    stack.compose("pause", service)
    try:
        yield
    finally:
        stack.compose("unpause", service, check=False)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# The order of the per-container lines; services not named here follow, alphabetically.
SERVICE_ORDER = ("web", "worker", "redis", "postgres", "beat", "flower")


class StackCpu:
    """CPU time of every running container of a compose project, from the host's cgroups
    (scripts/benchlib/cgroup_cpu.py): snapshot() before a measured phase, spent() after it.

    Both can first wait until the stack is at rest (settle), so that work left over from what
    ran before (requests still in flight when wrk stopped, Flower's and the worker's share of
    jobs just finished) is not charged to the next phase: in row 6's alternation that would be
    the other side's (docs/benchmarks.md, "CPU per 1,000 jobs")."""

    QUIET_CPUS = 0.1  # below this (all containers) the stack is at rest; healthcheck spikes pass
    QUIET_WINDOW_S = 0.25  # over this long
    SETTLE_TIMEOUT_S = 15  # then measure anyway, with a warning

    def __init__(self, stack: Stack):
        self.stack = stack

    def containers(self) -> dict[str, tuple[str, Path]]:
        """container name -> (service, the file of its CPU time)."""
        ids = self.stack.container_ids()
        if not ids:
            raise BenchError(f"project {self.stack.project} has no running container")
        out = docker(
            "inspect",
            "-f",
            '{{.Name}}\t{{.State.Pid}}\t{{index .Config.Labels "com.docker.compose.service"}}',
            *ids,
        )
        found = {}
        try:
            for line in out.splitlines():
                name, pid, service = line.split("\t")
                if int(pid) != 0:  # 0: stopped since `compose ps` listed it
                    found[name.lstrip("/")] = (service, cgroup_cpu.usage_file_of_pid(int(pid)))
        except cgroup_cpu.CgroupCpuError as exc:
            raise BenchError(f"CPU time of the containers of {self.stack.project}: {exc}") from exc
        return found

    def read(self, containers: dict[str, tuple[str, Path]]) -> dict[str, tuple[str, Path, float]]:
        """container name -> (service, file, CPU seconds so far); a container gone is left out."""
        seconds = {}
        for name, (service, path) in containers.items():
            with contextlib.suppress(cgroup_cpu.CgroupCpuError):  # gone: cgroup_cpu.spent says so
                seconds[name] = (service, path, cgroup_cpu.read_seconds(path))
        return seconds

    def settled(self, containers: dict[str, tuple[str, Path]]) -> dict[str, tuple[str, Path, float]]:
        """read(), once the containers together used less than QUIET_CPUS over QUIET_WINDOW_S."""
        deadline = time.monotonic() + self.SETTLE_TIMEOUT_S
        last, last_at = self.read(containers), time.monotonic()
        while True:
            time.sleep(self.QUIET_WINDOW_S)
            now, now_at = self.read(containers), time.monotonic()
            used = sum(now[name][2] - last[name][2] for name in now if name in last)
            if used < self.QUIET_CPUS * (now_at - last_at):
                return now
            if now_at > deadline:
                WARNINGS.append(
                    f"CPU time: the stack still used {used / (now_at - last_at):.2f} CPUs "
                    f"{self.SETTLE_TIMEOUT_S} s after a phase; measured anyway"
                )
                return now
            last, last_at = now, now_at

    def snapshot(self, settle: bool = True) -> dict[str, tuple[str, Path, float]]:
        """container name -> (service, file, CPU seconds so far), at rest unless settle=False."""
        containers = self.containers()
        seen = self.settled(containers) if settle else self.read(containers)
        if len(seen) < len(containers):
            raise BenchError(
                f"CPU time of {', '.join(sorted(set(containers) - set(seen)))}: its cgroup went away"
            )
        return seen

    def spent(self, before: dict[str, tuple[str, Path, float]], settle: bool = False) -> dict[str, float]:
        """service -> CPU seconds since the snapshot `before` (with settle: until the stack rests)."""
        containers = {name: (service, path) for name, (service, path, _) in before.items()}
        after = self.settled(containers) if settle else self.read(containers)
        try:
            return cgroup_cpu.spent(
                {name: (service, sec) for name, (service, _, sec) in before.items()},
                {name: sec for name, (_, _, sec) in after.items()},
            )
        except cgroup_cpu.CgroupCpuError as exc:
            raise BenchError(f"CPU time of the containers of {self.stack.project}: {exc}") from exc


def with_cpu(meter: StackCpu, measure, *, with_leftovers: bool):
    """measure() between two snapshots of the stack's CPU time, the first at rest: its result (a
    dict) gains "cpu_s", service -> CPU seconds spent while it ran. with_leftovers: the second
    snapshot too waits until the stack rests (what the phase's jobs still cost after it returned,
    for a phase whose count covers them: N jobs end to end); wrk's phases count only the requests
    answered before it stopped, so the ones still in flight are left out."""
    before = meter.snapshot()
    result = measure()
    result["cpu_s"] = meter.spent(before, settle=with_leftovers)
    return result


def add_cpu_per_thousand(m: dict) -> None:
    """Each measured phase with CPU time gains "cpu_ms_per_1000" (service -> CPU ms per 1,000 of
    its jobs, submissions or requests, and "total")."""
    for key, count in (
        ("e2e", "n"),
        ("peer_e2e", "n"),
        ("raw", "n"),
        ("submit", "ok"),
        ("peer_submit", "ok"),
        ("status", "ok"),
        ("peer_status", "ok"),
        ("whoami", "ok"),
    ):
        if key in m and "cpu_s" in m[key]:
            m[key]["cpu_ms_per_1000"] = cgroup_cpu.per_thousand(m[key]["cpu_s"], m[key][count])


def compose_env(args) -> dict:
    env = dict(os.environ)
    # Right after .ci/provision on the offline machine: the stand-in images.
    if OFFLINE_ENV.exists() and not any(env.get(name) for name in IMAGE_VARS):
        for line in OFFLINE_ENV.read_text().splitlines():
            name, sep, value = line.strip().partition("=")
            if sep and not name.startswith("#"):
                env[name.strip()] = value.strip().strip('"').strip("'")
    env.setdefault("APP_IMAGE", f"{args.project}-app:latest")
    env.setdefault("BENCH_PEER_APP", "1")  # row 6's peer app, in a stack this run brings up
    env["WEB_PORT"] = str(args.port or 58000)
    env["FLOWER_PORT"] = str(args.flower_port)
    return env
