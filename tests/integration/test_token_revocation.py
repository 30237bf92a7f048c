"""integration: a revoked API token is refused by every web process at once, cached or not.

Two real gunicorn processes (the stack's config/gunicorn.py, one worker each) serve the test
database and share the real Redis 5.0; the revocation happens in a third process, this one.
Each case runs with the token cache on (API_TOKEN_CACHE_SECONDS 30: both processes have the
token's user cached in Redis when it is revoked) and off (0).

The last test removes the tombstone from the revocation and shows the cached token still
being accepted: what the tombstone is there for, and proof that the first tests would fail
without it.
"""

import os
import socket
import subprocess
import sys

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from knox.models import AuthToken

from jobs import token_cache
from tests.integration.workers import SERVICES_DIR
from tests.support.stack import ARTIFACTS
from tests.support.wait import wait_until

pytestmark = pytest.mark.django_db(transaction=True)
PROCESSES = 2


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module", params=["30", "0"], ids=["cache-on", "cache-off"])
def web_processes(request, django_db_setup, django_db_blocker):
    """Two gunicorn processes on the test database; yields their base URLs."""
    with django_db_blocker.unblock():
        database = connection.settings_dict["NAME"]
    ARTIFACTS.mkdir(exist_ok=True)
    procs, urls = [], []
    try:
        for i in range(PROCESSES):
            port = free_port()
            log = (ARTIFACTS / f"integration-web-{request.param}-{i}.log").open("w")
            env = {
                **os.environ,
                "POSTGRES_DB": database,
                "API_TOKEN_CACHE_SECONDS": request.param,
                "GUNICORN_WORKERS": "1",
                "GUNICORN_THREADS": "2",
                "GUNICORN_ACCESS_LOG": "false",
            }
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "gunicorn",
                        "--config",
                        "python:config.gunicorn",
                        "--bind",
                        f"127.0.0.1:{port}",
                        "--no-control-socket",
                        "config.wsgi",
                    ],
                    cwd=SERVICES_DIR,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(procs, urls, strict=True):

            def up(proc=proc, url=url):
                assert proc.poll() is None, f"gunicorn exited early, see {ARTIFACTS}"
                try:
                    return requests.get(url + "/", timeout=2).status_code == 200
                except requests.ConnectionError:
                    return False

            wait_until(up, timeout=60, interval=0.2, what=f"gunicorn on {url}")
        yield request.param != "0", urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def whoami(url: str, token: str) -> int:
    return requests.get(
        url + "/api/whoami/", headers={"Authorization": f"Token {token}"}, timeout=10
    ).status_code


def submit(url: str, token: str) -> str:
    response = requests.post(
        url + "/api/jobs/", json={"kind": "noop"}, headers={"Authorization": f"Token {token}"}, timeout=10
    )
    assert response.status_code == 202, response.text
    return response.json()["id"]


def status_read(url: str, token: str, job_id: str) -> int:
    # A status read checks the token in the same Redis round trip as it reads the job.
    return requests.get(
        f"{url}/api/jobs/{job_id}/", headers={"Authorization": f"Token {token}"}, timeout=10
    ).status_code


def user_with_token(name: str):
    user = get_user_model().objects.create(username=name)
    _, token = AuthToken.objects.create(user=user)
    return user, token


def accepted_everywhere(urls, token) -> bool:
    # Several requests each: every thread of every process has seen the token (and, with the
    # cache on, the token's user is in Redis) before it is revoked.
    return all(whoami(url, token) == 200 for url in urls for _ in range(3))


def cached(token: str) -> bool:
    from django.conf import settings
    from knox.crypto import hash_token

    key = token_cache.key_for_digest(settings.SECRET_KEY, hash_token(token))
    return token_cache.decode_user(token_cache._client().get(key)) is not None


def test_a_deleted_token_is_refused_by_every_process_at_once(web_processes):
    cache_on, urls = web_processes
    user, token = user_with_token("revoke-delete")
    _, other = AuthToken.objects.create(user=user)
    assert accepted_everywhere(urls, token) and accepted_everywhere(urls, other)
    assert cached(token) == cache_on
    job_id = submit(urls[0], token)
    assert [status_read(url, token, job_id) for url in urls for _ in range(3)] == [200] * 3 * PROCESSES

    call_command("revoke_api_tokens", user.username, "--prefix", token[:15], stdout=open(os.devnull, "w"))

    assert [whoami(url, token) for url in urls] == [401] * PROCESSES
    assert [status_read(url, token, job_id) for url in urls] == [401] * PROCESSES
    assert [status_read(url, other, job_id) for url in urls] == [200] * PROCESSES  # the user's job
    assert accepted_everywhere(urls, other)  # only that token was revoked


def test_every_token_of_a_deleted_or_deactivated_user_is_refused_at_once(web_processes):
    cache_on, urls = web_processes
    user, token = user_with_token("revoke-deactivate")
    assert accepted_everywhere(urls, token)
    user.is_active = False
    user.save()  # the admin's way (a signal tombstones every token of the user)
    assert [whoami(url, token) for url in urls] == [401] * PROCESSES

    gone, gone_token = user_with_token("revoke-user-deleted")
    assert accepted_everywhere(urls, gone_token)
    gone.delete()  # cascades to the tokens (each deletion tombstones its key)
    assert [whoami(url, gone_token) for url in urls] == [401] * PROCESSES


def test_revoke_command_deactivates_and_refuses(web_processes):
    _, urls = web_processes
    user, token = user_with_token("revoke-command")
    assert accepted_everywhere(urls, token)
    call_command("revoke_api_tokens", user.username, "--deactivate", stdout=open(os.devnull, "w"))
    assert [whoami(url, token) for url in urls] == [401] * PROCESSES
    user.refresh_from_db()
    assert not user.is_active and not AuthToken.objects.filter(user=user).exists()


def test_without_the_tombstone_a_cached_token_would_outlive_its_deletion(web_processes, monkeypatch):
    cache_on, urls = web_processes
    user, token = user_with_token("revoke-no-tombstone")
    assert accepted_everywhere(urls, token)
    job_id = submit(urls[0], token)
    monkeypatch.setattr(token_cache, "revoke_digests", lambda digests: 0)
    AuthToken.objects.filter(user=user).delete()
    answers = [whoami(url, token) for url in urls] + [status_read(url, token, job_id) for url in urls]
    # With the cache on, the deleted token still works until its entry expires: the tombstone
    # is what the tests above rely on. With the cache off, PostgreSQL is asked every time.
    assert answers == ([200] * 2 * PROCESSES if cache_on else [401] * 2 * PROCESSES)
