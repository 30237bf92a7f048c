"""Unit (no services): settings built from the environment refuse bad worker options by name."""

import os
import subprocess
import sys

from tests.support.stack import ROOT


def load_settings(**env: str) -> subprocess.CompletedProcess:
    """Import the settings in a fresh interpreter with only the worker options given here."""
    code = "import config.settings as s; print(s.CELERY_WORKER_POOL, s.CELERY_WORKER_PREFETCH_MULTIPLIER)"
    base = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_WORKER_")}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT / "services", capture_output=True,
                          text=True, timeout=60, env={**base, "APP_ENV": "development", **env})


def test_pool_and_prefetch_come_from_the_environment():
    result = load_settings(CELERY_WORKER_POOL="threads", CELERY_WORKER_PREFETCH_MULTIPLIER="4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["threads", "4"]


def test_defaults_are_prefork_and_one_message_per_process():
    result = load_settings()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["prefork", "1"]


def test_unknown_pool_is_refused_by_name():
    result = load_settings(CELERY_WORKER_POOL="gevent")
    assert result.returncode != 0
    assert "CELERY_WORKER_POOL must be prefork or threads, not 'gevent'" in result.stderr
