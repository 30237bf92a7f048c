"""Beat's scheduler: django-celery-beat's database scheduler, kept alive through a database
outage, plus a liveness file.

Beat has no endpoint to probe, so each scheduler tick touches BEAT_HEARTBEAT_FILE and the
container healthcheck (compose/start/healthcheck-beat) tests its age.

django-celery-beat reads the whole schedule again every 5 minutes; when PostgreSQL is down at
that moment the read raises out of the tick and beat exits (seen in the chaos test of a
PostgreSQL restart). A tick that cannot reach the database keeps the schedule last read, sends
nothing and tries again a few seconds later: nothing is sent before the failing read, so
nothing is sent twice. An entry sent while the database is down is saved once it answers: the
library's sync forgets an entry whose save failed, and the next full read would then bring back
its older last run and send it again.
"""

import datetime
import os
from pathlib import Path

from celery.utils.log import get_logger
from django.core.exceptions import ObjectDoesNotExist
from django.db import DatabaseError, InterfaceError, close_old_connections
from django_celery_beat.schedulers import DatabaseScheduler as _DatabaseScheduler

HEARTBEAT_FILE = Path(os.environ.get("BEAT_HEARTBEAT_FILE", "/tmp/beat-heartbeat"))
# Seconds between tries while the database does not answer.
RETRY_AFTER = 5.0

logger = get_logger(__name__)


class DatabaseScheduler(_DatabaseScheduler):
    def tick(self, *args, **kwargs):
        try:
            interval = super().tick(*args, **kwargs)
        except (DatabaseError, InterfaceError) as exc:
            if self._schedule is None:
                raise  # never read: no schedule to keep
            logger.warning(
                "beat: the database did not answer (%s); the schedule last read is kept, "
                "trying again in %.0f s",
                type(exc).__name__,
                RETRY_AFTER,
            )
            # The failed read counted as the 5-minute full read: have the next tick read again.
            self._last_full_sync = datetime.datetime.min
            interval = RETRY_AFTER
        HEARTBEAT_FILE.touch()
        return interval

    def sync(self):
        close_old_connections()
        for name in list(self._dirty):
            try:
                self._schedule[name].save()
            except (KeyError, TypeError, ObjectDoesNotExist):
                continue  # tried again at the next sync, as the library does
            except (DatabaseError, InterfaceError) as exc:
                logger.warning(
                    "beat: the database did not answer (%s); %d entries' last runs are saved later",
                    type(exc).__name__,
                    len(self._dirty),
                )
                return
            self._dirty.discard(name)
