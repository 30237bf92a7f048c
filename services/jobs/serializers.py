"""API input validation and the documented shape of API answers (OpenAPI via drf-spectacular)."""

from rest_framework import serializers

from jobs.base import KINDS, kind_enabled
from jobs.ids import JOB_NAME_PATTERN


class JobSubmitSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=sorted(KINDS), help_text="The kind of job to run.")
    name = serializers.RegexField(
        JOB_NAME_PATTERN,
        required=False,
        max_length=100,
        help_text="Your name for the job (1-100 of A-Z a-z 0-9 . _ : -). Submitting the same "
        "name again while it is pending or running returns that job. Default: a new "
        "random name.",
        error_messages={
            "invalid": "Use 1-100 characters among A-Z a-z 0-9 . _ : - starting with a letter or digit."
        },
    )
    params = serializers.DictField(
        required=False,
        default=dict,
        help_text="Parameters of the kind: "
        + "; ".join(
            f"{name}: {', '.join(kind.params().fields) or 'none'}" for name, kind in sorted(KINDS.items())
        )
        + ".",
    )
    rerun = serializers.BooleanField(
        required=False, default=False, help_text="Start a fresh run if the named job already finished."
    )

    def validate_kind(self, value):
        if not kind_enabled(KINDS[value]):
            raise serializers.ValidationError(
                f"{value!r} is an example kind, off in production unless JOB_DEMO_KINDS names it."
            )
        return value

    def validate(self, attrs):
        params = KINDS[attrs["kind"]].params(data=attrs.get("params") or {})
        if not params.is_valid():
            raise serializers.ValidationError({"params": params.errors})
        unknown = set(attrs.get("params") or {}) - set(params.fields)
        if unknown:
            raise serializers.ValidationError(
                {"params": {key: ["Unknown parameter."] for key in sorted(unknown)}}
            )
        attrs["params"] = dict(params.validated_data)
        return attrs


def validated_submission(data) -> dict:
    """A submission's fields (kind, params, rerun and name if given), as JobSubmitSerializer
    validates them; raises its ValidationError (the same 400 body) when they are not valid.

    A well-formed submission (JSON types as documented, a known kind, valid params) skips the
    serializer's construction, which deep-copies its declared fields on every request (a tenth
    of a submission's CPU in web, docs/benchmarks.md); anything else goes through the serializer
    itself, so every error, coercion and default stays the serializer's."""
    plain = _plain_submission(data)
    if plain is not None:
        return plain
    serializer = JobSubmitSerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _plain_submission(data) -> dict | None:
    """The validated fields of a submission that needs nothing the serializer would coerce or
    report, else None (then the serializer decides)."""
    if not isinstance(data, dict):
        return None
    kind = KINDS.get(data.get("kind")) if isinstance(data.get("kind"), str) else None
    name = data.get("name")
    rerun = data.get("rerun", False)
    raw_params = data.get("params", {})
    if (
        kind is None
        or not kind_enabled(kind)
        or not isinstance(rerun, bool)
        or not isinstance(raw_params, dict)
        or not (
            name is None and "name" not in data or isinstance(name, str) and JOB_NAME_PATTERN.fullmatch(name)
        )
    ):
        return None
    params = kind.params(data=raw_params)
    if not params.is_valid() or set(raw_params) - set(params.fields):
        return None
    validated = {"kind": kind.name, "params": dict(params.validated_data), "rerun": rerun}
    if name is not None:
        validated["name"] = name
    return validated


class ProgressSerializer(serializers.Serializer):
    current = serializers.IntegerField()
    total = serializers.IntegerField()
    percent = serializers.FloatField(allow_null=True)
    message = serializers.CharField()


class JobSerializer(serializers.Serializer):
    """A job as the API shows it (built from its record and one Redis read)."""

    id = serializers.CharField()
    name = serializers.CharField()
    kind = serializers.CharField()
    run = serializers.IntegerField()
    params = serializers.DictField()
    state = serializers.ChoiceField(
        choices=["PENDING", "STARTED", "PROGRESS", "RETRY", "SUCCESS", "FAILURE", "REVOKED", "EXPIRED"]
    )
    progress = ProgressSerializer(allow_null=True)
    result = serializers.JSONField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    worker = serializers.CharField(allow_null=True)
    submitted_at = serializers.DateTimeField()
    started_at = serializers.CharField(allow_null=True)
    finished_at = serializers.CharField(allow_null=True)
    deliveries = serializers.IntegerField(
        allow_null=True,
        help_text="How many times a worker started the job (2 or more when a "
        "worker died under it and it ran again).",
    )
    url = serializers.CharField(help_text="Where to poll this job.")
    page = serializers.CharField(help_text="A web page showing this job's progress.")


class JobSubmittedSerializer(JobSerializer):
    created = serializers.BooleanField(help_text="False when an existing job was returned.")


class WhoAmISerializer(serializers.Serializer):
    username = serializers.CharField()


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField()
