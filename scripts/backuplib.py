# The shared code of scripts/backup, scripts/restore and scripts/upgrade-postgres: archive naming,
# retention, the archive's manifest and checksums, and the docker compose calls that dump and load
# each service's state.
"""Backup archives of a running compose stack.

An archive is one gzip-compressed tar file named `<project>-<UTC time>.backup.tar.gz` holding
  manifest.json   what was saved, when, from which project, the SHA-256 and size of each file, and
                  the fingerprint of the JOB_ID_SECRET the stack ran with (an HMAC, not the secret)
  postgres.dump   pg_dump of the app database, custom format (one consistent snapshot)
  redis.rdb       Redis's snapshot, copied after a BGSAVE started by the backup has finished
  flower.tar      the contents of Flower's state volume (/data/flower), saved by a Flower stop
The names carry no secret: the project name and the time only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import os
import re
import shlex
import subprocess
import tarfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMAT = 1
SUFFIX = ".backup.tar.gz"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
MEMBERS = ("postgres.dump", "redis.rdb", "flower.tar")
APP_SERVICES = ("web", "worker", "beat", "flower")
NAME_RE = re.compile(r"^(?P<project>[a-z0-9][a-z0-9_-]*)-(?P<time>\d{8}T\d{6}Z)(?:-(?P<seq>\d+))?"
                     + re.escape(SUFFIX) + "$")


class BackupError(Exception):
    """A failure with a message for the operator (printed without a stack trace)."""


# --- names and retention (pure) -------------------------------------------------------------------

def archive_name(project: str, when: dt.datetime, seq: int = 0) -> str:
    """`<project>-<UTC time>.backup.tar.gz`; seq > 0 tells apart two archives of the same second."""
    stamp = when.astimezone(dt.timezone.utc).strftime(TIME_FORMAT)
    return f"{project}-{stamp}{f'-{seq}' if seq else ''}{SUFFIX}"


def parse_archive_name(name: str) -> tuple[str, dt.datetime, int] | None:
    """(project, UTC time, seq) of an archive name this tool writes; None for any other name."""
    match = NAME_RE.match(name)
    if not match:
        return None
    when = dt.datetime.strptime(match["time"], TIME_FORMAT).replace(tzinfo=dt.timezone.utc)
    return match["project"], when, int(match["seq"] or 0)


def expired(names: list[str], project: str, keep: int) -> list[str]:
    """The archives of this project to delete so that the newest `keep` remain, oldest first.
    Names of other projects and files this tool did not name are never selected."""
    if keep < 1:
        raise ValueError("keep must be at least 1")
    ours = []
    for name in names:
        parsed = parse_archive_name(name)
        if parsed and parsed[0] == project:
            ours.append((parsed[1], parsed[2], name))
    ours.sort()
    return [name for _, _, name in ours[:-keep]] if len(ours) > keep else []


def next_archive_path(directory: Path, project: str, when: dt.datetime) -> Path:
    seq = 0
    while (path := directory / archive_name(project, when, seq)).exists():
        seq += 1
    return path


# --- manifest and archive -------------------------------------------------------------------------

def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_archive(path: Path, files: dict[str, Path], info: dict) -> dict:
    """Write the archive (mode 600) atomically: a partial file is renamed only once complete."""
    manifest = {
        "format": FORMAT,
        **info,
        "files": {name: {"sha256": sha256_file(src), "bytes": src.stat().st_size}
                  for name, src in files.items()},
    }
    partial = path.with_name(f".{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
            data = json.dumps(manifest, indent=2, sort_keys=True).encode()
            entry = tarfile.TarInfo("manifest.json")
            entry.size, entry.mtime, entry.mode = len(data), int(time.time()), 0o600
            tar.addfile(entry, io.BytesIO(data))
            for name, src in files.items():
                tar.add(src, arcname=name, recursive=False)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return manifest


# --- the record of the newest backup, for monitoring ----------------------------------------------

METRIC = "stack_backup_last_success_timestamp_seconds"


def metric_path(directory: Path, project: str) -> Path:
    """The file, beside the archives, that tells monitoring when the project's newest one was made
    (docker-compose.monitoring.yml's backup exporter serves the *.prom files of BACKUP_DIR)."""
    return directory / f"{project}.backup.prom"


def metric_text(project: str, finished: dt.datetime, size: int) -> str:
    """Prometheus's text format: when the newest archive was completed, and its size (pure)."""
    labels = f'{{project="{project}"}}'
    return (f"# HELP {METRIC} When scripts/backup last completed an archive of the project (Unix time).\n"
            f"# TYPE {METRIC} gauge\n"
            f"{METRIC}{labels} {finished.timestamp():.0f}\n"
            "# HELP stack_backup_last_size_bytes Size of the newest archive scripts/backup completed.\n"
            "# TYPE stack_backup_last_size_bytes gauge\n"
            f"stack_backup_last_size_bytes{labels} {size}\n")


def write_metric(directory: Path, project: str, finished: dt.datetime, size: int) -> Path:
    """Replace the project's record atomically (an exporter never reads half a file); readable by
    the exporter's unprivileged user, and holding nothing secret."""
    path = metric_path(directory, project)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(metric_text(project, finished, size))
    partial.chmod(0o644)
    os.replace(partial, path)
    return path


def read_archive(path: Path, into: Path) -> dict:
    """Check the archive whole (gzip CRC, tar structure, manifest, every file's size and SHA-256)
    and extract it into `into`; BackupError naming what is wrong otherwise."""
    if not path.is_file():
        raise BackupError(f"no archive at {path}")
    found: dict[str, Path] = {}
    manifest = None
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            for member in tar:
                if member.name == "manifest.json" and member.isfile():
                    manifest = json.loads(tar.extractfile(member).read())
                elif member.name in MEMBERS and member.isfile():
                    target = into / member.name
                    with tar.extractfile(member) as src, target.open("wb") as dst:
                        for chunk in iter(lambda: src.read(1 << 20), b""):
                            dst.write(chunk)
                    found[member.name] = target
                else:
                    raise BackupError(f"{path} is not a backup archive: unexpected entry {member.name!r}")
    except (tarfile.TarError, EOFError, zlib.error, OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BackupError(f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); "
                          "nothing was restored") from None
    if manifest is None:
        raise BackupError(f"{path} has no manifest.json: not a backup archive or truncated; nothing was restored")
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path} has archive format {manifest.get('format')!r}; this tool reads {FORMAT}")
    for name, expected in manifest.get("files", {}).items():
        if name not in found:
            raise BackupError(f"{path} is truncated or corrupt: {name} is missing; nothing was restored")
        size = found[name].stat().st_size
        if size != expected["bytes"] or sha256_file(found[name]) != expected["sha256"]:
            raise BackupError(f"{path} is corrupt: {name} does not match its checksum in the manifest "
                              f"({size} bytes, {expected['bytes']} expected); nothing was restored")
    missing = [name for name in MEMBERS if name not in manifest.get("files", {})]
    if missing:
        raise BackupError(f"{path} lacks {', '.join(missing)}; nothing was restored")
    return manifest


def set_env_file(path: Path, values: dict[str, str], comment: str) -> None:
    """Set NAME=value lines in an env file (.env): a line that sets NAME is replaced, the others are
    appended after a comment line; every other line stays as it was. A new file gets mode 600."""
    lines = path.read_text().splitlines() if path.exists() else []
    left = dict(values)
    for index, line in enumerate(lines):
        name = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and name in left:
            lines[index] = f"{name}={left.pop(name)}"
    if left:
        lines += [f"# {comment}", *(f"{name}={value}" for name, value in left.items())]
    if not path.exists():
        path.touch(mode=0o600)
    path.write_text("\n".join(lines) + "\n")


# --- the stack, through docker compose --------------------------------------------------------------

@dataclass
class Compose:
    """`docker compose` for one project, run from the repository root (so its .env applies)."""
    global_args: list[str] = field(default_factory=list)

    def command(self, *args: str) -> list[str]:
        return ["docker", "compose", *self.global_args, *args]

    def run(self, *args: str, input: bytes | None = None, check: bool = True, timeout: float = 600,
            stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
        try:
            result = subprocess.run(self.command(*args), cwd=ROOT, input=input, stdout=stdout,
                                    stderr=subprocess.PIPE, timeout=timeout)
        except FileNotFoundError:
            raise BackupError("docker is not installed or not on PATH") from None
        except subprocess.TimeoutExpired:
            raise BackupError(f"`docker compose {shlex.join(args[:3])} ...` did not finish in {timeout:.0f} s") from None
        if check and result.returncode != 0:
            err = result.stderr.decode(errors="replace").strip()
            raise BackupError(f"`docker compose {shlex.join(args[:4])} ...` failed (exit {result.returncode}): "
                              f"{err[-1500:]}")
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

    def exec(self, service: str, script: str, input: bytes | None = None, timeout: float = 600,
             stdout=subprocess.PIPE, check: bool = True) -> subprocess.CompletedProcess:
        """A shell script inside the service's running container (secrets stay in its environment)."""
        return self.run("exec", "-T", service, "sh", "-c", script, input=input, timeout=timeout,
                        stdout=stdout, check=check)

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
        compose.exec("postgres", f'{PSQL_ENV} exec pg_dump --no-password --format=custom --dbname="$POSTGRES_DB"',
                     stdout=out, timeout=3600)
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
        raise BackupError(f"the stack (compose project {project!r}) is not running: {', '.join(down)} "
                          f"{'is' if len(down) == 1 else 'are'} not up. Start it with `docker compose up -d --wait` "
                          "(and pass the same -p/-f options as for the stack).")
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
