"""unit: no services. The CPU time per 1,000 jobs of scripts/bench: finding a container's cgroup CPU
time (scripts/benchlib/cgroup_cpu.py, cgroup v1 and v2), the arithmetic, and the table's lines."""

import types
from pathlib import Path

import pytest

from scripts.benchlib import cgroup_cpu
from tests.support.scripts import load_script

CONTAINER = "/docker/5e4cf2bab0c614a79c6bf1087b2fd5b4b8e9312492228a8423cf21a209706d6f"

# /proc/<pid>/cgroup of a container's main process on this project's CI machine (Docker 20.10,
# cgroupfs driver, hybrid: v1 controllers, cpu and cpuacct as separate hierarchies, plus the
# unified tree).
HYBRID_SEPARATE = "\n".join(
    [
        f"9:name=systemd:{CONTAINER}",
        f"4:memory:{CONTAINER}",
        f"2:cpuacct:{CONTAINER}",
        f"1:cpu:{CONTAINER}",
        f"0::{CONTAINER}",
        "",
    ]
)
# ...and that machine's /proc/self/mountinfo (its cgroup lines and one other).
HYBRID_MOUNTINFO = "\n".join(
    [
        "23 1 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw",
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755",
        "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu",
        "33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct",
        "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory",
        "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd",
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw",
    ]
)
# The common v1 layout: cpu and cpuacct co-mounted (systemd's /sys/fs/cgroup/cpu,cpuacct).
COMOUNTED = f"12:cpu,cpuacct:{CONTAINER}\n1:name=systemd:{CONTAINER}\n"
COMOUNTED_MOUNTINFO = (
    "28 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime "
    "shared:9 - cgroup cgroup rw,cpu,cpuacct\n"
)
# A pure cgroup v2 host (Docker with the systemd driver).
V2_PATH = "/system.slice/docker-5e4cf2bab0c6.scope"
V2_ONLY = f"0::{V2_PATH}\n"
V2_MOUNTINFO = (
    "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
)


def load_bench():
    """scripts/bench's row modules (scripts/benchlib), as the driver loads them."""
    load_script("bench")  # puts scripts/benchlib on the path
    import abba
    import bench_stack
    import report
    import report_rows

    return types.SimpleNamespace(
        **{
            name: getattr(module, name)
            for module in (abba, bench_stack, report, report_rows)
            for name in dir(module)
            if not name.startswith("_")
        }
    )


# --- /proc/<pid>/cgroup and mountinfo ------------------------------------------------------------


def test_proc_cgroup_lines_give_hierarchy_controllers_and_path():
    lines = cgroup_cpu.parse_proc_cgroup(HYBRID_SEPARATE + "7:blkio:/odd:path\n")
    assert lines[0] == cgroup_cpu.CgroupLine(9, ("name=systemd",), CONTAINER)
    assert lines[2] == cgroup_cpu.CgroupLine(2, ("cpuacct",), CONTAINER)
    assert lines[4] == cgroup_cpu.CgroupLine(0, (), CONTAINER)  # the v2 line has no controllers
    assert lines[5].path == "/odd:path"  # the path is the last field, ':' and all
    assert cgroup_cpu.parse_proc_cgroup(COMOUNTED)[0].controllers == ("cpu", "cpuacct")


def test_mountinfo_keeps_only_cgroup_mounts_with_their_controllers():
    mounts = cgroup_cpu.parse_mountinfo(HYBRID_MOUNTINFO)
    assert [(m.mount_point, m.version, m.controllers) for m in mounts] == [
        ("/sys/fs/cgroup/cpu", 1, ("cpu",)),
        ("/sys/fs/cgroup/cpuacct", 1, ("cpuacct",)),
        ("/sys/fs/cgroup/memory", 1, ("memory",)),
        ("/sys/fs/cgroup/systemd", 1, ("name=systemd",)),
        ("/sys/fs/cgroup/unified", 2, ()),
    ]
    # Optional fields (shared:N) before the dash, and octal escapes in the mount point.
    [mount] = cgroup_cpu.parse_mountinfo(
        "28 25 0:24 /sub /mnt/my\\040cgroups rw shared:9 master:2 - cgroup cgroup rw,cpuacct,cpu\n"
    )
    assert mount == cgroup_cpu.CgroupMount("/sub", "/mnt/my cgroups", 1, ("cpuacct", "cpu"))


# --- which file holds a container's CPU time ------------------------------------------------------


def test_v1_with_cpuacct_as_its_own_hierarchy():
    assert cgroup_cpu.usage_file(HYBRID_SEPARATE, HYBRID_MOUNTINFO) == Path(
        f"/sys/fs/cgroup/cpuacct{CONTAINER}/cpuacct.usage"
    )


def test_v1_with_cpu_and_cpuacct_comounted():
    assert cgroup_cpu.usage_file(COMOUNTED, COMOUNTED_MOUNTINFO) == Path(
        f"/sys/fs/cgroup/cpu,cpuacct{CONTAINER}/cpuacct.usage"
    )


def test_hybrid_host_reads_v1_never_the_unified_tree():
    # On a hybrid host the v2 line may name the root of the (empty) unified tree: its cpu.stat
    # would be the whole machine's CPU time.
    proc = f"2:cpuacct:{CONTAINER}\n0::/\n"
    assert cgroup_cpu.usage_file(proc, HYBRID_MOUNTINFO).name == "cpuacct.usage"


def test_v2_only_host_reads_cpu_stat():
    assert cgroup_cpu.usage_file(V2_ONLY, V2_MOUNTINFO) == Path(f"/sys/fs/cgroup{V2_PATH}/cpu.stat")


def test_a_mounted_subtree_is_followed_from_its_root():
    # Seen from inside a container (or a bind mount): the mount shows /docker as its root.
    mountinfo = "33 31 0:30 /docker /sys/fs/cgroup/cpuacct ro,relatime - cgroup cgroup rw,cpuacct\n"
    proc = f"2:cpuacct:{CONTAINER}\n"
    assert cgroup_cpu.usage_file(proc, mountinfo) == Path(
        f"/sys/fs/cgroup/cpuacct/{CONTAINER.removeprefix('/docker/')}/cpuacct.usage"
    )
    # A cgroup outside the mounted subtree cannot be read there.
    with pytest.raises(cgroup_cpu.CgroupCpuError, match="showing /elsewhere"):
        cgroup_cpu.usage_file("2:cpuacct:/elsewhere\n", mountinfo)


def test_no_cgroup_cpu_time_fails_naming_what_was_looked_for():
    # v1 lines without cpuacct, and a v2 line beside them (so not a v2-only host): neither applies.
    proc = f"4:memory:{CONTAINER}\n0::{CONTAINER}\n"
    with pytest.raises(cgroup_cpu.CgroupCpuError) as caught:
        cgroup_cpu.usage_file(proc, HYBRID_MOUNTINFO)
    assert "cpuacct line" in str(caught.value) and "cgroup v2" in str(caught.value)
    # A v2-only process but no cgroup2 mount.
    with pytest.raises(cgroup_cpu.CgroupCpuError, match="cgroup2 mount showing"):
        cgroup_cpu.usage_file(V2_ONLY, COMOUNTED_MOUNTINFO)


def test_usage_file_of_a_pid_reads_its_proc_entries(tmp_path):
    cpuacct = tmp_path / "cgroup" / "cpuacct"
    (cpuacct / CONTAINER.lstrip("/")).mkdir(parents=True)
    (cpuacct / CONTAINER.lstrip("/") / "cpuacct.usage").write_text("1639418292\n")
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "self").mkdir()
    (proc / "4242" / "cgroup").write_text(HYBRID_SEPARATE)
    (proc / "self" / "mountinfo").write_text(f"33 31 0:30 / {cpuacct} rw - cgroup cgroup rw,cpuacct\n")
    path = cgroup_cpu.usage_file_of_pid(4242, proc=proc)
    assert cgroup_cpu.read_seconds(path) == pytest.approx(1.639418292)
    with pytest.raises(cgroup_cpu.CgroupCpuError, match="PID 4343"):
        cgroup_cpu.usage_file_of_pid(4343, proc=proc)


# --- the file formats ----------------------------------------------------------------------------


def test_cpuacct_usage_is_nanoseconds():
    assert cgroup_cpu.parse_cpuacct_usage("1639418292\n") == pytest.approx(1.639418292)


def test_cpu_stat_usage_usec_is_microseconds():
    text = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\nnr_periods 0\n"
    assert cgroup_cpu.parse_cpu_stat(text) == pytest.approx(2.5)
    with pytest.raises(cgroup_cpu.CgroupCpuError, match="usage_usec"):
        cgroup_cpu.parse_cpu_stat("user_usec 1\n")


def test_read_seconds_parses_by_the_files_name(tmp_path):
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    (tmp_path / "v1" / "cpuacct.usage").write_text("3000000000\n")
    (tmp_path / "v2" / "cpu.stat").write_text("usage_usec 3000000\nuser_usec 1\n")
    assert cgroup_cpu.read_seconds(tmp_path / "v1" / "cpuacct.usage") == 3.0
    assert cgroup_cpu.read_seconds(tmp_path / "v2" / "cpu.stat") == 3.0
    with pytest.raises(cgroup_cpu.CgroupCpuError, match="cannot read"):
        cgroup_cpu.read_seconds(tmp_path / "gone" / "cpuacct.usage")


# --- the arithmetic ------------------------------------------------------------------------------


def test_ms_per_thousand():
    assert cgroup_cpu.ms_per_thousand(2.5, 2000) == pytest.approx(1250.0)  # 1.25 ms a job
    assert cgroup_cpu.ms_per_thousand(0.0, 10) == 0.0
    with pytest.raises(ValueError):
        cgroup_cpu.ms_per_thousand(1.0, 0)


def test_spent_sums_the_replicas_of_a_service():
    before = {"p-web-1": ("web", 10.0), "p-worker-1": ("worker", 5.0), "p-worker-2": ("worker", 7.0)}
    after = {"p-web-1": 11.5, "p-worker-1": 6.0, "p-worker-2": 7.25}
    assert cgroup_cpu.spent(before, after) == {"web": 1.5, "worker": 1.25}


def test_spent_refuses_a_container_that_went_away_or_restarted():
    with pytest.raises(cgroup_cpu.CgroupCpuError, match="p-web-1 went away"):
        cgroup_cpu.spent({"p-web-1": ("web", 10.0)}, {})
    with pytest.raises(cgroup_cpu.CgroupCpuError, match="restarted"):
        cgroup_cpu.spent({"p-web-1": ("web", 10.0)}, {"p-web-1": 0.5})


def test_per_thousand_per_service_and_total():
    figures = cgroup_cpu.per_thousand({"web": 1.0, "worker": 0.5, "redis": 0.1}, 500)
    assert figures == pytest.approx({"web": 2000.0, "worker": 1000.0, "redis": 200.0, "total": 3200.0})


def test_summed_adds_the_halves_of_an_alternation():
    assert cgroup_cpu.summed([{"web": 1.0, "worker": 2.0}, {"web": 0.5, "beat": 0.01}]) == pytest.approx(
        {"web": 1.5, "worker": 2.0, "beat": 0.01}
    )


# --- scripts/bench: the halves, the rows and the table --------------------------------------------


def e2e(n: int, per_s: float, cpu_s: dict) -> dict:
    return {"n": n, "seconds": n / per_s, "per_s": per_s, "submit_per_s": 2 * per_s, "cpu_s": cpu_s}


def test_each_sides_cpu_is_summed_over_its_halves():
    bench = load_bench()
    merged = bench.merged_e2e(
        [e2e(1000, 100, {"web": 3.0, "worker": 2.0}), e2e(1000, 50, {"web": 5.0, "worker": 2.0})]
    )
    assert merged["n"] == 2000 and merged["cpu_s"] == {"web": 8.0, "worker": 4.0}
    m = {"e2e": merged}
    bench.add_cpu_per_thousand(m)
    assert m["e2e"]["cpu_ms_per_1000"] == {"web": 4000.0, "worker": 2000.0, "total": 6000.0}


def measured_rows_2_and_6(bench) -> dict:
    m = {
        "e2e": e2e(
            2000, 80, {"web": 7.0, "worker": 6.0, "redis": 1.0, "postgres": 2.0, "beat": 0.02, "flower": 3.0}
        ),
        "peer_e2e": e2e(2000, 80, {"web": 10.0, "worker": 4.0, "redis": 1.0, "postgres": 3.0, "flower": 2.0}),
        "raw": {
            **e2e(2000, 200, {"web": 2.0, "worker": 5.0, "redis": 1.0, "postgres": 0.2, "flower": 2.0}),
            "enqueue_per_s": 500,
        },
        "submit": {"ok": 1000, "per_s": 200, "cpu_s": {"web": 5.0, "postgres": 1.0}},
        "peer_submit": {"ok": 1000, "per_s": 150, "cpu_s": {"web": 6.0, "postgres": 1.5}},
        "status": {"ok": 10_000, "per_s": 1000, "p99_us": 100_000, "cpu_s": {"web": 15.0, "redis": 1.0}},
        "peer_status": {"ok": 4000, "per_s": 400, "p99_us": 300_000, "cpu_s": {"web": 16.0, "postgres": 2.0}},
    }
    bench.add_cpu_per_thousand(m)
    return m


def test_row_2_puts_cpu_per_1000_jobs_first_then_a_line_per_container_then_jobs_per_s():
    bench = load_bench()
    rows = bench.build_rows(measured_rows_2_and_6(bench), {2})
    first, *containers, throughput = rows
    # ours: 19.02 CPU s for 2000 jobs; raw Celery 10.2 s: ratio baseline / ours.
    assert first["measure"].endswith("CPU per 1,000 jobs") and first["unit"] == "CPU ms"
    assert first["value"] == pytest.approx(9510.0) and first["baseline"] == pytest.approx(5100.0)
    assert first["ratio"] == pytest.approx(5100.0 / 9510.0)
    assert [row["measure"].strip() for row in containers] == [
        "web",
        "worker",
        "redis",
        "postgres",
        "beat",
        "flower",
    ]
    web = containers[0]
    assert web["value"] == pytest.approx(3500.0) and web["baseline"] == pytest.approx(1000.0)
    assert web["baseline_name"] == "raw Celery (with its client)"
    beat = containers[4]
    assert beat["value"] == pytest.approx(10.0) and beat["baseline"] == 0.0  # raw had no beat time
    assert throughput["unit"] == "jobs/s" and throughput["ratio"] == pytest.approx(0.4)
    assert throughput["met"] is False  # the e2e target (0.7 of raw Celery) stays on jobs/s


def test_row_6_sets_ours_beside_the_peer_and_raw_celery_per_container_and_in_total():
    bench = load_bench()
    rows = bench.build_rows(measured_rows_2_and_6(bench), {6})
    first = rows[0]
    assert first["measure"].startswith("ours vs naive peer: CPU per 1,000 jobs end to end")
    assert first["value"] == pytest.approx(9510.0) and first["baseline"] == pytest.approx(10000.0)
    assert first["ratio"] == pytest.approx(10000.0 / 9510.0)  # above 1: ours is the cheaper
    web = next(row for row in rows if row["measure"] == "  web")
    assert web["baseline"] == pytest.approx(5000.0)
    assert web["also"] == [("raw Celery (with its client)", pytest.approx(1000.0))]
    by_measure = {row["measure"].strip(): row for row in rows}
    assert by_measure["ours vs raw Celery: CPU per 1,000 jobs"]["ratio"] == pytest.approx(5100.0 / 9510.0)
    assert by_measure["peer vs raw Celery: CPU per 1,000 jobs"]["value"] == pytest.approx(10000.0)
    submissions = by_measure["CPU per 1,000 submissions (workers paused)"]
    assert submissions["value"] == pytest.approx(6000.0) and submissions["ratio"] == pytest.approx(1.25)
    # Status reads: ours 16 CPU s for 10,000 reads, the peer 18 s for 4,000.
    reads = by_measure["CPU per 1,000 status reads"]
    assert reads["value"] == pytest.approx(1600.0) and reads["baseline"] == pytest.approx(4500.0)
    assert reads["ratio"] == pytest.approx(4500.0 / 1600.0)
    # The three throughput targets of row 6 are still there, beside the CPU lines.
    assert len([row for row in rows if row.get("target")]) == 3


def test_the_table_prints_the_cpu_lines_with_every_sides_figure():
    bench = load_bench()
    printed = bench.table(bench.build_rows(measured_rows_2_and_6(bench), {2, 6})).splitlines()
    web_lines = [line for line in printed if line.split()[1:2] == ["web"]]
    assert web_lines[0].split()[:4] == ["2", "web", "3,500", "CPU"]
    assert "raw Celery (with its client) 1,000 CPU ms" in web_lines[0]
    assert "peer 5,000 CPU ms; raw Celery (with its client) 1,000 CPU ms" in web_lines[1]
    total = next(line for line in printed if "CPU per 1,000 jobs" in line and line.startswith("2"))
    assert "9,510 CPU ms" in total and "raw Celery apply_async 5,100 CPU ms" in total and "0.54" in total


def test_the_alternations_note_shows_each_halfs_cpu_per_1000():
    bench = load_bench()
    ours = [e2e(1000, 100, {"web": 3.0, "worker": 2.0}), e2e(1000, 50, {"web": 5.0, "worker": 2.0})]
    theirs = [e2e(1000, 90, {"web": 4.0, "worker": 1.0}), e2e(1000, 80, {"web": 4.5, "worker": 1.0})]
    assert (
        bench.abba_note(ours, theirs, bench.cpu_ms_per_1000) == "ours 5000, peer 5000, peer 5500, ours 7000"
    )
    assert bench.abba_note(ours, theirs) == "ours 100, peer 90, peer 80, ours 50"  # jobs/s, as before
