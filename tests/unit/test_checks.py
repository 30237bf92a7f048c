"""unit: no services. Start-up rules for secrets and production mode (config.checks)."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import checks

STRONG = "k3J9x2Lq8Zp4Vw7Rt5Yb1Nm6"
GOOD_SECRETS = {
    "DJANGO_SECRET_KEY": STRONG,
    "JOB_ID_SECRET": STRONG + "a",
    "POSTGRES_PASSWORD": STRONG + "b",
    "REDIS_PASSWORD": STRONG + "c",
    "FLOWER_PASSWORD": None,
}
GOOD_PRODUCTION = dict(
    debug=False,
    allowed_hosts=["jobs.example.com"],
    csrf_trusted_origins=["https://jobs.example.com"],
    secrets=GOOD_SECRETS,
)


def test_strong_secrets_pass():
    assert checks.weak_secrets(GOOD_SECRETS) == []


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "short",
        "x" * (checks.MIN_SECRET_LENGTH - 1),
        "django-insecure-dev-secret-key-change-me",
        f"{STRONG}{checks.DEV_SECRET_MARKER}",
    ],
    ids=["empty", "blank", "short", "one-too-short", "dev-default", "marker-inside"],
)
def test_weak_secret_values_are_named(value):
    secrets = {**GOOD_SECRETS, "REDIS_PASSWORD": value}
    assert checks.weak_secrets(secrets) == ["REDIS_PASSWORD"]


def test_exactly_min_length_is_accepted():
    assert checks.weak_secrets({"A": "y" * checks.MIN_SECRET_LENGTH}) == []


def test_none_means_not_checked():
    assert checks.weak_secrets({"FLOWER_PASSWORD": None, "JOB_ID_SECRET": None}) == []


def test_every_weak_secret_is_named():
    secrets = {
        "DJANGO_SECRET_KEY": "",
        "JOB_ID_SECRET": "insecure-dev-job-id-secret-abcdef",
        "POSTGRES_PASSWORD": STRONG,
        "REDIS_PASSWORD": "pw",
        "FLOWER_PASSWORD": None,
    }
    assert checks.weak_secrets(secrets) == ["DJANGO_SECRET_KEY", "JOB_ID_SECRET", "REDIS_PASSWORD"]


def test_good_production_settings_have_no_problems():
    assert checks.production_problems(**GOOD_PRODUCTION) == []


@pytest.mark.parametrize(
    "change, variable",
    [
        (dict(debug=True), "DJANGO_DEBUG"),
        (dict(allowed_hosts=[]), "DJANGO_ALLOWED_HOSTS"),
        (dict(allowed_hosts=["jobs.example.com", "*"]), "DJANGO_ALLOWED_HOSTS"),
        (dict(csrf_trusted_origins=[]), "DJANGO_CSRF_TRUSTED_ORIGINS"),
        (dict(secrets={**GOOD_SECRETS, "FLOWER_PASSWORD": "admin"}), "FLOWER_PASSWORD"),
    ],
)
def test_each_production_problem_names_its_variable(change, variable):
    problems = checks.production_problems(**{**GOOD_PRODUCTION, **change})
    assert len(problems) == 1
    assert problems[0].startswith(variable)


def test_production_refuses_to_start_naming_each_bad_variable(capsys):
    bad = dict(
        debug=True,
        allowed_hosts=["*"],
        csrf_trusted_origins=[],
        secrets={**GOOD_SECRETS, "DJANGO_SECRET_KEY": "insecure-dev-key-0123456789", "POSTGRES_PASSWORD": ""},
    )
    with pytest.raises(ImproperlyConfigured) as raised:
        checks.enforce_production_rules(production=True, **bad)
    message = str(raised.value)
    for variable in (
        "DJANGO_SECRET_KEY",
        "POSTGRES_PASSWORD",
        "DJANGO_DEBUG",
        "DJANGO_ALLOWED_HOSTS",
        "DJANGO_CSRF_TRUSTED_ORIGINS",
    ):
        assert variable in message
    for fine in ("JOB_ID_SECRET", "REDIS_PASSWORD", "FLOWER_PASSWORD"):
        assert fine not in message
    # the secret values themselves are never echoed
    assert "insecure-dev-key-0123456789" not in message
    assert capsys.readouterr().err == ""


def test_production_with_good_settings_starts_silently(capsys):
    checks.enforce_production_rules(production=True, **GOOD_PRODUCTION)
    assert capsys.readouterr().err == ""


def test_development_only_warns_on_stderr(capsys):
    dev = dict(
        debug=True,
        allowed_hosts=["*"],
        csrf_trusted_origins=[],
        secrets={**GOOD_SECRETS, "JOB_ID_SECRET": "insecure-dev-job-id-secret-0123"},
    )
    checks.enforce_production_rules(production=False, **dev)  # does not raise
    err = capsys.readouterr().err
    assert "WARNING" in err
    assert "JOB_ID_SECRET" in err
    assert "REDIS_PASSWORD" not in err
    assert "insecure-dev-job-id-secret-0123" not in err


def test_development_with_strong_secrets_is_quiet(capsys):
    checks.enforce_production_rules(
        production=False, debug=True, allowed_hosts=["*"], csrf_trusted_origins=[], secrets=GOOD_SECRETS
    )
    assert capsys.readouterr().err == ""


def test_none_secret_is_not_checked_in_production():
    # FLOWER_PASSWORD is None outside the flower container: production still starts.
    checks.enforce_production_rules(
        production=True, **{**GOOD_PRODUCTION, "secrets": {**GOOD_SECRETS, "FLOWER_PASSWORD": None}}
    )
