"""unit: no services. The whole tree passes `ruff check` (rules in pyproject.toml), as CI runs
it: a lint finding fails the run like a test."""

import subprocess
import sys

from tests.support.stack import ROOT


def test_ruff_check():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
