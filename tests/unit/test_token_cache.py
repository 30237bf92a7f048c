"""unit: no services. The API token cache's keys, values and tombstone lifetimes (jobs.token_cache),
and the settings that switch the bench-only peer app."""

import hashlib

import pytest

from jobs import token_cache

SECRET = "unit-secret-0123456789abcdef"
TOKEN = "a3f1c9e0b7d2" * 5 + "beef"
DIGEST = hashlib.sha512(TOKEN.encode()).hexdigest()  # what knox stores for the token


def test_key_is_stable_keyed_and_never_contains_the_token_or_its_digest():
    key = token_cache.key_for_digest(SECRET, DIGEST)
    assert key == token_cache.key_for_digest(SECRET, DIGEST)
    assert key.startswith(token_cache.KEY_PREFIX)
    assert key != token_cache.key_for_digest(SECRET + "x", DIGEST)
    assert key != token_cache.key_for_digest(SECRET, DIGEST[:-1] + "0")
    for secret_part in (TOKEN, TOKEN[:15], DIGEST, DIGEST[:32]):
        assert secret_part not in key


def test_user_round_trips_and_tombstones_or_junk_read_as_a_miss():
    raw = token_cache.encode_user(42, 'alice|with:odd"chars')
    assert token_cache.decode_user(raw) == (42, 'alice|with:odd"chars')
    assert token_cache.decode_user(None) is None
    assert token_cache.decode_user(token_cache.TOMBSTONE) is None
    assert token_cache.decode_user(b"not json") is None
    assert token_cache.decode_user(b"[1]") is None


@pytest.mark.parametrize("ttl", [0, 1, 30, 300, 3600])
def test_a_tombstone_outlives_any_entry_written_before_it(ttl):
    assert token_cache.tombstone_seconds(ttl) > ttl
    assert token_cache.tombstone_seconds(ttl) >= token_cache.MIN_TOMBSTONE_SECONDS


# --- the bench-only peer app: loaded only when asked for, never in production ---------------------


def _settings(**env: str):
    import os
    import subprocess
    import sys

    from tests.support.stack import ROOT

    code = "import config.settings as s; print('benchpeer' in s.INSTALLED_APPS, s.API_TOKEN_CACHE_SECONDS)"
    base = {k: v for k, v in os.environ.items() if k not in ("BENCH_PEER_APP", "API_TOKEN_CACHE_SECONDS")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT / "services",
        capture_output=True,
        text=True,
        timeout=60,
        env={**base, "APP_ENV": "development", **env},
    )


def test_peer_app_is_off_by_default_and_on_when_asked_for_in_development():
    default = _settings()
    assert default.returncode == 0, default.stderr
    assert default.stdout.split() == ["False", "30"]
    asked = _settings(BENCH_PEER_APP="1", API_TOKEN_CACHE_SECONDS="0")
    assert asked.returncode == 0, asked.stderr
    assert asked.stdout.split() == ["True", "0"]


def test_peer_app_is_refused_in_production_by_name():
    strong = "s3cure-" + "x" * 40
    production = dict(
        APP_ENV="production",
        DJANGO_DEBUG="false",
        DJANGO_ALLOWED_HOSTS="jobs.example.com",
        DJANGO_CSRF_TRUSTED_ORIGINS="https://jobs.example.com",
        DJANGO_SECRET_KEY=strong,
        JOB_ID_SECRET=strong + "j",
        POSTGRES_PASSWORD=strong + "p",
        REDIS_PASSWORD=strong + "r",
    )
    assert _settings(**production).returncode == 0, _settings(**production).stderr
    refused = _settings(**production, BENCH_PEER_APP="1")
    assert refused.returncode != 0
    assert "BENCH_PEER_APP=1 loads a bench-only app and is refused with APP_ENV=production" in refused.stderr
