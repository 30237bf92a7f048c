"""unit: no services. The whole tree passes `ruff check` and `ruff format --check` (rules and
line length in pyproject.toml), as CI runs them: a lint finding fails the run like a test."""

import subprocess
import sys

import pytest

from tests.support.stack import ROOT


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff(command):
    result = subprocess.run(
        [sys.executable, "-m", "ruff", *command, "."], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
