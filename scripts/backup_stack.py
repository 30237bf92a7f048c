"""The running stack, as scripts/backup, scripts/restore and scripts/upgrade-postgres drive it: docker
compose for one project, PostgreSQL's dump and restore as its administrator, Redis, waiting for
health. The archive itself (names, manifest, retention) is scripts/backuplib.py's."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from scripts.backuplib import APP_SERVICES, ROOT, BackupError


@dataclass
class Compose:
    """`docker compose` for one project, run from the repository root (so its .env applies)."""

    global_args: list[str] = field(default_factory=list)

    def command(self, *args: str) -> list[str]:
        return ["docker", "compose", *self.global_args, *args]

    def run(
        self,
        *args: str,
        input: bytes | None = None,
        check: bool = True,
        timeout: float = 600,
        stdout=subprocess.PIPE,
    ) -> subprocess.CompletedProcess:
        try:
            result = subprocess.run(
                self.command(*args),
                cwd=ROOT,
                input=input,
                stdout=stdout,
                stderr=subprocess.PIPE,
                timeout=timeout,
            )
        except FileNotFoundError:
            raise BackupError("docker is not installed or not on PATH") from None
        except subprocess.TimeoutExpired:
            raise BackupError(
                f"`docker compose {shlex.join(args[:3])} ...` did not finish in {timeout:.0f} s"
            ) from None
        if check and result.returncode != 0:
            err = result.stderr.decode(errors="replace").strip()
            raise BackupError(
                f"`docker compose {shlex.join(args[:4])} ...` failed (exit {result.returncode}): "
                f"{err[-1500:]}"
            )
        return result

    def text(self, *args: str, **kwargs) -> str:
        return self.run(*args, **kwargs).stdout.decode(errors="replace")

    def project(self) -> str:
        config = json.loads(self.text("config", "--format", "json", "--no-interpolate"))
        return config["name"]

    def running(self) -> dict[str, int]:
        """Service name -> how many of its containers are running."""
        out = self.text("ps", "--status", "running", "--format", "json")
        counts: dict[str, int] = {}
        for line in out.splitlines():
            line = line.strip()
            if not line:
                continue
            rows = json.loads(line)
            for row in rows if isinstance(rows, list) else [rows]:
                counts[row["Service"]] = counts.get(row["Service"], 0) + 1
        return counts

    def health(self) -> dict[str, list[str]]:
        out = self.text("ps", "--format", "json")
        health: dict[str, list[str]] = {}
        for line in out.splitlines():
            if line.strip():
                rows = json.loads(line)
                for row in rows if isinstance(rows, list) else [rows]:
                    health.setdefault(row["Service"], []).append(row.get("Health") or row.get("State"))
        return health

    def exec(
        self,
        service: str,
        script: str,
        input: bytes | None = None,
        timeout: float = 600,
        stdout=subprocess.PIPE,
        check: bool = True,
    ) -> subprocess.CompletedProcess:
        """A shell script inside the service's running container (secrets stay in its environment)."""
        return self.run(
            "exec",
            "-T",
            service,
            "sh",
            "-c",
            script,
            input=input,
            timeout=timeout,
            stdout=stdout,
            check=check,
        )

    def redis(self, *args: str) -> str:
        return self.text("exec", "-T", "redis", "redis-cli", "--no-auth-warning", *args).strip()


# The administrator (PostgreSQL's superuser) in the postgres container; POSTGRES_USER there is the
# app's role, as in the app containers (docker-compose.yml, compose/postgres/start-postgres).
PSQL_ENV = 'PGPASSWORD="$POSTGRES_ADMIN_PASSWORD" PGHOST=127.0.0.1 PGUSER="$POSTGRES_ADMIN_USER"'


# The app database dropped, created again (owned by the app's role) and loaded from a
# custom-format dump on stdin in one transaction: all of it or nothing. The objects are created
# as the app's role (--role), so the app owns them as it owns those its migrations create.
RECREATE_DB = f"""set -e
{PSQL_ENV} psql --no-password -q -v ON_ERROR_STOP=1 -v db="$POSTGRES_DB" -v owner="$POSTGRES_USER" \\
    --dbname=postgres <<'SQL'
DROP DATABASE IF EXISTS :"db" WITH (FORCE);
CREATE DATABASE :"db" OWNER :"owner";
SQL
{PSQL_ENV} exec pg_restore --no-password --exit-on-error --single-transaction --no-owner \\
    --no-privileges --role="$POSTGRES_USER" --dbname="$POSTGRES_DB"
"""


def dump_postgres(compose: Compose, target: Path) -> None:
    """pg_dump of the app database (custom format) from the running postgres service into target."""
    with target.open("wb") as out:
        compose.exec(
            "postgres",
            f'{PSQL_ENV} exec pg_dump --no-password --format=custom --dbname="$POSTGRES_DB"',
            stdout=out,
            timeout=3600,
        )
    # The dump must read back: pg_restore lists its table of contents or fails.
    compose.exec("postgres", "pg_restore --list >/dev/null", input=target.read_bytes(), timeout=600)


def restore_postgres(compose: Compose, dump: Path) -> None:
    """The app database replaced by a dump_postgres() file, in the running postgres service."""
    compose.exec("postgres", RECREATE_DB, input=dump.read_bytes(), timeout=3600)


def require_running(compose: Compose, project: str, services=("postgres", "redis")) -> dict[str, int]:
    try:
        running = compose.running()
    except BackupError as exc:
        raise BackupError(f"cannot ask docker compose about project {project!r}: {exc}") from None
    down = [name for name in services if not running.get(name)]
    if down:
        raise BackupError(
            f"the stack (compose project {project!r}) is not running: {', '.join(down)} "
            f"{'is' if len(down) == 1 else 'are'} not up. Start it with `docker compose up -d --wait` "
            "(and pass the same -p/-f options as for the stack)."
        )
    return running


def job_id_secret_fingerprint(compose: Compose) -> str:
    """The fingerprint of the JOB_ID_SECRET the app runs with: asked of a running app container
    (what a restart of it will use), or of a one-off migrate container when none runs."""
    command = ["python", "manage.py", "job_id_secret_fingerprint"]
    running = compose.running()
    service = next((name for name in APP_SERVICES if running.get(name)), None)
    if service:
        out = compose.text("exec", "-T", service, *command, timeout=120)
    else:
        out = compose.text("run", "--rm", "--no-deps", "-T", "migrate", *command, timeout=300)
    lines = out.strip().splitlines()
    if not lines or not re.fullmatch(r"[0-9a-f]{64}", lines[-1]):
        raise BackupError(f"could not read the app's JOB_ID_SECRET fingerprint (got {out.strip()[-200:]!r})")
    return lines[-1]


def redis_info(compose: Compose, section: str) -> dict[str, str]:
    info = {}
    for line in compose.redis("INFO", section).splitlines():
        name, sep, value = line.strip().partition(":")
        if sep:
            info[name] = value
    return info


def wait_for(check, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BackupError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def wait_healthy(compose: Compose, services: list[str], timeout: float = 300) -> None:
    def healthy():
        health = compose.health()
        return all(health.get(name) and all(h == "healthy" for h in health[name]) for name in services)

    wait_for(healthy, timeout, f"{', '.join(services)} to be healthy", interval=1)
