"""A real Celery worker process for the integration tests, on the real Redis 5.0 container.

tests/conftest.py has already started Redis and PostgreSQL and put their addresses in the
environment; the worker inherits it, so web-side code in the test process and the worker
share the same broker and result backend. Nothing is eager, nothing is faked.
"""

import os

import pytest

from tests.integration.workers import running_worker

WORKER_NAME = "it-worker"


@pytest.fixture(scope="session")
def celery_worker_process(django_db_setup):
    with running_worker(
        WORKER_NAME, "jobs", concurrency=2, env={"JOB_RATE_LIMITS": os.environ.get("JOB_RATE_LIMITS", "")}
    ) as worker:
        yield worker.process


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
