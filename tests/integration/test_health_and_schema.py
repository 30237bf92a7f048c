"""integration: /healthz against the real PostgreSQL and Redis 5.0 containers; the OpenAPI schema."""

import json

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_healthz_reports_database_and_redis_ok():
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "redis": "ok"}
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_schema_lists_the_job_endpoints():
    response = Client().get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    document = json.loads(response.content)
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert "/api/jobs/" in paths
    assert "/api/jobs/{job_id}/" in paths
    assert {"get", "post"} <= set(paths["/api/jobs/"])
    assert {"get", "delete"} <= set(paths["/api/jobs/{job_id}/"])
    # The read documents its own answers: an unknown id (404), an expired result (410).
    read = paths["/api/jobs/{job_id}/"]["get"]
    assert {"200", "404", "410", "429", "503"} <= set(read["responses"]), read["responses"]
    assert read["summary"] == "Read a job's state, progress and result"
    assert "job_store_full" in paths["/api/jobs/"]["post"]["responses"]["503"]["description"]


def test_schema_default_rendering_is_yaml_and_names_the_paths():
    response = Client().get("/api/schema/")
    assert response.status_code == 200
    text = response.content.decode()
    assert "openapi:" in text
    assert "/api/jobs/:" in text and "/api/jobs/{job_id}/:" in text
