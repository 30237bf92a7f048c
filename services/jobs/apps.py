from django.apps import AppConfig


class JobsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "jobs"
    verbose_name = "Background jobs"

    def ready(self):
        # Registers every job kind (jobs.base.KINDS) in each process: web validates and
        # publishes them, workers run them. jobs.orphans connects the worker signals that
        # put back the jobs of dead workers (they never fire outside a worker).
        from jobs import orphans, tasks  # noqa: F401
