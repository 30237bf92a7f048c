"""unit: no services. Validation of job submissions (jobs.serializers.JobSubmitSerializer)."""

import pytest

from jobs.base import KINDS
from jobs.serializers import JobSubmitSerializer
from jobs.tasks import SumNumberParams


def validate(data):
    serializer = JobSubmitSerializer(data=data)
    valid = serializer.is_valid()
    return valid, (serializer.validated_data if valid else serializer.errors)


def test_every_kind_is_offered():
    assert set(KINDS) == {"sum_number", "model_inference", "fail", "flaky", "noop", "allocate", "wait_io"}


@pytest.mark.parametrize("kind", ["nope", "", "purge_old_job_records", "SUM_NUMBER", None])
def test_unknown_kind_is_rejected(kind):
    valid, errors = validate({"kind": kind, "params": {}})
    assert not valid
    assert set(errors) == {"kind"}


def test_missing_kind_is_rejected():
    valid, errors = validate({"params": {"x": 1, "y": 2}})
    assert not valid
    assert "kind" in errors


@pytest.mark.parametrize(
    "kind, params, field",
    [
        ("sum_number", {"x": "abc", "y": 2}, "x"),
        ("sum_number", {"x": 1}, "y"),
        ("sum_number", {"x": 1, "y": 10**13}, "y"),
        ("sum_number", {"x": 1.5, "y": 2}, "x"),
        ("model_inference", {}, "text"),
        ("model_inference", {"text": "x" * 2001}, "text"),
        ("model_inference", {"text": "hi", "steps": 0}, "steps"),
        ("model_inference", {"text": "hi", "steps": 101}, "steps"),
        ("model_inference", {"text": "hi", "step_seconds": -1}, "step_seconds"),
        ("model_inference", {"text": "hi", "step_seconds": 61}, "step_seconds"),
        ("fail", {"message": "m" * 201}, "message"),
        ("flaky", {"failures": -1}, "failures"),
        ("flaky", {"failures": 6}, "failures"),
    ],
)
def test_bad_params_name_the_field_under_params(kind, params, field):
    valid, errors = validate({"kind": kind, "params": params})
    assert not valid
    assert set(errors) == {"params"}
    assert field in errors["params"]


@pytest.mark.parametrize(
    "kind, params",
    [
        ("noop", {"z": 1}),
        ("sum_number", {"x": 1, "y": 2, "z": 3}),
        ("model_inference", {"text": "hi", "temperature": 0.7}),
    ],
)
def test_unknown_extra_params_are_rejected(kind, params):
    valid, errors = validate({"kind": kind, "params": params})
    assert not valid
    unknown = set(params) - set(KINDS[kind].params().fields)
    assert set(errors["params"]) == unknown
    assert all(errors["params"][key] == ["Unknown parameter."] for key in unknown)


@pytest.mark.parametrize("params", [[1, 2], "x=1", 3, None])
def test_params_must_be_an_object(params):
    valid, errors = validate({"kind": "noop", "params": params})
    assert not valid
    assert "params" in errors


@pytest.mark.parametrize(
    "name",
    [
        "-starts-with-dash",
        "has space",
        "slash/inside",
        "semi;colon",
        "x" * 101,
        "é",
        "a\nb",
        "",
        "..",
        "%2e%2e",
    ],
)
def test_bad_names_are_rejected(name):
    valid, errors = validate({"kind": "noop", "name": name})
    assert not valid
    assert set(errors) == {"name"}


@pytest.mark.parametrize("name", ["a", "A.b_c:d-e", "report-2026-11-23", "9" * 100])
def test_good_names_are_accepted(name):
    valid, data = validate({"kind": "noop", "name": name})
    assert valid, data
    assert data["name"] == name


def test_defaults_are_applied():
    valid, data = validate({"kind": "model_inference", "params": {"text": "hello"}})
    assert valid, data
    assert data["params"] == {"text": "hello", "steps": 5, "step_seconds": 1.0}
    assert data["rerun"] is False
    assert "name" not in data


def test_params_default_to_empty_and_fail_gets_its_default_message():
    valid, data = validate({"kind": "noop"})
    assert valid and data["params"] == {}
    valid, data = validate({"kind": "fail"})
    assert valid and data["params"] == {"message": "This job fails on purpose."}
    valid, data = validate({"kind": "flaky", "params": {}})
    assert valid and data["params"] == {"failures": 2}


def test_validated_params_are_coerced():
    valid, data = validate({"kind": "sum_number", "params": {"x": "1", "y": "100"}, "rerun": "true"})
    assert valid, data
    assert data["params"] == {"x": 1, "y": 100}
    assert data["rerun"] is True


@pytest.mark.parametrize(
    "x, y, ok",
    [
        (1, 1, True),  # one number
        (5, 4, False),  # y < x
        (1, SumNumberParams.MAX_COUNT, True),  # exactly the maximum count
        (0, SumNumberParams.MAX_COUNT, False),  # one more than the maximum
        (-(10**12), -(10**12) + 10, True),
        (10, -10, False),
    ],
)
def test_sum_number_range_rule(x, y, ok):
    valid, result = validate({"kind": "sum_number", "params": {"x": x, "y": y}})
    assert valid is ok, result
    if not ok:
        assert set(result["params"]) == {"y"}


SUBMISSIONS = [
    {"kind": "noop"},
    {"kind": "noop", "params": {}, "rerun": False},
    {"kind": "noop", "name": "nightly-1", "rerun": True},
    {"kind": "model_inference", "params": {"text": "hello"}},
    {"kind": "sum_number", "params": {"x": 1, "y": 2}, "name": "a.b:c_d-e"},
    {"kind": "sum_number", "params": {"x": "1", "y": 2}},  # the kind's params serializer coerces
    {"kind": "noop", "unknown_field": 1},  # ignored, as by the serializer
    # Only the serializer from here on:
    {"kind": "noop", "rerun": "true"},  # coerced by DRF's BooleanField
    {"kind": "noop", "name": " padded "},  # trimmed by DRF's CharField
    {"kind": "noop", "name": "ends-in-newline\n"},
    {"kind": "noop", "name": None},
    {"kind": "noop", "name": ""},
    {"kind": "noop", "name": "x" * 101},
    {"kind": "noop", "params": None},
    {"kind": "noop", "params": [1]},
    {"kind": "noop", "params": {"z": 1}},
    {"kind": "sum_number", "params": {"x": 1}},
    {"kind": "nope"},
    {"kind": None},
    {"kind": 3},
    {"params": {}},
    {"kind": "noop", "rerun": None},
    [],
    "noop",
]


@pytest.mark.parametrize("data", SUBMISSIONS, ids=range(len(SUBMISSIONS)))
def test_validated_submission_answers_as_the_serializer(data):
    # The API's submit view takes validated_submission's shortcut for well-formed input: its
    # result, and for bad input its error body, must be the serializer's own.
    from rest_framework.exceptions import ValidationError

    from jobs.serializers import validated_submission

    serializer = JobSubmitSerializer(data=data)
    if serializer.is_valid():
        assert validated_submission(data) == serializer.validated_data
    else:
        with pytest.raises(ValidationError) as raised:
            validated_submission(data)
        assert raised.value.detail == serializer.errors


def test_the_shortcut_is_taken_only_where_nothing_is_coerced():
    from jobs.serializers import _plain_submission

    assert all(_plain_submission(data) is not None for data in SUBMISSIONS[:7])
    assert all(_plain_submission(data) is None for data in SUBMISSIONS[7:])
