"""A job record per submitted run: who, what, when. State and results live in Redis."""

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

    class Meta:
        ordering = ["-submitted_at"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name", "run"], name="job_unique_run"),
        ]
        indexes = [
            models.Index(fields=["user", "-submitted_at"], name="job_user_recent"),
            models.Index(fields=["owner", "name", "-run"], name="job_owner_name_run"),
            # The lost-job recovery and the purge look jobs up by submission time.
            models.Index(fields=["submitted_at"], name="job_submitted"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.name} #{self.run} ({self.id})"
