"""The pure parts of scripts/backup and scripts/restore (scripts/backuplib.py): archive names,
retention, and the archive check that refuses a truncated or altered file before any restore."""

import datetime as dt
import json
import tarfile

import pytest

from scripts.backuplib import (
    MEMBERS,
    BackupError,
    archive_name,
    expired,
    next_archive_path,
    parse_archive_name,
    read_archive,
    write_archive,
)

UTC = dt.UTC
T0 = dt.datetime(2026, 12, 2, 18, 30, 5, tzinfo=UTC)


def test_archive_name_is_project_and_utc_time_only():
    assert archive_name("jobs", T0) == "jobs-20261202T183005Z.backup.tar.gz"
    paris = dt.timezone(dt.timedelta(hours=1))
    assert archive_name("jobs", T0.astimezone(paris)) == "jobs-20261202T183005Z.backup.tar.gz"
    assert archive_name("jobs", T0, seq=2) == "jobs-20261202T183005Z-2.backup.tar.gz"
    assert parse_archive_name("jobs-20261202T183005Z-2.backup.tar.gz") == ("jobs", T0, 2)
    assert parse_archive_name(archive_name("my-stack_1", T0)) == ("my-stack_1", T0, 0)
    for other in (
        "jobs.tar.gz",
        ".jobs-20261202T183005Z.backup.tar.gz.partial",
        "jobs-2026.backup.tar.gz",
        "notes.txt",
        "jobs-20261202T183005Z.backup.tar.gz.bak",
    ):
        assert parse_archive_name(other) is None, other


def test_next_archive_path_never_overwrites(tmp_path):
    first = next_archive_path(tmp_path, "jobs", T0)
    first.write_bytes(b"x")
    second = next_archive_path(tmp_path, "jobs", T0)
    assert second != first and parse_archive_name(second.name) == ("jobs", T0, 1)


def test_retention_keeps_the_newest_n_of_this_project_only():
    names = [archive_name("jobs", T0 + dt.timedelta(hours=h)) for h in (5, 1, 3, 2, 4)]
    names += [archive_name("jobs", T0 + dt.timedelta(hours=5), seq=1)]  # same second, later run
    names += [archive_name("other", T0 - dt.timedelta(days=9)), "jobs-manual-copy.tar.gz", "README"]
    doomed = expired(names, "jobs", keep=2)
    assert doomed == [archive_name("jobs", T0 + dt.timedelta(hours=h)) for h in (1, 2, 3, 4)]
    assert expired(names, "jobs", keep=10) == []
    assert expired(names, "other", keep=1) == []
    with pytest.raises(ValueError):
        expired(names, "jobs", keep=0)


def make_archive(tmp_path):
    sources = {}
    for name in MEMBERS:
        sources[name] = tmp_path / f"src-{name}"
        sources[name].write_bytes(name.encode() * 5000)
    path = tmp_path / archive_name("jobs", T0)
    manifest = write_archive(path, sources, {"project": "jobs"})
    return path, manifest


def test_archive_round_trip_with_manifest_and_private_mode(tmp_path):
    path, manifest = make_archive(tmp_path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert not list(tmp_path.glob(".*partial"))
    out = tmp_path / "out"
    out.mkdir()
    read = read_archive(path, out)
    assert read == manifest and read["project"] == "jobs"
    assert set(read["files"]) == set(MEMBERS)
    for name in MEMBERS:
        assert (out / name).read_bytes() == name.encode() * 5000
        assert len(read["files"][name]["sha256"]) == 64


@pytest.mark.parametrize("keep", [0.9, 0.5, 0.1])
def test_truncated_archive_is_refused(tmp_path, keep):
    path, _ = make_archive(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BackupError, match="truncated or corrupt"):
        read_archive(path, out)


def test_altered_member_is_refused_by_its_checksum(tmp_path):
    path, manifest = make_archive(tmp_path)
    # Rebuild the archive with the same manifest but one file changed (a valid gzip and tar).
    tampered = tmp_path / "tampered.backup.tar.gz"
    (tmp_path / "redis.rdb").write_bytes(b"REDIS0009" + b"\0" * 100)
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with tarfile.open(tampered, "w:gz") as tar:
        tar.add(tmp_path / "manifest.json", arcname="manifest.json")
        tar.add(tmp_path / "src-postgres.dump", arcname="postgres.dump")
        tar.add(tmp_path / "redis.rdb", arcname="redis.rdb")
        tar.add(tmp_path / "src-flower.tar", arcname="flower.tar")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(BackupError, match="redis.rdb does not match its checksum"):
        read_archive(tampered, out)


def test_not_an_archive_and_missing_file(tmp_path):
    bogus = tmp_path / "bogus.tar.gz"
    bogus.write_bytes(b"plain text")
    with pytest.raises(BackupError, match="truncated or corrupt"):
        read_archive(bogus, tmp_path)
    with pytest.raises(BackupError, match="no archive at"):
        read_archive(tmp_path / "absent.tar.gz", tmp_path)
