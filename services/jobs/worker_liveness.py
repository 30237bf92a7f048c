"""Worker liveness for the container healthcheck, without starting Python each time.

A consumer bootstep touches WORKER_LIVENESS_FILE every few seconds from the worker's event loop
(the loop that takes messages and hands them to the pool); compose/start/healthcheck-worker
only compares the file's age with the clock. `celery inspect ping`, the usual check, starts a
Python process importing Django and Celery on every probe: seconds of CPU per worker every
interval, and on a busy host it outlasted its timeout and reported healthy workers unhealthy.
The file is removed when the consumer starts and stops, so a restarted worker is not taken for
live before its loop runs; while the broker is unreachable the loop does not run and the file
ages, as a ping would fail.
"""

import os
from pathlib import Path

from celery import bootsteps

LIVENESS_FILE = Path(os.environ.get("WORKER_LIVENESS_FILE", "/tmp/worker-alive"))
TOUCH_EVERY = 5.0  # seconds; healthcheck-worker allows 30


def _remove() -> None:
    LIVENESS_FILE.unlink(missing_ok=True)


class LivenessFile(bootsteps.StartStopStep):
    """Touches LIVENESS_FILE from the consumer's timer while the consumer runs."""

    requires = {"celery.worker.consumer.tasks:Tasks"}

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        self._timer_entry = None
        _remove()

    def start(self, parent):
        self._touch()
        self._timer_entry = parent.timer.call_repeatedly(TOUCH_EVERY, self._touch)

    def stop(self, parent):
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None
        _remove()

    shutdown = stop

    @staticmethod
    def _touch() -> None:
        try:
            LIVENESS_FILE.touch()
        except OSError:
            pass  # the healthcheck then reports the worker unhealthy, which is what it is
