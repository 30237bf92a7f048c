"""Test set-up shared by every suite.

Django settings read the environment once, at import, so the environment is completed here,
in pytest_configure, before pytest-django sets Django up: test secrets, and - when
integration tests are selected - the addresses of real Redis 5.0 and PostgreSQL containers.
"""

import os

from tests.support import services

# Throwaway values for tests; long enough to pass the production secret rules.
TEST_ENV = {
    "DJANGO_SECRET_KEY": "test-django-secret-key-0123456789abcdef",
    "JOB_ID_SECRET": "test-job-id-secret-0123456789abcdef",
    "POSTGRES_USER": "app",
    "POSTGRES_DB": "app",
    "POSTGRES_PASSWORD": "test-postgres-password-0123456789",
    "REDIS_PASSWORD": "test-redis-password-0123456789",
    "POSTGRES_HOST": "127.0.0.1",
    "REDIS_HOST": "127.0.0.1",
}

_started: list[services.Services] = []


def pytest_configure(config):
    for name, value in TEST_ENV.items():
        os.environ.setdefault(name, value)
    if services.integration_selected(config.args, config.rootpath):
        started = services.start(os.environ)
        _started.append(started)
        config.add_cleanup(lambda: services.stop(started))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    settings.DATABASES  # noqa: B018 - load settings now; pytest-django sets Django up next


def pytest_report_header(config):
    if _started:
        return [
            f"integration services: Redis {_started[0].redis_version} ({services.REDIS_IMAGE}), "
            f"PostgreSQL ({services.POSTGRES_IMAGE})"
        ]
    return []


def pytest_terminal_summary(terminalreporter):
    """The versions of the services the e2e modules ran on (tests/support/versions.py), and the
    chaos suite's per-scenario lines (submitted / finished / lost / run twice), shown in the CI
    log even when every test passed; each only when a module that records them ran."""
    import sys

    versions = sys.modules.get("tests.support.versions")
    if versions is not None and versions.SEEN:
        terminalreporter.section("versions the e2e tests ran on")
        for line in versions.SEEN:
            terminalreporter.write_line(line)

    chaos = sys.modules.get("tests.support.chaos")
    if chaos is not None and chaos.REPORT:
        terminalreporter.section("chaos report")
        for line in chaos.REPORT:
            terminalreporter.write_line(line)
        terminalreporter.write_line(f"(also in {chaos.REPORT_PATH})")
