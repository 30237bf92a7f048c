"""Django's PostgreSQL backend (settings ENGINE "config.postgresql"), checking a reused
connection's health only when it has been idle.

With CONN_HEALTH_CHECKS Django sends `SELECT 1` before the first query of every request on a
kept connection: one round trip of four in a job submission (BEGIN, INSERT, COMMIT; measured in
docs/benchmarks.md). A connection that ended a request without error less than
HEALTH_CHECK_IDLE_SECONDS ago is taken as healthy; an idle one is checked as before, so a
PostgreSQL restart (which takes longer than that) still costs no failed request once it is back.
"""

import time

from django.db.backends.postgresql import base

HEALTH_CHECK_IDLE_SECONDS = 1.0


class DatabaseWrapper(base.DatabaseWrapper):
    # When this connection last ended a request (or a Celery task) having worked.
    worked_at = float("-inf")

    def close_if_unusable_or_obsolete(self):
        # Called as a request starts and as it ends. At the end of one that used the connection
        # (its health check done, or skipped, or the connection new) with no error but bad data
        # or a constraint (those leave errors_occurred unset), the connection has just worked.
        if self.connection is not None and self.health_check_done and not self.errors_occurred:
            self.worked_at = time.monotonic()
        super().close_if_unusable_or_obsolete()

    def close_if_health_check_failed(self):
        if (
            self.connection is not None
            and not self.health_check_done
            and time.monotonic() - self.worked_at < HEALTH_CHECK_IDLE_SECONDS
        ):
            self.health_check_done = True
            return
        super().close_if_health_check_failed()
