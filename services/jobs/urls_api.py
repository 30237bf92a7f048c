from django.urls import path

from jobs.views import JobDetailView, JobListView, WhoAmIView

urlpatterns = [
    path("whoami/", WhoAmIView.as_view(), name="whoami"),
    path("jobs/", JobListView.as_view(), name="job-list"),
    path("jobs/<str:job_id>/", JobDetailView.as_view(), name="job-detail"),
]
