"""Print the fingerprint of this container's JOB_ID_SECRET (jobs.ids.secret_fingerprint), for
scripts/backup to record and scripts/restore to compare: the secret itself never leaves."""

from django.conf import settings
from django.core.management.base import BaseCommand

from jobs.ids import secret_fingerprint


class Command(BaseCommand):
    help = "Print the HMAC-SHA256 fingerprint of JOB_ID_SECRET (not the secret)."
    # Reads one setting: no database or system check needed (restore runs it before PostgreSQL holds the app's tables).
    requires_system_checks = []

    def handle(self, *args, **options):
        self.stdout.write(secret_fingerprint(settings.JOB_ID_SECRET))
