"""The naive job record: Model.objects.create(...) with Celery's random task id."""

from django.conf import settings
from django.db import models


class PeerJob(models.Model):
    task_id = models.CharField(max_length=36, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=50)
    params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
