from django.contrib.auth import views as auth_views
from django.urls import path

from jobs import page_live, page_tokens, pages

urlpatterns = [
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(template_name="jobs/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("jobs/", pages.job_list, name="page-job-list"),
    path("jobs/new/", pages.kind_list, name="page-kinds"),
    path("jobs/new/<str:kind>/", pages.submit, name="page-submit"),
    path("jobs/live/", page_live.live, name="page-live"),
    path("jobs/<str:job_id>/", pages.job_detail, name="job-page"),
    path("jobs/<str:job_id>/cancel/", pages.cancel, name="page-cancel"),
    path("jobs/<str:job_id>/rerun/", pages.rerun, name="page-rerun"),
    path("tokens/", page_tokens.tokens, name="page-tokens"),
    path("tokens/revoke/", page_tokens.revoke_token, name="page-token-revoke"),
]
