from django.apps import AppConfig


class BenchPeerConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "benchpeer"
    verbose_name = "Bench-only naive peer"
