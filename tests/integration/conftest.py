"""A real Celery worker process for the integration tests, on the real Redis 5.0 container.

tests/conftest.py has already started Redis and PostgreSQL and put their addresses in the
environment; the worker inherits it, so web-side code in the test process and the worker
share the same broker and result backend. Nothing is eager, nothing is faked.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery import current_app

from tests.support.stack import ARTIFACTS
from tests.support.wait import wait_until

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"
WORKER_NAME = "it-worker@%h"


@pytest.fixture(scope="session")
def celery_worker_process():
    ARTIFACTS.mkdir(exist_ok=True)
    log_path = ARTIFACTS / "integration-worker.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "--app=config", "worker", "--queues=jobs",
         "--concurrency=2", "--loglevel=INFO", f"--hostname={WORKER_NAME}"],
        cwd=SERVICES_DIR, env={**os.environ, "JOB_RATE_LIMITS": os.environ.get("JOB_RATE_LIMITS", "")},
        stdout=log, stderr=subprocess.STDOUT,
    )

    def answers_ping():
        assert process.poll() is None, f"worker exited early, see {log_path}"
        return current_app.control.ping(timeout=1.0)

    wait_until(answers_ping, timeout=60, interval=0.5, what="the integration worker to answer ping")
    yield process
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


@pytest.fixture
def worker(celery_worker_process):
    """The session's real worker, ready; a test that needs a job to run asks for this."""
    return celery_worker_process


@pytest.fixture
def alice(worker):
    """An API client with a real knox token (needs the test's django_db marker)."""
    from tests.integration.helpers import make_caller

    return make_caller("alice")


@pytest.fixture
def bob(worker):
    from tests.integration.helpers import make_caller

    return make_caller("bob")
