"""The version table of docs/production.md, which tests/support/versions.py reads to say whether
each version the e2e tests ran on is the one the table gives, and the env-file writer
scripts/upgrade-postgres records its settings with (scripts/backuplib.py)."""

import re
import stat

from scripts.backuplib import set_env_file
from tests.support import versions

# Every tag an e2e module records (tests/e2e: test_rabbitmq, test_proxy/test_deploy via helpers,
# test_redis8, test_backup).
RECORDED = (
    "postgres:17",
    "postgres:18",
    "redis:5.0-alpine",
    "redis:8-alpine",
    "rabbitmq:4-management-alpine",
    "caddy:2-alpine",
    "python:3.13-slim",
)


def test_the_table_gives_a_version_and_a_date_for_every_tag_the_tests_record():
    table = versions.documented()
    assert set(RECORDED) <= set(table), sorted(table)
    for tag in RECORDED:
        assert re.fullmatch(r"\d+\.\d+(\.\d+)?", table[tag]), (tag, table[tag])
    dated = re.findall(r"^\| .*\| (\d{4}-\d\d-\d\d) \|$", versions.TABLE.read_text(), re.MULTILINE)
    assert len(dated) >= len(RECORDED)


def test_record_says_whether_the_table_agrees():
    table = versions.documented()
    same = versions.record("caddy:2-alpine", "v" + table["caddy:2-alpine"], "stack-ci/caddy:2.11")
    assert same.endswith("as in docs/production.md's version table"), same
    other = versions.record("caddy:2-alpine", "9.9.9", "caddy:2-alpine")
    assert f"says {table['caddy:2-alpine']}: update the table" in other
    assert "not in docs/production.md" in versions.record("nginx:1", "1.27.0", "nginx:1")
    versions.SEEN.clear()  # printed at the end of a run: these were not seen on a stack


def test_set_env_file_replaces_a_setting_in_place_and_appends_the_others(tmp_path):
    env = tmp_path / ".env"
    env.write_text(
        "# production\nAPP_ENV=production\n#POSTGRES_IMAGE=postgres:16\nPOSTGRES_IMAGE=postgres:17\n"
    )
    env.chmod(0o640)
    set_env_file(
        env, {"POSTGRES_IMAGE": "postgres:18", "POSTGRES_VOLUME_NAME": "jobs_postgres-data-18"}, "why"
    )
    assert env.read_text() == (
        "# production\nAPP_ENV=production\n#POSTGRES_IMAGE=postgres:16\n"
        "POSTGRES_IMAGE=postgres:18\n# why\nPOSTGRES_VOLUME_NAME=jobs_postgres-data-18\n"
    )
    assert stat.S_IMODE(env.stat().st_mode) == 0o640


def test_set_env_file_creates_a_private_file(tmp_path):
    env = tmp_path / ".env"
    set_env_file(env, {"A": "1"}, "made here")
    assert env.read_text() == "# made here\nA=1\n"
    assert stat.S_IMODE(env.stat().st_mode) == 0o600
