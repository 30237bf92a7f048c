"""CPU time of containers read from the host's cgroups, for scripts/bench's CPU per 1,000 jobs.

A container's cgroup holds every process of it (its main process, their children, and whatever
`docker compose exec` starts in it), and the kernel keeps the cgroup's cumulative CPU time:
  cgroup v1: cpuacct.usage (nanoseconds) in the cpuacct hierarchy
             (/sys/fs/cgroup/cpuacct/<path> or /sys/fs/cgroup/cpu,cpuacct/<path>)
  cgroup v2: usage_usec in cpu.stat (microseconds), /sys/fs/cgroup/<path>/cpu.stat
The cgroup's path is the one /proc/<pid>/cgroup names for the container's main process (its PID
from `docker inspect`); where the hierarchy is mounted comes from /proc/self/mountinfo. Two
snapshots around a phase give the CPU seconds each container spent in it.

scripts/bench does the docker calls (its `docker` helper) and hands this module PIDs; the rest
is pure parsing, so tests/unit/test_bench_cpu.py covers it with no services.
"""

from dataclasses import dataclass
from pathlib import Path

V1_FILE = "cpuacct.usage"
V2_FILE = "cpu.stat"


class CgroupCpuError(Exception):
    """The CPU time of a process's cgroup could not be found or read; the message says where it
    was looked for."""


@dataclass(frozen=True)
class CgroupLine:
    """One line of /proc/<pid>/cgroup: `hierarchy-id:controller,controller:path`."""

    hierarchy: int
    controllers: tuple[str, ...]  # empty for the cgroup v2 line (`0::/path`)
    path: str


@dataclass(frozen=True)
class CgroupMount:
    """A cgroup filesystem in /proc/self/mountinfo: `root` is the cgroup path that appears at
    `mount_point` (`/` unless a subtree was mounted, as inside a container)."""

    root: str
    mount_point: str
    version: int  # 1 or 2
    controllers: tuple[str, ...]  # v1: the hierarchy's controllers (super options); v2: ()


def parse_proc_cgroup(text: str) -> list[CgroupLine]:
    lines = []
    for raw in text.splitlines():
        if not raw.strip():
            continue
        # The path may itself contain ':' (it is the last field).
        hierarchy, controllers, path = raw.split(":", 2)
        lines.append(CgroupLine(int(hierarchy), tuple(c for c in controllers.split(",") if c), path))
    return lines


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (\\040 ...)."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text: str) -> list[CgroupMount]:
    """The cgroup (v1) and cgroup2 mounts of a /proc/<pid>/mountinfo."""
    mounts = []
    for raw in text.splitlines():
        fields = raw.split()
        if "-" not in fields:
            continue
        # id parent major:minor root mount-point options [optional fields...] - fstype source super-options
        dash = fields.index("-")
        fstype = fields[dash + 1]
        super_options = fields[dash + 3] if len(fields) > dash + 3 else ""
        if fstype == "cgroup":
            controllers = tuple(o for o in super_options.split(",") if o not in ("rw", "ro"))
            mounts.append(CgroupMount(_unescape(fields[3]), _unescape(fields[4]), 1, controllers))
        elif fstype == "cgroup2":
            mounts.append(CgroupMount(_unescape(fields[3]), _unescape(fields[4]), 2, ()))
    return mounts


def _under_mount(mount: CgroupMount, cgroup_path: str) -> Path | None:
    """The directory of cgroup_path in this mount, or None when the mount does not show it."""
    root = mount.root.rstrip("/")
    if cgroup_path != root and not cgroup_path.startswith(root + "/"):
        return None
    return Path(mount.mount_point, cgroup_path[len(root) :].lstrip("/"))


def usage_file(proc_cgroup: str, mountinfo: str) -> Path:
    """The file holding the cumulative CPU time of the cgroup that proc_cgroup (a
    /proc/<pid>/cgroup) names, given the mounts of mountinfo. cgroup v1's cpuacct hierarchy
    first: on a hybrid host (v1 controllers plus an empty v2 tree at /sys/fs/cgroup/unified),
    the process's v2 line names a cgroup that does not hold the container, often the root."""
    lines = parse_proc_cgroup(proc_cgroup)
    mounts = parse_mountinfo(mountinfo)
    looked = []
    v1 = next((line for line in lines if "cpuacct" in line.controllers), None)
    if v1 is not None:
        for mount in mounts:
            if mount.version == 1 and "cpuacct" in mount.controllers:
                directory = _under_mount(mount, v1.path)
                if directory is not None:
                    return directory / V1_FILE
        looked.append(f"a cgroup v1 mount with cpuacct showing {v1.path} (for {V1_FILE})")
    else:
        looked.append("a cpuacct line in /proc/<pid>/cgroup (cgroup v1)")
    v2 = next((line for line in lines if line.hierarchy == 0 and not line.controllers), None)
    if v2 is not None and not any(line.controllers for line in lines):
        for mount in mounts:
            if mount.version == 2:
                directory = _under_mount(mount, v2.path)
                if directory is not None:
                    return directory / V2_FILE
        looked.append(f"a cgroup2 mount showing {v2.path} (for {V2_FILE})")
    else:
        looked.append("a unified-only `0::<path>` line in /proc/<pid>/cgroup (cgroup v2)")
    raise CgroupCpuError("no cgroup CPU time found: looked for " + "; and for ".join(looked))


def parse_cpuacct_usage(text: str) -> float:
    """cgroup v1 cpuacct.usage: one integer, nanoseconds. Returns seconds."""
    return int(text.strip()) / 1e9


def parse_cpu_stat(text: str) -> float:
    """cgroup v2 cpu.stat: `key value` lines, usage_usec in microseconds. Returns seconds."""
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise CgroupCpuError(f"no usage_usec line in cpu.stat: {text[:200]!r}")


def read_seconds(path: Path) -> float:
    """The cumulative CPU seconds in a file usage_file() returned."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise CgroupCpuError(f"cannot read {path}: {exc}") from exc
    return parse_cpuacct_usage(text) if path.name == V1_FILE else parse_cpu_stat(text)


def usage_file_of_pid(pid: int, proc: Path = Path("/proc")) -> Path:
    """usage_file() for a host PID (a container's main process, from docker inspect)."""
    try:
        proc_cgroup = (proc / str(pid) / "cgroup").read_text()
        mountinfo = (proc / "self" / "mountinfo").read_text()
    except OSError as exc:
        raise CgroupCpuError(f"cannot read the cgroup of PID {pid}: {exc}") from exc
    path = usage_file(proc_cgroup, mountinfo)
    if not path.exists():
        raise CgroupCpuError(f"PID {pid}'s cgroup CPU time is not at {path}")
    return path


def ms_per_thousand(cpu_seconds: float, count: int) -> float:
    """CPU milliseconds per 1,000 of count things (jobs, submissions, requests)."""
    if count <= 0:
        raise ValueError(f"CPU per 1,000 of {count} things")
    return cpu_seconds * 1000 / count * 1000


def spent(before: dict[str, tuple[str, float]], after: dict[str, float]) -> dict[str, float]:
    """CPU seconds per service between two snapshots: before maps each container to (its service,
    its CPU seconds), after each container to its CPU seconds; replicas of a service are summed."""
    by_service: dict[str, float] = {}
    for container, (service, start) in before.items():
        if container not in after:
            raise CgroupCpuError(f"container {container} went away during the measured phase")
        end = after[container]
        if end < start:
            # A restarted container gets a fresh cgroup (same path, counter from zero).
            raise CgroupCpuError(
                f"the CPU time of container {container} went back ({start:.3f} s -> "
                f"{end:.3f} s): it restarted during the measured phase"
            )
        by_service[service] = by_service.get(service, 0.0) + end - start
    return by_service


def summed(parts: list[dict[str, float]]) -> dict[str, float]:
    """service -> CPU seconds over several measured phases (the halves of an alternation)."""
    total: dict[str, float] = {}
    for part in parts:
        for service, seconds in part.items():
            total[service] = total.get(service, 0.0) + seconds
    return total


def per_thousand(cpu_seconds: dict[str, float], count: int) -> dict[str, float]:
    """service -> CPU ms per 1,000 of count things, and "total" over every service."""
    figures = {service: ms_per_thousand(seconds, count) for service, seconds in cpu_seconds.items()}
    figures["total"] = ms_per_thousand(sum(cpu_seconds.values()), count)
    return figures
