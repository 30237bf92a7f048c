"""Helpers for the production-mode e2e tests (tests/e2e/test_production.py).

The production stack is the shipped compose file plus the variables of a `.env` written by
scripts/gen-prod-env, passed through the environment of the `docker compose` commands (as a
sourced .env would be).
"""

import io
import json
import re
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path

import requests
import yaml

from tests.support.stack import ROOT

# Every secret scripts/gen-prod-env writes; APP_ENV=production refuses a default for each.
SECRET_NAMES = (
    "DJANGO_SECRET_KEY",
    "JOB_ID_SECRET",
    "POSTGRES_PASSWORD",
    "REDIS_PASSWORD",
    "FLOWER_PASSWORD",
)
# Secrets of the services only, never given to an app container (so no app setting names them).
SERVICE_SECRET_NAMES = ("POSTGRES_ADMIN_PASSWORD",)
APP_ROLES = ("web", "worker", "beat", "flower")
DEV_WARNING = "running with development secrets"
LINT_ACCEPTED = ROOT / "compose" / "lint-accepted.yml"
LINTED_FILES = (
    "docker-compose.yml",
    "docker-compose.debug.yml",
    "docker-compose.rabbitmq.yml",
    "docker-compose.proxy.yml",
    "docker-compose.swarm.yml",
    "docker-compose.monitoring.yml",
)


class Redacted(dict):
    """Variables some of which are secret: pytest's failure reports show only their names."""

    def __repr__(self) -> str:
        return f"Redacted({', '.join(self)})"


# The example kinds the production stacks of the tests run, enabled as an operator would (off in
# production otherwise; tests/e2e/test_production.py checks that the others stay refused).
DEMO_KINDS_USED = "noop,sum_number,model_inference,fail"


def gen_prod_env(output: Path, *hosts: str) -> tuple[dict[str, str], str]:
    """Run scripts/gen-prod-env; return the variables it wrote (plus JOB_DEMO_KINDS) and what it
    printed."""
    args = [str(ROOT / "scripts" / "gen-prod-env"), "--output", str(output)]
    for host in hosts:
        args += ["--host", host]
    result = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    return {**read_env_file(output), "JOB_DEMO_KINDS": DEMO_KINDS_USED}, result.stdout + result.stderr


def read_env_file(path: Path) -> dict[str, str]:
    values = Redacted()
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def proxy_session(host: str, https: bool = True) -> requests.Session:
    """A client that talks to gunicorn the way the reverse proxy of docs/production.md does."""
    session = requests.Session()
    session.headers["Host"] = host
    if https:
        session.headers["X-Forwarded-Proto"] = "https"
    return session


# --- secrets in an image ---------------------------------------------------------------------------


def secret_pattern(values: dict[str, str]) -> re.Pattern[bytes]:
    return re.compile(b"|".join(re.escape(value.encode()) for value in values.values()))


def _names_of(pattern_match: bytes, values: dict[str, str]) -> list[str]:
    return [name for name, value in values.items() if value.encode() == pattern_match]


def image_layer_files(image: str) -> Iterator[tuple[str, bytes]]:
    """(layer/path, content) of every regular file in every layer of the image (`docker save`)."""
    with tempfile.TemporaryDirectory(prefix="image-scan-") as tmp:
        archive = Path(tmp) / "image.tar"
        subprocess.run(
            ["docker", "save", "-o", str(archive), image], check=True, timeout=600, capture_output=True
        )
        with tarfile.open(archive) as outer:
            for member in outer:
                if not member.isfile():
                    continue
                data = outer.extractfile(member).read()
                if member.name.endswith("layer.tar") or _is_tar(data):
                    with tarfile.open(fileobj=io.BytesIO(data)) as layer:
                        for entry in layer:
                            if entry.isfile():
                                yield f"{member.name}:{entry.name}", layer.extractfile(entry).read()
                else:  # manifest.json, the image config, repositories
                    yield member.name, data


def _is_tar(data: bytes) -> bool:
    return len(data) > 512 and data[257:262] == b"ustar"


def secrets_in_image(image: str, values: dict[str, str]) -> tuple[list[str], int]:
    """Where any of the values occurs in the image's history, config or files; and how many
    files were scanned (so a scan that saw nothing cannot pass unnoticed)."""
    pattern = secret_pattern(values)
    found = []
    history = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
        capture_output=True,
        check=True,
        timeout=120,
    ).stdout
    config = subprocess.run(
        ["docker", "image", "inspect", image], capture_output=True, check=True, timeout=120
    ).stdout
    for where, blob in (("docker history", history), ("docker image inspect", config)):
        for match in set(pattern.findall(blob)):
            found.append(f"{where}: {_names_of(match, values)}")
    scanned = 0
    for where, data in image_layer_files(image):
        scanned += 1
        for match in set(pattern.findall(data)):
            found.append(f"{where}: {_names_of(match, values)}")
    return found, scanned


# --- compose-lint ----------------------------------------------------------------------------------

KEY_IN_MESSAGE = re.compile(r"'([A-Za-z0-9_]+)'")


def compose_lint(*files: str) -> dict:
    """compose-lint's JSON report on the files (as shipped: no .env beside them is read)."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "compose_lint",
            "check",
            "--format",
            "json",
            "--no-env",
            "--fail-on",
            "critical",
            *files,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (0, 1), (
        f"compose-lint exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return json.loads(result.stdout)


def finding_key(finding: dict) -> str | None:
    """The variable or flag a finding names (CL-0020: "... env key 'NAME' ..."), if any."""
    match = KEY_IN_MESSAGE.search(finding.get("message", ""))
    return match.group(1) if match else None


def load_accepted(path: Path = LINT_ACCEPTED) -> list[dict]:
    entries = yaml.safe_load(path.read_text())["accepted"]
    for entry in entries:
        assert {"rule", "file", "services", "reason"} <= set(entry), f"incomplete entry: {entry}"
        assert str(entry["reason"]).strip() and "\n" not in str(entry["reason"]).strip(), (
            f"each accepted finding needs a one-line reason: {entry}"
        )
    return entries


def accepting_entry(finding: dict, accepted: list[dict]) -> dict | None:
    for entry in accepted:
        if (
            entry["rule"] == finding["rule_id"]
            and entry["file"] == finding["file"]
            and finding.get("service") in entry["services"]
            and entry.get("key") in (None, finding_key(finding))
        ):
            return entry
    return None
