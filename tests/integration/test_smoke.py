"""Integration smoke: a job submitted by the web-side code runs in a real worker on Redis 5.0."""

import socket

import pytest
import redis
from django.conf import settings

from jobs import job_actions, job_store
from tests.support.wait import wait_until


def test_redis_is_5_0():
    client = redis.Redis(
        host=settings.REDIS_HOST, port=settings.REDIS_PORT, password=settings.REDIS_PASSWORD, protocol=2
    )
    version = client.info("server")["redis_version"]
    print(f"integration Redis server version: {version}")
    assert version.startswith("5.0."), version


@pytest.mark.django_db
def test_job_runs_in_real_worker(celery_worker_process, django_user_model):
    user = django_user_model.objects.create(username="smoke")
    submission = job_actions.submit(user=user, token="t" * 64, kind="sum_number", params={"x": 1, "y": 100})
    meta = wait_until(
        lambda: (m := job_store.read_meta(submission.job.id)) and m["status"] == "SUCCESS" and m,
        timeout=60,
        what="SUCCESS",
    )
    assert meta["result"]["output"] == {"sum": 5050, "count": 100}
    assert meta["result"]["hostname"] == socket.gethostname()


@pytest.mark.django_db
def test_models_and_migrations_agree():
    # A model change without its migration would fail here, not on `migrate` in production.
    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", verbosity=0)
