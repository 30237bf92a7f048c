"""A stopping web process refuses new connections at once and answers every one it accepted.

Real gunicorn with the stack's configuration (services/config/gunicorn.py: the draining gthread
worker of web/gunicorn_worker.py), serving a small WSGI app with a slow URL. While a slow
request is in flight, the master gets SIGTERM, as `docker stop` sends it during scripts/deploy:
the request in flight must still be answered, and a connection opened meanwhile must be refused
(the proxy then tries another replica), not accepted into a queue nobody reads and reset later,
which the proxy reports as a 502.
"""

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import requests

from tests.support.stack import ROOT

APP = """
import time

def app(environ, start_response):
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"answered"]
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def gunicorn(request, tmp_path):
    """gunicorn with the stack's configuration; `threads` (default 4) by indirect parametrization."""
    (tmp_path / "slow_app.py").write_text(APP)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "services")]),
        "WEB_CONTAINER_PORT": str(port),
        "GUNICORN_WORKERS": "2",
        "GUNICORN_THREADS": str(getattr(request, "param", 4)),
        "GUNICORN_ACCESS_LOG": "false",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--config",
            "python:config.gunicorn",
            "--worker-tmp-dir",
            str(tmp_path),
            "--control-socket",
            str(tmp_path / "gunicorn.ctl"),
            "slow_app:app",
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(base, timeout=2)
            break
        except requests.ConnectionError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"gunicorn did not start: {process.communicate()[0][-2000:]}")
            time.sleep(0.2)
    yield process, port
    if process.poll() is None:
        process.kill()
    process.wait(timeout=30)


def test_sigterm_answers_the_request_in_flight_and_refuses_new_connections(gunicorn):
    process, port = gunicorn
    answers = []
    slow = threading.Thread(
        target=lambda: answers.append(requests.get(f"http://127.0.0.1:{port}/?3", timeout=30))
    )
    slow.start()
    time.sleep(0.5)  # the slow request is being served
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # both workers have begun their graceful stop; the slow request has 2 s to go

    # The stock gthread worker still holds the socket open here: the connect would succeed and the
    # request sent on it would be reset once the slow request is done.
    assert process.poll() is None, "gunicorn exited before its request in flight was answered"
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

    slow.join(timeout=30)
    assert [a.status_code for a in answers] == [200] and answers[0].text == "answered"
    assert process.wait(timeout=30) == 0


@pytest.mark.parametrize("gunicorn", [1], indirect=True)
def test_from_sigterm_on_the_socket_queues_no_new_connection(gunicorn):
    # With one thread (gunicorn's sync worker, which does not drain) a busy worker keeps its copy of
    # the socket open until its request is answered. The master's SIGTERM handler has made the
    # socket drop new connection attempts meanwhile: a connect gets no answer instead of landing in
    # a queue that is reset at the close; once the socket is closed it is refused.
    process, port = gunicorn
    answers = []
    busy = [
        threading.Thread(
            target=lambda: answers.append(requests.get(f"http://127.0.0.1:{port}/?3", timeout=30))
        )
        for _ in range(2)
    ]
    for thread in busy:
        thread.start()
    time.sleep(0.5)  # both sync workers are busy
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)

    assert process.poll() is None, "gunicorn exited before its requests in flight were answered"
    with pytest.raises(TimeoutError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

    for thread in busy:
        thread.join(timeout=30)
    assert [a.status_code for a in answers] == [200, 200]
    assert process.wait(timeout=30) == 0
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
