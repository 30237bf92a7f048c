"""Start-up rules for secrets and production mode (pure logic, unit-tested without services).

Every development default secret in docker-compose.yml contains DEV_SECRET_MARKER, so a dev
value is recognised without keeping a second copy of it here. scripts/swarm-deploy applies the
same rules before it deploys, loading this file alone (it needs no Django until a refusal).
"""

import sys

DEV_SECRET_MARKER = "insecure-dev"
MIN_SECRET_LENGTH = 16


def weak_secrets(secrets: dict[str, str | None]) -> list[str]:
    """Names of the secrets that are empty, too short or a marked development default.

    A None value means the variable is not given to this container and is not checked.
    """
    return [
        name
        for name, value in secrets.items()
        if value is not None
        and (not value.strip() or DEV_SECRET_MARKER in value or len(value) < MIN_SECRET_LENGTH)
    ]


def production_problems(
    *, debug: bool, allowed_hosts: list[str], csrf_trusted_origins: list[str], secrets: dict[str, str | None]
) -> list[str]:
    """Every reason the production settings are unsafe, each naming the variable to fix."""
    problems = [
        f"{name} is empty, shorter than {MIN_SECRET_LENGTH} characters or a development "
        f"default; set a strong random value (scripts/gen-prod-env writes one)"
        for name in weak_secrets(secrets)
    ]
    if debug:
        problems.append("DJANGO_DEBUG must be off in production")
    if not allowed_hosts or "*" in allowed_hosts:
        problems.append("DJANGO_ALLOWED_HOSTS must list the site's host names (no '*')")
    if not csrf_trusted_origins:
        problems.append("DJANGO_CSRF_TRUSTED_ORIGINS must list the site's origins, e.g. https://example.com")
    return problems


def enforce_production_rules(
    *,
    production: bool,
    debug: bool,
    allowed_hosts: list[str],
    csrf_trusted_origins: list[str],
    secrets: dict[str, str | None],
) -> None:
    """Refuse to start in production with unsafe settings; warn in development."""
    from django.core.exceptions import ImproperlyConfigured

    if production:
        problems = production_problems(
            debug=debug,
            allowed_hosts=allowed_hosts,
            csrf_trusted_origins=csrf_trusted_origins,
            secrets=secrets,
        )
        if problems:
            raise ImproperlyConfigured("APP_ENV=production refuses to start:\n  - " + "\n  - ".join(problems))
        return
    weak = weak_secrets(secrets)
    if weak:
        # Logging is not configured yet while settings load: write straight to stderr.
        print(
            f"WARNING: running with development secrets ({', '.join(weak)}); "
            "never expose this stack. Set APP_ENV=production with real secrets to deploy.",
            file=sys.stderr,
        )
