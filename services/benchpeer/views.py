"""The peer API, written the way the common Django + Celery guides teach it.

- DRF's TokenAuthentication (rest_framework.authtoken: one query per request, the raw key
  stored in the database);
- submit: a ModelSerializer validates, `task.delay()` returns Celery's random id, and
  `PeerJob.objects.create(...)` records it;
- status: the record by task id, then `AsyncResult(id).state` and `.result`;
- list: the user's records, each with `AsyncResult(id).state`.

No deduplication, no token-derived ids, no PENDING state written, no 503 handling beyond the
stack's own middleware. It is the baseline, not an example to follow.
"""

from celery.result import AsyncResult
from django.shortcuts import get_object_or_404
from rest_framework import serializers, status
from rest_framework.authentication import TokenAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from benchpeer.models import PeerJob
from benchpeer.tasks import noop

TASKS = {"noop": noop}


class PeerJobSerializer(serializers.ModelSerializer):
    kind = serializers.ChoiceField(choices=sorted(TASKS))

    class Meta:
        model = PeerJob
        fields = ["kind", "params"]


class PeerView(APIView):
    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]
    schema = None  # not part of the stack's API schema


class PeerJobListView(PeerView):
    def post(self, request):
        serializer = PeerJobSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = TASKS[data["kind"]].delay(**data.get("params", {}))
        PeerJob.objects.create(
            task_id=result.id, user=request.user, kind=data["kind"], params=data.get("params", {})
        )
        return Response({"id": result.id}, status=status.HTTP_202_ACCEPTED)

    def get(self, request):
        page_size = min(int(request.query_params.get("page_size", 20)), 200)
        page = max(int(request.query_params.get("page", 1)), 1)
        jobs = PeerJob.objects.filter(user=request.user).order_by("-id")[
            (page - 1) * page_size : page * page_size
        ]
        return Response(
            {"results": [{"id": job.task_id, "state": AsyncResult(job.task_id).state} for job in jobs]}
        )


class PeerJobDetailView(PeerView):
    def get(self, request, task_id):
        job = get_object_or_404(PeerJob, task_id=task_id, user=request.user)
        result = AsyncResult(job.task_id)
        return Response(
            {
                "id": job.task_id,
                "kind": job.kind,
                "state": result.state,
                "result": result.result if result.successful() else None,
            }
        )
