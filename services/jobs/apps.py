from django.apps import AppConfig


class JobsConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "jobs"
    verbose_name = "Background jobs"

    def ready(self):
        # Registers every job kind (jobs.base.KINDS) in each process: web validates and
        # publishes them, workers run them. jobs.dead_workers and jobs.archive connect the worker
        # signals that put back the jobs of dead workers and move finished jobs to PostgreSQL
        # (they never fire outside a worker). jobs.metrics counts what the jobs do.
        # A deleted token or a deactivated user is refused at once by every web process,
        # whatever the token cache holds (jobs/token_cache.py).
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save
        from knox.models import AuthToken

        from jobs import archive, dead_workers, metrics, tasks, token_cache  # noqa: F401

        post_delete.connect(
            token_cache.on_token_deleted, sender=AuthToken, dispatch_uid="jobs.token_cache.token_deleted"
        )
        post_save.connect(
            token_cache.on_user_saved, sender=get_user_model(), dispatch_uid="jobs.token_cache.user_saved"
        )
