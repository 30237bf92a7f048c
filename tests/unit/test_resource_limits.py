"""Resource limits of docker-compose.yml (no engine: the Compose v2 CLI's `config` and the linter):
every service has a CPU and a memory ceiling, each overridable by its variable, and compose-lint's
finding about missing limits (CL-0026) no longer fires on the stack's file."""

import json
import os
import subprocess

import pytest

from tests.support.production import compose_lint
from tests.support.stack import ROOT

SERVICES = ("postgres", "redis", "secret-files", "migrate", "web", "worker", "beat", "flower")


def limits(**env: str) -> dict[str, dict]:
    environ = {k: v for k, v in os.environ.items() if not k.endswith(("_CPU_LIMIT", "_MEMORY_LIMIT"))}
    out = subprocess.run(
        ["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**environ, **env, "COMPOSE_DISABLE_ENV_FILE": "1"},
    ).stdout
    services = json.loads(out)["services"]
    return {name: services[name]["deploy"]["resources"]["limits"] for name in services}


def test_every_service_has_cpu_and_memory_limits():
    found = limits()
    assert set(found) == set(SERVICES)
    for name in SERVICES:
        assert 0 < float(found[name]["cpus"]) <= 2, (name, found[name])  # a 2-CPU host accepts them all
        assert int(found[name]["memory"]) >= 256 * 2**20, (name, found[name])
    # The worker holds its main process and the default 2 pool processes with room for jobs.
    assert int(found["worker"]["memory"]) >= 1024 * 2**20


@pytest.mark.parametrize("service", SERVICES)
def test_each_limit_is_overridable(service):
    prefix = service.upper().replace("-", "_")
    found = limits(**{f"{prefix}_CPU_LIMIT": "0.25", f"{prefix}_MEMORY_LIMIT": "300M"})
    assert float(found[service]["cpus"]) == 0.25
    assert int(found[service]["memory"]) == 300 * 2**20
    others = limits()
    for name in SERVICES:
        if name != service:
            assert found[name] == others[name], name


def test_compose_lint_no_longer_reports_missing_limits_on_the_stack():
    report = compose_lint("docker-compose.yml")
    assert not report["errors"], report["errors"]
    assert report["findings"], "compose-lint found nothing at all: did it lint the file?"
    missing = [
        f"{f['service']}: {f['message'][:80]}" for f in report["findings"] if f["rule_id"] == "CL-0026"
    ]
    assert not missing, missing
