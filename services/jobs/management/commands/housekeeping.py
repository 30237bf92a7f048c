"""Run one pass of each housekeeping job now and print what it cost: `manage.py housekeeping`.

The passes are the ones the stack runs by itself (beat's lost-job recovery, the workers' sweep
for dead workers' jobs and their archive of finished jobs); running them by hand is safe at
any time (each is idempotent, and the recovery and the archive take their stack-wide lock).
With --json it prints one JSON object: per pass, its seconds and what it handled, for the
capacity checks (scripts/soak backlog, docs/capacity.md).
"""

import json
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from jobs import archive, dead_workers, lost_messages


def timed(run) -> dict:
    started = time.monotonic()
    result = run()
    return {"seconds": round(time.monotonic() - started, 3), **result}


def recovery_pass() -> dict:
    scan = lost_messages.BrokerScan()
    recovered = lost_messages.recover_lost_jobs(scan=scan)
    return {
        "published_again": len(recovered),
        "messages_read": scan.messages,
        "replies": scan.replies,
        "largest_reply_bytes": scan.largest_reply,
        "broker_read_whole": scan.complete,
    }


def sweep_pass() -> dict:
    if not dead_workers.enabled():
        return {"skipped": "not on the Redis broker"}
    watch = dead_workers.DeliveryWatch("housekeeping-command", settings.JOB_WORKER_LOST_AFTER)
    try:
        return {"put_back": len(watch.sweep()), "largest_reply_bytes": watch.largest_reply}
    finally:
        watch.stop()


def archive_pass() -> dict:
    archiver = archive.Archiver()
    try:
        return {"entries": archiver.run_pass(), "largest_reply_bytes": archiver.largest_reply}
    finally:
        archiver.close_db()


class Command(BaseCommand):
    help = "Run one pass of the lost-job recovery, the dead-worker sweep and the job archive now."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", dest="as_json", help="Print one JSON object.")

    def handle(self, *args, as_json: bool = False, **options):
        report = {
            "recovery": timed(recovery_pass),
            "sweep": timed(sweep_pass),
            "archive": timed(archive_pass),
        }
        if as_json:
            self.stdout.write(json.dumps(report))
            return
        for name, figures in report.items():
            self.stdout.write(f"{name}: " + ", ".join(f"{key} {value}" for key, value in figures.items()))
