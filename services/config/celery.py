"""The Celery app of every container: configured from Django settings (CELERY_* names)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("config")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from jobs.worker_liveness import LivenessFile  # noqa: E402 - needs the app above

app.steps["consumer"].add(LivenessFile)

# A worker serves its pool's metrics once it is ready, when METRICS_PORT is set.
from config import metrics  # noqa: E402,F401 - connects the worker_ready signal
