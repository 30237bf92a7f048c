"""Unit (no services): settings built from the environment refuse bad worker options by name."""

import os
import subprocess
import sys

from tests.support.stack import ROOT


def load_settings(**env: str) -> subprocess.CompletedProcess:
    """Import the settings in a fresh interpreter with only the worker options given here."""
    code = "import config.settings as s; print(s.CELERY_WORKER_POOL, s.CELERY_WORKER_PREFETCH_MULTIPLIER)"
    base = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_WORKER_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "services",
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "APP_ENV": "development", **env},
    )


def test_pool_and_prefetch_come_from_the_environment():
    result = load_settings(CELERY_WORKER_POOL="threads", CELERY_WORKER_PREFETCH_MULTIPLIER="4")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["threads", "4"]


def test_defaults_are_prefork_and_one_message_per_process():
    result = load_settings()
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["prefork", "1"]


def test_every_offered_pool_is_accepted():
    for pool in ("prefork", "threads", "gevent", "solo"):
        result = load_settings(CELERY_WORKER_POOL=pool)
        assert result.returncode == 0, result.stderr
        assert result.stdout.split()[0] == pool


def test_unknown_pool_is_refused_by_name():
    result = load_settings(CELERY_WORKER_POOL="eventlet")
    assert result.returncode != 0
    assert "CELERY_WORKER_POOL must be one of prefork, threads, gevent, solo, not 'eventlet'" in result.stderr


def test_a_malformed_rate_is_refused_by_name():
    result = load_settings(API_SUBMIT_RATE="600 per minute")
    assert result.returncode != 0
    assert "API_SUBMIT_RATE must be like 600/min" in result.stderr
    assert load_settings(API_READ_RATE="100/s", API_SUBMIT_RATE="5/hour").returncode == 0


def test_a_hot_window_longer_than_the_retention_is_refused():
    result = load_settings(JOB_HOT_SECONDS="90000")
    assert result.returncode != 0
    assert "JOB_HOT_SECONDS must be between 0 and JOB_RESULT_EXPIRES" in result.stderr


# --- secrets from files (NAME_FILE: Docker and Swarm secrets, docker-compose.swarm.yml) -----------


def load_secrets(tmp_path, **env: str) -> subprocess.CompletedProcess:
    """Import the settings with the given variables; print the secrets they ended up with."""
    code = (
        "import config.settings as s; "
        "print(repr(s.SECRET_KEY), repr(s.JOB_ID_SECRET), repr(s.POSTGRES_PASSWORD), repr(s.REDIS_PASSWORD))"
    )
    base = {k: v for k, v in os.environ.items() if not k.endswith("_FILE")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "services",
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "APP_ENV": "development", **env},
    )


def test_a_secret_file_is_read_instead_of_the_variable_without_its_trailing_newline(tmp_path):
    key = tmp_path / "django_secret_key"
    key.write_text("from-a-file-0123456789abcdef\n")  # as `echo ... | docker secret create` writes
    password = tmp_path / "redis_password"
    password.write_text("redis-from-file")
    result = load_secrets(
        tmp_path,
        DJANGO_SECRET_KEY="from-the-variable",
        DJANGO_SECRET_KEY_FILE=str(key),
        REDIS_PASSWORD_FILE=str(password),
    )
    assert result.returncode == 0, result.stderr
    secret_key, job_id_secret, _, redis_password = result.stdout.split()
    assert secret_key == "'from-a-file-0123456789abcdef'"
    assert redis_password == "'redis-from-file'"
    assert job_id_secret == repr(os.environ["JOB_ID_SECRET"])  # no file: the variable


def test_an_unreadable_secret_file_is_refused_by_name(tmp_path):
    result = load_secrets(tmp_path, POSTGRES_PASSWORD_FILE=str(tmp_path / "missing"))
    assert result.returncode != 0
    assert "ImproperlyConfigured: POSTGRES_PASSWORD_FILE names" in result.stderr
    assert "cannot be read: No such file or directory" in result.stderr
