"""unit: no services. The submit forms built from the kinds' params serializers (jobs.kind_forms),
and the pure helpers of the pages (jobs.pages, jobs.job_display, jobs.job_listing): durations, list cursors."""

from datetime import UTC, datetime, timedelta

import pytest
from django.http import QueryDict
from rest_framework import serializers

from jobs import job_display, job_listing, kind_forms, pages
from jobs.base import KINDS, JobKind


class EveryFieldParams(serializers.Serializer):
    """A kind that nobody wrote a template for: every field type a params serializer may use."""

    count = serializers.IntegerField(min_value=1, max_value=10, default=3)
    ratio = serializers.FloatField(min_value=0, help_text="How much.")
    title = serializers.CharField(max_length=50)
    body = serializers.CharField(max_length=5000, required=False, default="")
    mode = serializers.ChoiceField(choices=["fast", "careful"], default="fast")
    notify = serializers.BooleanField(default=True)
    email = serializers.EmailField(required=False)
    options = serializers.DictField(required=False)


@pytest.fixture
def every_field_kind(monkeypatch):
    monkeypatch.setitem(
        KINDS,
        "every_field",
        JobKind("every_field", task=None, params=EveryFieldParams, description="Shows every control."),
    )
    return "every_field"


def test_a_new_kind_gets_a_control_per_field(every_field_kind):
    inputs = {spec.name: spec for spec in kind_forms.param_inputs(every_field_kind)}
    assert list(inputs) == ["count", "ratio", "title", "body", "mode", "notify", "email", "options"]

    count = inputs["count"]
    assert (count.control, count.input_type, count.initial) == ("input", "number", "3")
    assert count.attrs == {"step": "1", "inputmode": "numeric", "min": "1", "max": "10"}
    assert "from 1 to 10" in count.hint and "Default 3" in count.hint
    assert not count.required  # it has a default

    ratio = inputs["ratio"]
    assert ratio.attrs["step"] == "any" and ratio.attrs["min"] == "0" and "max" not in ratio.attrs
    assert ratio.required and ratio.hint.startswith("How much.")

    assert (inputs["title"].control, inputs["title"].attrs) == ("input", {"maxlength": "50"})
    assert inputs["body"].control == "textarea"  # long text
    assert inputs["mode"].control == "select"
    assert inputs["mode"].choices == (("fast", "fast"), ("careful", "careful"))
    assert (inputs["notify"].control, inputs["notify"].initial) == ("checkbox", True)
    assert inputs["email"].input_type == "email"
    assert inputs["options"].control == "textarea" and inputs["options"].is_json
    assert {spec.input_name for spec in inputs.values()} == {f"params.{name}" for name in inputs}


def test_form_values_become_the_params_the_api_would_get(every_field_kind):
    data = QueryDict(mutable=True)
    data.update(
        {
            "params.count": "7",
            "params.ratio": "0.5",
            "params.title": "hello",
            "params.body": "  ",
            "params.mode": "careful",
            "params.options": '{"a": [1, 2]}',
        }
    )
    params, errors = kind_forms.params_from_form(every_field_kind, data)
    assert errors == {}
    # Blank optional inputs are left out (their defaults apply); an unticked box is False.
    assert params == {
        "count": "7",
        "ratio": "0.5",
        "title": "hello",
        "mode": "careful",
        "notify": False,
        "options": {"a": [1, 2]},
    }
    validated = EveryFieldParams(data=params)
    assert validated.is_valid(), validated.errors
    assert validated.validated_data["count"] == 7 and validated.validated_data["body"] == ""


def test_invalid_json_is_an_error_at_its_field(every_field_kind):
    data = QueryDict(mutable=True)
    data.update({"params.options": "{not json"})
    _, errors = kind_forms.params_from_form(every_field_kind, data)
    assert errors == {"options": ["Enter valid JSON."]}


def test_every_real_kind_has_a_form():
    for kind in KINDS:
        for spec in kind_forms.param_inputs(kind):
            assert spec.control in {"input", "textarea", "select", "checkbox"}, (kind, spec)
    text = {spec.name: spec for spec in kind_forms.param_inputs("model_inference")}["text"]
    assert text.required and text.control == "textarea" and text.attrs == {"maxlength": "2000"}


def test_serializer_errors_land_at_their_fields():
    fields, general = kind_forms.split_errors(
        {"name": ["Bad name."], "params": {"steps": ["Too big."], "bogus": ["Unknown parameter."]}},
        {"steps", "text"},
    )
    assert fields == {"name": ["Bad name."], "steps": ["Too big."]}
    assert general == ["Unknown parameter."]
    fields, general = kind_forms.split_errors({"params": ["Not an object."]}, {"steps"})
    assert fields == {} and general == ["Not an object."]


@pytest.mark.parametrize(
    "seconds, text",
    [
        (0, "0 s"),
        (59.9, "59 s"),
        (60, "1 min 0 s"),
        (3599, "59 min 59 s"),
        (3600, "1 h 0 min"),
        (86399, "23 h 59 min"),
        (90000, "1 d 1 h"),
        (-5, "0 s"),
    ],
)
def test_durations_in_words(seconds, text):
    assert job_display.format_duration(seconds) == text


def test_list_cursor_round_trips_to_the_microsecond():
    class Row:
        submitted_at = datetime(2026, 12, 7, 1, 2, 3, 456789, tzinfo=UTC)
        id = "5c1f0000-0000-4000-8000-000000000001"

    cursor = job_listing.cursor_of(Row)
    assert job_listing.parse_cursor(cursor) == (Row.submitted_at, Row.id)
    assert job_listing.parse_cursor(cursor.replace(".", ".x")) is None
    for junk in (None, "", "abc", "123", "12.not-an-id", "-5." + Row.id):
        assert job_listing.parse_cursor(junk) is None
    # Microseconds since the epoch, exactly (no float rounding).
    assert int(cursor.split(".")[0]) == (Row.submitted_at - job_listing.EPOCH) // timedelta(microseconds=1)


def test_page_identity_cannot_be_a_knox_token():
    class User:
        pk = 42

    identity = pages.page_identity(User)
    assert identity == "page-user:42"
    # knox tokens are hex: this identity never shares ids with a token's jobs.
    assert not all(c in "0123456789abcdef" for c in identity)
