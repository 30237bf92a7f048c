"""e2e: `scripts/bench --short` against the session's stack produces every row of its table.

It checks that the benchmark still runs and measures all six things (so the script cannot
rot), never how fast anything is: speed depends on the machine and whatever else it runs. Row 6
(the stack against the naive peer app) is measured because the e2e stack runs with
BENCH_PEER_APP=1 (tests/e2e/conftest.py).
"""

import json
import math
import os
import subprocess
import sys

import requests

from tests.support.stack import ROOT

SHORT_RUN_TIMEOUT = 300  # the short mode takes seconds; this only stops a hung run


def test_whoami_names_the_tokens_user(stack, token):
    response = requests.get(stack.url("/api/whoami/"), headers={"Authorization": f"Token {token}"},
                            timeout=30)
    assert response.status_code == 200
    assert response.json() == {"username": "e2e-alice"}
    assert requests.get(stack.url("/api/whoami/"), timeout=30).status_code == 401


def test_short_bench_produces_every_row(stack, tmp_path):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "bench"), "--short", "--project", stack.project,
         "--port", str(stack.web_port), "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=SHORT_RUN_TIMEOUT,
        env={**os.environ, **stack.env},
    )
    report = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, report

    rows = json.loads(out.read_text())["rows"]
    assert {row["row"] for row in rows} == {1, 2, 3, 4, 5, 6}, report
    for number in range(1, 7):
        measured = [row for row in rows if row["row"] == number]
        # Every row has a figure, and at least one of its lines a baseline and a ratio.
        assert all(isinstance(row["value"], (int, float)) and math.isfinite(row["value"])
                   for row in measured), report
        assert any(isinstance(row.get("ratio"), (int, float)) and math.isfinite(row["ratio"])
                   and row["ratio"] > 0 for row in measured), report
    # Row 6 sets ours beside the peer's for submissions, status reads and end to end.
    peer_rows = [row for row in rows if row["row"] == 6 and row.get("target")]
    assert len(peer_rows) == 3 and all(row["baseline"] > 0 for row in peer_rows), report
    # ...and the printed table shows all six rows.
    printed = {line.split()[0] for line in result.stdout.splitlines() if line[:1].isdigit()}
    assert printed == {"1", "2", "3", "4", "5", "6"}, report
