"""How settings read the environment: NAME, or the file NAME_FILE names (Docker and Swarm
secrets); the file wins over NAME."""

import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parents[2]
# django-environ's FileAwareEnv: NAME_FILE, when set, is read (once) instead of NAME.
env = environ.FileAwareEnv()


def secret(name: str, **kwargs) -> str | None:
    """A secret from NAME or NAME_FILE, without the trailing newline a file usually ends with
    (`echo ... | docker secret create` writes one; the postgres image strips it too)."""
    try:
        value = env.str(name, **kwargs)
    except OSError as exc:
        raise ImproperlyConfigured(
            f"{name}_FILE names {os.environ.get(name + '_FILE')!r}, which cannot be read: {exc.strerror}"
        ) from None
    return value.rstrip("\r\n") if value is not None else None
