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
import tarfile
import time
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORMAT = 1
SUFFIX = ".backup.tar.gz"
TIME_FORMAT = "%Y%m%dT%H%M%SZ"
MEMBERS = ("postgres.dump", "redis.rdb", "flower.tar")
APP_SERVICES = ("web", "worker", "beat", "flower")
NAME_RE = re.compile(
    r"^(?P<project>[a-z0-9][a-z0-9_-]*)-(?P<time>\d{8}T\d{6}Z)(?:-(?P<seq>\d+))?" + re.escape(SUFFIX) + "$"
)


class BackupError(Exception):
    """A failure with a message for the operator (printed without a stack trace)."""


# --- names and retention (pure) -------------------------------------------------------------------


def archive_name(project: str, when: dt.datetime, seq: int = 0) -> str:
    """`<project>-<UTC time>.backup.tar.gz`; seq > 0 tells apart two archives of the same second."""
    stamp = when.astimezone(dt.UTC).strftime(TIME_FORMAT)
    return f"{project}-{stamp}{f'-{seq}' if seq else ''}{SUFFIX}"


def parse_archive_name(name: str) -> tuple[str, dt.datetime, int] | None:
    """(project, UTC time, seq) of an archive name this tool writes; None for any other name."""
    match = NAME_RE.match(name)
    if not match:
        return None
    when = dt.datetime.strptime(match["time"], TIME_FORMAT).replace(tzinfo=dt.UTC)
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
        "files": {
            name: {"sha256": sha256_file(src), "bytes": src.stat().st_size} for name, src in files.items()
        },
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
    return (
        f"# HELP {METRIC} When scripts/backup last completed an archive of the project (Unix time).\n"
        f"# TYPE {METRIC} gauge\n"
        f"{METRIC}{labels} {finished.timestamp():.0f}\n"
        "# HELP stack_backup_last_size_bytes Size of the newest archive scripts/backup completed.\n"
        "# TYPE stack_backup_last_size_bytes gauge\n"
        f"stack_backup_last_size_bytes{labels} {size}\n"
    )


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
        raise BackupError(
            f"{path} is truncated or corrupt ({type(exc).__name__}: {exc}); nothing was restored"
        ) from None
    if manifest is None:
        raise BackupError(
            f"{path} has no manifest.json: not a backup archive or truncated; nothing was restored"
        )
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path} has archive format {manifest.get('format')!r}; this tool reads {FORMAT}")
    for name, expected in manifest.get("files", {}).items():
        if name not in found:
            raise BackupError(f"{path} is truncated or corrupt: {name} is missing; nothing was restored")
        size = found[name].stat().st_size
        if size != expected["bytes"] or sha256_file(found[name]) != expected["sha256"]:
            raise BackupError(
                f"{path} is corrupt: {name} does not match its checksum in the manifest "
                f"({size} bytes, {expected['bytes']} expected); nothing was restored"
            )
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
