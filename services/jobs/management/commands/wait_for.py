"""manage.py wait_for database|migrations: return once PostgreSQL accepts connections, or once it
holds every migration of this image (compose/start/wait-for-*: Swarm has no depends_on).

One process asks every 3 s: a `manage.py migrate --check` per try would start Django each time,
a second of CPU per task per try, while a deploy starts many tasks at once."""

import time

from django.core.management.base import BaseCommand
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

INTERVAL = 3


def database_ready() -> bool:
    connection.ensure_connection()
    return True


def migrations_applied() -> bool:
    executor = MigrationExecutor(connection)
    return not executor.migration_plan(executor.loader.graph.leaf_nodes())


CHECKS = {
    "database": (database_ready, "PostgreSQL", "answered"),
    "migrations": (migrations_applied, "the migrate job", "applied the migrations"),
}


class Command(BaseCommand):
    help = "Wait until PostgreSQL answers (database) or holds every migration (migrations)."

    def add_arguments(self, parser):
        parser.add_argument("what", choices=CHECKS)

    def handle(self, *args, what: str, **options):
        check, waited_for, done = CHECKS[what]
        started, said = time.monotonic(), False
        while True:
            try:
                if check():
                    break
            except Exception:  # noqa: BLE001 - not there yet: keep waiting
                connection.close()
            if not said:
                self.stderr.write(f"wait_for: waiting for {waited_for}")
                said = True
            time.sleep(INTERVAL)
        if said:
            self.stderr.write(f"wait_for: {waited_for} {done} after {time.monotonic() - started:.0f} s")
        connection.close()
