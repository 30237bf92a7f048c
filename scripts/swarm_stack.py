"""What scripts/swarm-deploy hands `docker stack deploy`, built from `docker compose config` (pure:
no engine needed): the stack file, its secrets and configs named after their content, and the
production rules a swarm deploy must pass."""

import hashlib
import importlib.util
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class DeployError(Exception):
    pass


# Keys Swarm ignores: images come from a registry; restart_policy (deploy:) replaces restart.
DROPPED_KEYS = ("build", "restart")


def content_name(stack: str, key: str, content: bytes) -> str:
    return f"{stack}_{key}_{hashlib.sha256(content).hexdigest()[:12]}"


def secret_values(model: dict, base: dict) -> dict[str, bytes]:
    """Secret key -> its value: the value docker-compose.yml gives the variable the swarm file
    names (`environment: NAME`), found in the environment of the services that use it there."""
    values = {}
    for key, spec in model.get("secrets", {}).items():
        variable = spec.get("environment")
        if not variable:
            raise DeployError(f"secret {key}: docker-compose.swarm.yml must name its variable (environment:)")
        found = [
            svc["environment"][variable]
            for svc in base["services"].values()
            if (svc.get("environment") or {}).get(variable) is not None
        ]
        if not found:
            raise DeployError(f"secret {key}: {variable} is not set for any service of docker-compose.yml")
        values[key] = found[0].encode()
    return values


def load_checks():
    """services/config/checks.py alone (the app's package would start Celery and Django)."""
    spec = importlib.util.spec_from_file_location("stack_checks", ROOT / "services" / "config" / "checks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def production_refusals(model: dict, base: dict) -> list[str]:
    """Why this configuration must not be deployed (pure; empty: it may). The app's own production
    rules, applied to what web would be given and to the value of every secret of the swarm file."""
    checks = load_checks()
    environment = base["services"]["web"].get("environment") or {}
    problems = []
    if environment.get("APP_ENV") != "production":
        problems.append(
            f"APP_ENV is {environment.get('APP_ENV')!r}: a swarm deploy runs production only "
            "(APP_ENV=production; scripts/gen-prod-env writes a production .env)"
        )
    values = secret_values(model, base)
    secrets = {model["secrets"][key]["environment"]: value.decode() for key, value in values.items()}

    def listed(name: str) -> list[str]:
        return [item.strip() for item in (environment.get(name) or "").split(",") if item.strip()]

    debug = (environment.get("DJANGO_DEBUG") or "").strip().lower() in ("1", "true", "yes", "on")
    return problems + checks.production_problems(
        debug=debug,
        allowed_hosts=listed("DJANGO_ALLOWED_HOSTS"),
        csrf_trusted_origins=listed("DJANGO_CSRF_TRUSTED_ORIGINS"),
        secrets=secrets,
    )


def stack_file(model: dict, base: dict, stack: str) -> tuple[dict, list[tuple[str, str, bytes]]]:
    """The merged model as `docker stack deploy` reads it, and the secrets and configs to create
    first: (kind, name, content). Pure: nothing is sent to Docker here."""
    model = json.loads(json.dumps(model))
    model = {key: value for key, value in model.items() if key != "name" and not key.startswith("x-")}
    # On one host the app roles read their secrets from files that the secret-files service writes
    # into a volume; a swarm gives them Swarm secrets instead (docker-compose.swarm.yml).
    model["services"].pop("secret-files", None)
    model.get("volumes", {}).pop("app-secrets", None)
    for service in model["services"].values():
        service["volumes"] = [v for v in service.get("volumes", []) if v.get("source") != "app-secrets"]
        if not service["volumes"]:
            del service["volumes"]
        for key in [k for k, v in service.items() if v is None or k in DROPPED_KEYS]:
            del service[key]
        # Unset optional variables: nothing to pass (a service inherits no environment).
        if "environment" in service:
            service["environment"] = {k: v for k, v in service["environment"].items() if v is not None}
        # Compose v2 writes published ports as strings; the stack loader wants integers.
        for port in service.get("ports", []):
            if "published" in port:
                port["published"] = int(port["published"])
        # Compose v2 writes CPU limits as numbers; the stack loader wants strings ("0.5").
        for section in ("limits", "reservations"):
            resources = service.get("deploy", {}).get("resources", {}).get(section) or {}
            if "cpus" in resources:
                resources["cpus"] = str(resources["cpus"])
    if os.environ.get("SWARM_OVERLAY_ENCRYPTION", "on") == "off":
        # Encryption is switched on by the option's presence, whatever its value.
        for network in model.get("networks", {}).values():
            (network.get("driver_opts") or {}).pop("encrypted", None)
    objects = []
    for key, value in secret_values(model, base).items():
        name = content_name(stack, key, value)
        model["secrets"][key] = {"external": True, "name": name}
        objects.append(("secret", name, value))
    for key, spec in model.get("configs", {}).items():
        content = Path(spec["file"]).read_bytes()
        name = content_name(stack, key, content)
        model["configs"][key] = {"external": True, "name": name}
        objects.append(("config", name, content))
    return model, objects
