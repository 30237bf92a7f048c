"""Self-service API tokens on the pages: create (shown once), name, list by prefix, revoke.
Revocation acts at once on every web process (jobs/token_cache.py)."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST
from knox.models import AuthToken

from jobs.job_display import format_time, unavailable_message
from jobs.models import TokenName

TOKEN_NAME_MAX = TokenName._meta.get_field("name").max_length


@sensitive_variables("raw", "new_token")
@sensitive_post_parameters()
@login_required
@require_http_methods(["GET", "POST"])
def tokens(request):
    """The user's API tokens: list by prefix, create (the token is shown in this answer only:
    nothing keeps it, the database has its digest), revoke."""
    new_token = None
    name, error = "", None
    if request.method == "POST":
        name = request.POST.get("name", "").strip()
        if not name:
            error = "Give the token a name, to tell it apart from your others later."
        elif len(name) > TOKEN_NAME_MAX:
            error = f"Use at most {TOKEN_NAME_MAX} characters."
        else:
            with transaction.atomic():
                record, raw = AuthToken.objects.create(user=request.user)
                TokenName.objects.create(token=record, name=name)
            new_token = {"name": name, "token": raw, "prefix": record.token_key}
            name = ""
    records = AuthToken.objects.filter(user=request.user).order_by("-created")
    names = dict(TokenName.objects.filter(token__user=request.user).values_list("token_id", "name"))
    rows = [
        {
            "name": names.get(record.digest, ""),
            "prefix": record.token_key,
            "created_text": format_time(record.created),
            "created_at": record.created.isoformat(),
        }
        for record in records
    ]
    response = render(
        request,
        "jobs/tokens.html",
        {
            "nav": "tokens",
            "tokens": rows,
            "new_token": new_token,
            "name": name,
            "error": error,
            "name_max": TOKEN_NAME_MAX,
            "api_url": request.build_absolute_uri(reverse("job-list")),
        },
        status=400 if error else 200,
    )
    # A new token is in this answer: no cache may keep it (nor the list: it is private anyway).
    patch_cache_control(response, no_store=True, private=True)
    return response


@login_required
@require_POST
def revoke_token(request):
    """Delete the user's token(s) with this prefix: every web process refuses it from the next
    request on (jobs/token_cache.py: the deletion writes its tombstone, or fails if Redis
    cannot take it). The prefix comes in the body, not the path: access logs show paths."""
    prefix = request.POST.get("prefix", "")
    tokens_ = AuthToken.objects.filter(user=request.user, token_key=prefix) if prefix.isalnum() else None
    digests = list(tokens_.values_list("digest", flat=True)) if tokens_ is not None else []
    if not digests:
        messages.error(request, "No token of yours starts with that.")
        return redirect("page-tokens")
    names = sorted(set(TokenName.objects.filter(token_id__in=digests).values_list("name", flat=True)))
    try:
        tokens_.delete()
    except Exception as exc:
        problem = unavailable_message(exc)
        if problem is None:
            raise
        messages.error(request, f"Not revoked: {problem}")
        return redirect("page-tokens")
    label = f"“{', '.join(names)}” ({prefix}…)" if names else f"{prefix}…"
    messages.success(request, f"Token {label} revoked: the API refuses it from now on.")
    return redirect("page-tokens")
