"""Read a job from any container: `manage.py job status --name NAME` with the token in JOB_TOKEN.

The id is computed from the token and name alone (jobs.ids), exactly as web computed it,
then its state is read from the result backend, or from the job's record once Redis no longer
holds it. The token is read from the JOB_TOKEN
environment variable or stdin (--token-stdin), never from the command line, so it stays out
of process listings and shell history.
"""

import json
import os
import sys

from django.core.management.base import BaseCommand, CommandError

from jobs import job_actions, job_store, presentation
from jobs.models import Job


class Command(BaseCommand):
    help = "Job tools. `status`: print a job's state and result given its name and the token."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        show = sub.add_parser("status", help="Print state, progress and result as JSON.")
        show.add_argument("--name", required=True, help="The job's name.")
        show.add_argument("--run", type=int, help="Run number (default: the latest run).")
        show.add_argument(
            "--token-stdin", action="store_true", help="Read the token from stdin instead of JOB_TOKEN."
        )

    def handle(self, *args, action, name, run, token_stdin, **options):
        token = sys.stdin.readline().strip() if token_stdin else os.environ.get("JOB_TOKEN", "")
        if not token:
            raise CommandError("Give the token in the JOB_TOKEN environment variable or with --token-stdin.")
        if run is None:
            latest = job_actions.latest_run(token, name)
            run = latest.run if latest else 1
        job_id = job_actions.job_id_for(token, name, run)
        meta = job_store.read_meta(job_id)
        if meta is None:
            # Finished and no longer in Redis: the outcome its record keeps (jobs/archive.py).
            record = Job.objects.filter(pk=job_id).first()
            meta = job_store.archived_meta(record) if record is not None else None
        if meta is None:
            raise CommandError(
                f"No state for job {name!r} run {run} (id {job_id}): "
                "never submitted with this token, or its result expired."
            )
        self.stdout.write(
            json.dumps(
                {"id": job_id, "name": name, "run": run, **presentation.describe(meta)},
                indent=2,
                sort_keys=True,
            )
        )
