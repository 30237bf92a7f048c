from django.urls import path

from benchpeer.views import PeerJobDetailView, PeerJobListView

urlpatterns = [
    path("jobs/", PeerJobListView.as_view(), name="peer-job-list"),
    path("jobs/<str:task_id>/", PeerJobDetailView.as_view(), name="peer-job-detail"),
]
