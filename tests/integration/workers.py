"""Real Celery worker processes for the integration tests, on the real Redis 5.0 broker.

Each runs `celery worker` from services/ with the test process's environment (so it shares the
broker, result backend and database with the code under test) plus what a test adds, logs to
artifacts/, and answers ping before it is handed out. Each gets a session of its own, so a
test can SIGKILL the whole worker (main process and pool processes) as a crash would.
"""

import os
import signal
import socket
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from celery import current_app
from django.db import connection

from tests.support.stack import ARTIFACTS
from tests.support.wait import wait_until

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"


@dataclass
class WorkerProcess:
    node: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL every process of the worker at once: no shutdown code runs."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


def start_worker(
    name: str,
    queues: str,
    *,
    concurrency: int = 2,
    env: dict | None = None,
    extra: tuple[str, ...] = (),
    files: str | None = None,
) -> WorkerProcess:
    """files: what its log and liveness files are named after, when not the worker's name (two
    workers of one name)."""
    ARTIFACTS.mkdir(exist_ok=True)
    node = f"{name}@%h"
    files = files or name
    log_path = ARTIFACTS / f"integration-{files}.log"
    # Each worker its own liveness file (services/jobs/worker_liveness.py), not the shared /tmp one,
    # and the tests' database (pytest-django's test_<name>, set up by then), where its archiver
    # writes the outcomes of finished jobs (services/jobs/archive.py).
    own = {
        "WORKER_LIVENESS_FILE": str(ARTIFACTS / f"integration-{files}.alive"),
        "POSTGRES_DB": connection.settings_dict["NAME"],
    }
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "--app=config",
                "worker",
                f"--queues={queues}",
                f"--concurrency={concurrency}",
                "--loglevel=INFO",
                f"--hostname={node}",
                *extra,
            ],
            cwd=SERVICES_DIR,
            env={**os.environ, **own, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(node.replace("%h", socket.gethostname()), process, log_path)

    def answers_ping():
        assert process.poll() is None, f"worker {name} exited early, see {log_path}"
        return current_app.control.ping(destination=[worker.node], timeout=1.0)

    try:
        wait_until(answers_ping, timeout=60, interval=0.5, what=f"{worker.node} to answer ping")
    except BaseException:
        worker.stop()
        raise
    return worker


@contextmanager
def running_worker(name: str, queues: str, **kwargs):
    worker = start_worker(name, queues, **kwargs)
    try:
        yield worker
    finally:
        worker.stop()
