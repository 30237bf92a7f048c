"""The worker's liveness file and compose/start/healthcheck-worker, on a real worker process
(real Redis 5.0 broker): touched by the running worker's loop, judged by its age, removed on
a clean stop."""

import os
import subprocess
import time

from tests.integration.workers import running_worker
from tests.support.stack import ROOT
from tests.support.wait import wait_until

HEALTHCHECK = ROOT / "compose" / "start" / "healthcheck-worker"


def healthcheck(alive) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(HEALTHCHECK)],
        env={**os.environ, "WORKER_LIVENESS_FILE": str(alive)},
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_liveness_file_follows_the_workers_loop(tmp_path):
    alive = tmp_path / "alive"
    before = healthcheck(alive)
    assert before.returncode == 1 and "no liveness file" in before.stdout

    with running_worker("liveness", "liveness", concurrency=1, env={"WORKER_LIVENESS_FILE": str(alive)}):
        first = wait_until(
            lambda: alive.exists() and alive.stat().st_mtime, timeout=30, what="the liveness file"
        )
        wait_until(
            lambda: alive.stat().st_mtime > first,
            timeout=30,
            interval=0.5,
            what="the liveness file touched again",
        )
        assert healthcheck(alive).returncode == 0

        # As if the loop had stopped two minutes ago: unhealthy, until the loop touches it again.
        os.utime(alive, (time.time() - 120, time.time() - 120))
        stale = healthcheck(alive)
        assert stale.returncode == 1 and "last touched 1" in stale.stdout, stale.stdout
        wait_until(lambda: healthcheck(alive).returncode == 0, timeout=30, interval=0.5, what="healthy again")

    # Warm shutdown removed it: a restarted worker is not live until its own loop runs.
    assert not alive.exists()
    assert healthcheck(alive).returncode == 1
