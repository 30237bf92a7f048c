"""Beat's scheduler: django-celery-beat's database scheduler plus a liveness file.

Beat has no endpoint to probe, so each scheduler tick touches BEAT_HEARTBEAT_FILE and the
container healthcheck (compose/start/beat-healthcheck) tests its age.
"""

import os
from pathlib import Path

from django_celery_beat.schedulers import DatabaseScheduler as _DatabaseScheduler

HEARTBEAT_FILE = Path(os.environ.get("BEAT_HEARTBEAT_FILE", "/tmp/beat-heartbeat"))


class DatabaseScheduler(_DatabaseScheduler):
    def tick(self, *args, **kwargs):
        interval = super().tick(*args, **kwargs)
        HEARTBEAT_FILE.touch()
        return interval
