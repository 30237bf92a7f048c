"""Unit (no services; the docker CLI and its Compose v2 plugin, no engine): what scripts/swarm-deploy
makes of docker-compose.yml + docker-compose.swarm.yml, checked by `docker stack config`, the
stack loader `docker stack deploy` uses. The real deploy runs in tests/e2e/test_swarm.py."""

import json
import os
import re
import subprocess

import pytest

from tests.support.scripts import load_script
from tests.support.stack import ROOT

APP_ROLES = ("migrate", "web", "worker", "beat", "flower")
ON_DATA_NODE = ("postgres", "redis", "beat", "flower")
SECRETS = ("DJANGO_SECRET_KEY", "JOB_ID_SECRET", "POSTGRES_PASSWORD", "REDIS_PASSWORD")


@pytest.fixture(scope="module")
def script():
    return load_script("swarm-deploy")


def compose_env(**extra: str) -> dict:
    """What `docker compose up` with no .env sees: none of the test suite's own secrets."""
    env = {k: v for k, v in os.environ.items() if k not in (*SECRETS, "POSTGRES_USER", "POSTGRES_DB")}
    return {**env, "COMPOSE_DISABLE_ENV_FILE": "1", **extra}


def use_compose_env(monkeypatch, **extra: str) -> None:
    for name in (*SECRETS, "POSTGRES_USER", "POSTGRES_DB"):
        monkeypatch.delenv(name, raising=False)
    for name, value in compose_env(**extra).items():
        monkeypatch.setenv(name, value)


def converted(script, monkeypatch, **extra: str) -> tuple[dict, list]:
    use_compose_env(monkeypatch, **extra)
    model = script.compose_config("djcs", *script.FILES, env={"SWARM_DEPLOY_ID": "test-1"})
    base = script.compose_config("djcs", script.FILES[0])
    return script.stack_file(model, base, "djcs")


def test_the_stack_loader_accepts_the_converted_files(script, monkeypatch):
    stack, _ = converted(script, monkeypatch)
    result = subprocess.run(
        ["docker", "stack", "config", "--compose-file", "-"],
        input=json.dumps(stack),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent"},
    )
    assert result.returncode == 0, result.stderr
    assert "services:" in result.stdout


def test_secrets_are_swarm_secrets_named_by_content_and_absent_from_the_services(script, monkeypatch):
    stack, objects = converted(script, monkeypatch)
    assert "insecure-dev" not in json.dumps(stack)  # the development defaults went into secrets
    secrets = {name: content for kind, name, content in objects if kind == "secret"}
    assert secrets[stack["secrets"]["django_secret_key"]["name"]] == b"insecure-dev-django-secret-key"
    assert all(spec == {"external": True, "name": spec["name"]} for spec in stack["secrets"].values())
    for role in APP_ROLES:
        environment = stack["services"][role]["environment"]
        for name in SECRETS:
            assert name not in environment, (role, name)
            assert environment[f"{name}_FILE"] == f"/run/secrets/{name.lower()}", (role, name)
    assert "POSTGRES_PASSWORD" not in stack["services"]["postgres"]["environment"]
    assert (
        stack["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"]
        == "/run/secrets/postgres_password"
    )
    assert "REDIS_PASSWORD" not in stack["services"]["redis"].get("environment", {})
    # Another value, another name (so the services using it roll to it); the same value, the same.
    changed, _ = converted(script, monkeypatch, REDIS_PASSWORD="another-redis-password")
    assert changed["secrets"]["redis_password"]["name"] != stack["secrets"]["redis_password"]["name"]
    assert changed["secrets"]["job_id_secret"] == stack["secrets"]["job_id_secret"]


def test_what_swarm_ignores_is_replaced(script, monkeypatch):
    stack, _ = converted(script, monkeypatch)
    services = stack["services"]
    for name, service in services.items():
        assert not {"build", "restart", "depends_on", "tmpfs"} & set(service), name
    # The one-host secret-files service and its volume: Swarm secrets stand in for them.
    assert "secret-files" not in services and "app-secrets" not in stack.get("volumes", {})
    assert not [
        v for s in services.values() for v in s.get("volumes", []) if v.get("source") == "app-secrets"
    ]
    for role in APP_ROLES:
        assert any(v["type"] == "tmpfs" and v["target"] == "/tmp" for v in services[role]["volumes"]), role
        assert services[role]["read_only"] is True
    # One migrate run per deploy: a job whose spec changes with every deploy id.
    assert services["migrate"]["deploy"]["mode"] == "replicated-job"
    assert services["migrate"]["environment"]["SWARM_DEPLOY_ID"] == "test-1"
    for role in ("web", "worker", "beat", "flower"):
        assert services[role]["command"][0] == "wait-for-migrations"
    for name in ON_DATA_NODE:
        deploy = services[name]["deploy"]
        assert "node.labels.jobs.data == true" in deploy["placement"]["constraints"], name
        assert deploy["update_config"]["order"] == "stop-first", name
        assert deploy["replicas"] == 1, name
    for name in ("web", "worker"):
        update = services[name]["deploy"]["update_config"]
        assert (update["order"], update["failure_action"]) == ("start-first", "rollback"), name
        assert "placement" not in services[name]["deploy"] or not services[name]["deploy"]["placement"]
    assert services["worker"]["deploy"]["replicas"] == 3
    assert services["proxy"]["ports"] == [{"mode": "host", "target": 80, "published": 80, "protocol": "tcp"}]


def test_the_single_host_file_keeps_its_compose_semantics(script, monkeypatch):
    """The overlay changes nothing for `docker compose up`: the base file alone is as before."""
    use_compose_env(monkeypatch)
    base = script.compose_config("djcs", script.FILES[0])
    assert base["services"]["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    # Secrets as files on one host: the values go to secret-files, web gets where to read them.
    assert (
        base["services"]["secret-files"]["environment"]["DJANGO_SECRET_KEY"]
        == "insecure-dev-django-secret-key"
    )
    assert (
        base["services"]["web"]["environment"]["DJANGO_SECRET_KEY_FILE"]
        == "/run/app-secrets/DJANGO_SECRET_KEY"
    )
    assert "DJANGO_SECRET_KEY" not in base["services"]["web"]["environment"]
    assert base["services"]["web"]["tmpfs"] == ["/tmp"]
    assert "proxy" not in base["services"]


def test_workers_are_named_after_their_task_and_the_network_is_encrypted(script, monkeypatch):
    stack, _ = converted(script, monkeypatch)
    # Unique among live workers even when an update starts a slot's new task on the old one's node.
    assert (
        stack["services"]["worker"]["environment"]["WORKER_NODE_NAME"]
        == "worker-{{.Node.Hostname}}-{{.Task.Slot}}-{{.Task.ID}}"
    )
    assert stack["networks"]["default"]["driver_opts"] == {"encrypted": ""}
    # Only for nodes whose kernel has no IPsec ESP (the option's presence alone turns it on).
    plain, _ = converted(script, monkeypatch, SWARM_OVERLAY_ENCRYPTION="off")
    assert "encrypted" not in (plain["networks"]["default"].get("driver_opts") or {})


PRODUCTION = {
    "APP_ENV": "production",
    "DJANGO_ALLOWED_HOSTS": "jobs.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://jobs.example.com",
    **{
        name: f"a-strong-unit-test-value-for-{name.lower()}"
        for name in (*SECRETS, "POSTGRES_ADMIN_PASSWORD", "FLOWER_PASSWORD")
    },
}


def swarm_deploy(**env: str) -> subprocess.CompletedProcess:
    """The real script, aimed at no engine at all: what it refuses, it refuses before asking one."""
    return subprocess.run(
        [str(ROOT / "scripts/swarm-deploy"), "--stack", "djcs"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=compose_env(DOCKER_HOST="unix:///nonexistent/docker.sock", **env),
    )


def test_swarm_deploy_refuses_development_secrets_by_name():
    refused = swarm_deploy()  # no .env: docker-compose.yml's development defaults
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert "nothing was changed" in refused.stderr, refused.stderr
    named = re.findall(r"^  - ([A-Z_]+) ", refused.stderr, re.MULTILINE)
    assert sorted(named) == sorted(
        [
            "APP_ENV",
            *SECRETS,
            "POSTGRES_ADMIN_PASSWORD",
            "FLOWER_PASSWORD",
            "DJANGO_ALLOWED_HOSTS",
            "DJANGO_CSRF_TRUSTED_ORIGINS",
        ]
    ), refused.stderr
    # Production's secrets and hosts, but not production's mode: refused for that alone.
    development = swarm_deploy(**{**PRODUCTION, "APP_ENV": "development"})
    assert re.findall(r"^  - ([A-Z_]+) ", development.stderr, re.MULTILINE) == ["APP_ENV"], development.stderr
    one_weak = swarm_deploy(**{**PRODUCTION, "JOB_ID_SECRET": "short"})
    assert re.findall(r"^  - ([A-Z_]+) ", one_weak.stderr, re.MULTILINE) == ["JOB_ID_SECRET"], one_weak.stderr
    # A production configuration passes the check; with no engine to talk to, it stops there.
    accepted = swarm_deploy(**PRODUCTION)
    assert accepted.returncode == 1 and "refusing" not in accepted.stderr, accepted.stderr
    assert "docker info" in accepted.stderr, accepted.stderr
