"""URL map: health, admin (configurable path), the jobs API and its schema, the progress page."""

from django.conf import settings
from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView
from web.health import healthz


def index(request):
    return JsonResponse({"jobs": "/api/jobs/", "schema": "/api/schema/", "health": "/healthz"})


urlpatterns = [
    path("", index),
    path("healthz", healthz),
    path(settings.ADMIN_PATH, admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/", include("jobs.urls_api")),
    path("", include("jobs.urls_pages")),
]
if settings.BENCH_PEER_APP:  # bench-only peer baseline (scripts/bench row 6); never in production
    urlpatterns.insert(-1, path("bench-peer/api/", include("benchpeer.urls")))

handler400 = "web.errors.bad_request"
handler403 = "web.errors.permission_denied"
handler404 = "web.errors.not_found"
handler500 = "web.errors.server_error"
