"""A job record per submitted run: who, what, when, and how it ended.

While a job is queued or running its state lives in Redis (jobs/job_store.py); once it finished,
jobs/archive.py copies the final state into `outcome`, and Redis keeps it only for
JOB_HOT_SECONDS more. Reads take Redis's copy while there is one, else this record's.
"""

from django.conf import settings
from django.db import models
from django.utils import timezone


class Job(models.Model):
    # The Celery task id, derived from the token (jobs.ids.job_id): never the token itself.
    id = models.CharField(primary_key=True, max_length=36, editable=False)
    # HMAC of the submitting token (jobs.ids.owner_key): finds a (token, name) pair's runs.
    owner = models.CharField(max_length=32, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    name = models.CharField(max_length=100)
    run = models.PositiveIntegerField(default=1)
    kind = models.CharField(max_length=50)
    params = models.JSONField(default=dict, blank=True)
    submitted_at = models.DateTimeField(default=timezone.now)
    cancelled_at = models.DateTimeField(null=True, blank=True)
    # The final state as Celery wrote it to Redis (status, result, date_done), and when the job
    # finished; both null until jobs.archive copies them, null for good if it never finished.
    outcome = models.JSONField(null=True, blank=True, editable=False)
    finished_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-submitted_at"]
        constraints = [
            # Its index also serves a (token, name) pair's latest run (service.latest_run: the
            # same columns scanned backwards), so no second index on them: each index is one
            # more write per submission and per archived outcome.
            models.UniqueConstraint(fields=["owner", "name", "run"], name="job_unique_run")
        ]
        indexes = [
            models.Index(fields=["user", "-submitted_at"], name="job_user_recent"),
            # The lost-job recovery and the purge look jobs up by submission time.
            models.Index(fields=["submitted_at"], name="job_submitted"),
            # The lost-job recovery's candidates: only jobs not yet finished, so its query does
            # not grow with the finished jobs of the day.
            models.Index(
                fields=["submitted_at"],
                name="job_unfinished",
                condition=models.Q(finished_at__isnull=True, cancelled_at__isnull=True),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} #{self.run} ({self.id})"


class TokenName(models.Model):
    """The name a person gave an API token on the tokens page (knox's token has no name field).

    Deleted with its token; tokens made by `manage.py create_api_user` have none."""

    token = models.OneToOneField(
        "knox.AuthToken", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    name = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name
