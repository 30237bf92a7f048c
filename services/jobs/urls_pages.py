from django.urls import path

from jobs.views import job_page

urlpatterns = [
    path("jobs/<str:job_id>/", job_page, name="job-page"),
]
