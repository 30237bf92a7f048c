"""e2e: `scripts/bench --short` against the session's stack produces every row of its table.

It checks that the benchmark still runs and measures what it promises (so the script cannot
rot), never how fast anything is: speed depends on the machine and whatever else it runs. The
CPU time per 1,000 jobs is checked to be there and positive for every side, not its size. Row 6
(the stack against the naive peer app) is measured because the e2e stack runs with
BENCH_PEER_APP=1 (tests/e2e/conftest.py). Row 7 (Redis vs RabbitMQ) needs a second stack and is
skipped by --short, saying so; row 8 (the worker pools) is measured with a few jobs; row 9 (100
open job pages beside 100 API pollers) in a few seconds per side.
"""

import json
import math
import os
import subprocess
import sys

import pytest
import requests

from tests.support.stack import ROOT

SHORT_RUN_TIMEOUT = 480  # the short mode takes a few minutes; this only stops a hung run
MEASURED = {1, 2, 3, 4, 5, 6, 8, 9}
CONTAINERS = {"web", "worker", "redis", "postgres", "beat", "flower"}
POOLS = {"prefork", "threads", "gevent", "solo"}


def test_whoami_names_the_tokens_user(stack, token):
    response = requests.get(
        stack.url("/api/whoami/"), headers={"Authorization": f"Token {token}"}, timeout=30
    )
    assert response.status_code == 200
    assert response.json() == {"username": "e2e-alice"}
    assert requests.get(stack.url("/api/whoami/"), timeout=30).status_code == 401


def test_short_bench_produces_every_row(stack, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "scripts" / "bench"),
            "--short",
            "--project",
            stack.project,
            "--port",
            str(stack.web_port),
            "--json",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SHORT_RUN_TIMEOUT,
        env={**os.environ, **stack.env},
    )
    report = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, report

    rows = json.loads(out.read_text())["rows"]
    assert {row["row"] for row in rows} == MEASURED | {7}, report
    for number in sorted(MEASURED):
        measured = [row for row in rows if row["row"] == number]
        # Every row has a figure, and at least one of its lines a baseline and a ratio.
        assert all(
            isinstance(row["value"], (int, float)) and math.isfinite(row["value"]) for row in measured
        ), report
        assert any(
            isinstance(row.get("ratio"), (int, float)) and math.isfinite(row["ratio"]) and row["ratio"] > 0
            for row in measured
        ), report
    # Row 6 sets ours beside the peer's for submissions, status reads and end to end.
    peer_rows = [row for row in rows if row["row"] == 6 and row.get("target")]
    assert len(peer_rows) == 3 and all(row["baseline"] > 0 for row in peer_rows), report
    # Rows 2 and 6 lead with the containers' CPU time per 1,000 jobs end to end: a positive total
    # for ours beside raw Celery's (row 2) and the peer's (row 6), then a line per container.
    for number, baseline in ((2, "raw Celery"), (6, "peer")):
        cpu = [row for row in rows if row["row"] == number and row["unit"] == "CPU ms"]
        total = cpu[0]
        assert "CPU per 1,000 jobs" in total["measure"], report
        assert total["baseline_name"].startswith(baseline), report
        assert total["value"] > 0 and total["baseline"] > 0 and total["ratio"] > 0, report
        containers = {row["measure"].strip(): row for row in cpu[1:] if "CPU per" not in row["measure"]}
        assert CONTAINERS <= set(containers), (number, set(containers), report)
        # The worker ran every side's jobs; web served ours and the peer's and held raw Celery's client.
        for service in ("web", "worker"):
            assert containers[service]["value"] > 0 and containers[service]["baseline"] > 0, report
        assert sum(row["value"] for row in containers.values()) == pytest.approx(total["value"]), report
    [peer_vs_raw] = [
        row for row in rows if row["measure"].strip() == "peer vs raw Celery: CPU per 1,000 jobs"
    ]
    assert peer_vs_raw["value"] > 0 and peer_vs_raw["baseline"] > 0, report
    # Status reads too are set beside the peer's in CPU, not only in reads/s.
    [reads] = [
        row for row in rows if row["row"] == 6 and row["measure"].strip() == "CPU per 1,000 status reads"
    ]
    assert reads["value"] > 0 and reads["baseline"] > 0 and reads["unit"] == "CPU ms", report
    # ...printed as such, and kept in the JSON for each side.
    printed_cpu = [
        line
        for line in result.stdout.splitlines()
        if line.split()[:1] in (["2"], ["6"]) and "CPU per 1,000 jobs" in line and "CPU ms" in line
    ]
    assert len(printed_cpu) >= 4, report  # row 2's total; row 6's vs the peer, ours and peer vs raw
    measured = json.loads(out.read_text())["measured"]
    for side in ("e2e", "peer_e2e", "raw"):
        assert measured[side]["cpu_ms_per_1000"]["total"] > 0, (side, report)
    # Row 8: every pool on both kinds of job, each beside prefork measured in the same run.
    pools = [row for row in rows if row["row"] == 8]
    for kind in ("CPU-bound", "I/O-bound"):
        first = next(i for i, row in enumerate(pools) if row["measure"].startswith(kind))
        measured = {row["measure"].split(":")[-1].split()[0] for row in pools[first : first + 4]}
        assert measured == POOLS, (kind, measured, report)
    # Row 9: the pages and the API pollers, on jobs that progress and on jobs that do not; while
    # nothing changes, the pages' polls are answered 304 and come further apart than the API's.
    live = [row for row in rows if row["row"] == 9]
    assert len(live) == 8 and all(row["value"] > 0 and row["baseline"] > 0 for row in live), report
    unchanged = json.loads(out.read_text())["measured"]["live_pages"]["unchanged"]
    assert unchanged["pages"]["not_modified"] > 0.5, report
    assert unchanged["pages"]["per_s"] < unchanged["api"]["per_s"], report
    # Row 7 is there, not measured, and the notes say why.
    [skipped] = [row for row in rows if row["row"] == 7]
    assert skipped["value"] is None and "--short" in skipped["skipped"], report
    assert "row 7 skipped in --short" in result.stdout, report
    # ...and the printed table shows every row.
    printed = {line.split()[0] for line in result.stdout.splitlines() if line[:1].isdigit()}
    assert printed == {str(n) for n in MEASURED | {7}}, report
