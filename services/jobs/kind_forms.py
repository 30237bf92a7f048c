"""The submit form of each job kind, built from the kind's params serializer (jobs/tasks.py): a
new kind gets its form on the pages with no template work.

`param_inputs(kind)` describes each parameter as an HTML control (type, limits, default, a hint);
`params_from_form(kind, data)` turns the submitted strings back into what the API receives, so
that the page and the API validate a job with the same code (JobSubmitSerializer).
"""

import json
from dataclasses import dataclass, field

from rest_framework import serializers
from rest_framework.fields import empty

from jobs.base import KINDS

# The params' inputs are named "params.<name>": a kind's parameter may be called "name" or "kind".
INPUT_PREFIX = "params."
# A text parameter longer than this gets a multi-line box.
TEXTAREA_FROM = 200


@dataclass(frozen=True)
class ParamInput:
    """One parameter of a kind as an HTML control."""

    name: str  # the parameter's key in params
    label: str
    control: str  # "input", "textarea", "select" or "checkbox"
    input_type: str = "text"  # for control "input": text, number, email, url
    required: bool = False
    initial: str | bool = ""  # shown when the form opens: the serializer's default
    hint: str = ""  # help text, limits and default, in words
    attrs: dict = field(default_factory=dict)  # min, max, step, maxlength, inputmode
    choices: tuple[tuple[str, str], ...] = ()
    is_json: bool = False  # a structured value (dict, list): typed as JSON

    @property
    def input_name(self) -> str:
        return INPUT_PREFIX + self.name

    @property
    def html_id(self) -> str:
        return "param-" + self.name


def _default(f: serializers.Field):
    if f.default is empty:
        return empty
    return f.default() if callable(f.default) else f.default


def _number_words(value) -> str:
    return f"{value:g}" if isinstance(value, float) else f"{value:,}"


def _limits(f) -> str:
    low, high = getattr(f, "min_value", None), getattr(f, "max_value", None)
    if low is not None and high is not None:
        return f"from {_number_words(low)} to {_number_words(high)}"
    if low is not None:
        return f"at least {_number_words(low)}"
    if high is not None:
        return f"at most {_number_words(high)}"
    return ""


def describe(name: str, f: serializers.Field) -> ParamInput:
    """The HTML control of one serializer field."""
    default = _default(f)
    label = str(f.label) if f.label else name.replace("_", " ").capitalize()
    words = [str(f.help_text)] if f.help_text else []
    common = {"name": name, "label": label, "required": f.required}
    if isinstance(f, serializers.BooleanField):
        return ParamInput(
            control="checkbox",
            initial=bool(default is not empty and default),
            hint=" ".join(words),
            **{**common, "required": False},
        )
    if isinstance(f, serializers.ChoiceField):
        choices = tuple((str(key), str(text)) for key, text in f.choices.items())
        return ParamInput(
            control="select",
            choices=choices,
            initial="" if default is empty else str(default),
            hint=" ".join(words),
            **common,
        )
    if isinstance(f, (serializers.IntegerField, serializers.FloatField, serializers.DecimalField)):
        whole = isinstance(f, serializers.IntegerField)
        attrs = {"step": "1" if whole else "any", "inputmode": "numeric" if whole else "decimal"}
        for attr, value in (("min", getattr(f, "min_value", None)), ("max", getattr(f, "max_value", None))):
            if value is not None:
                attrs[attr] = str(value)
        words.append(" ".join(filter(None, ["A whole number" if whole else "A number", _limits(f)])) + ".")
        if default is not empty:
            words.append(f"Default {_number_words(default)}.")
        return ParamInput(
            control="input",
            input_type="number",
            attrs=attrs,
            initial="" if default is empty else str(default),
            hint=" ".join(words),
            **common,
        )
    if isinstance(f, serializers.CharField):
        input_type = (
            "email"
            if isinstance(f, serializers.EmailField)
            else "url"
            if isinstance(f, serializers.URLField)
            else "text"
        )
        attrs = {"maxlength": str(f.max_length)} if f.max_length else {}
        if f.max_length:
            words.append(f"Up to {_number_words(f.max_length)} characters.")
        if default not in (empty, ""):
            words.append(f"Default: {default}")
        long = f.max_length is None or f.max_length > TEXTAREA_FROM
        return ParamInput(
            control="textarea" if long and input_type == "text" else "input",
            input_type=input_type,
            attrs=attrs,
            initial="" if default is empty else str(default),
            hint=" ".join(words),
            **common,
        )
    # Anything else (dicts, lists, JSON): typed as JSON.
    words.append("As JSON.")
    return ParamInput(
        control="textarea",
        is_json=True,
        hint=" ".join(words),
        initial="" if default is empty else json.dumps(default),
        **common,
    )


def param_inputs(kind: str) -> list[ParamInput]:
    """The controls of a kind's parameters, in the serializer's order."""
    return [describe(name, f) for name, f in KINDS[kind].params().fields.items() if not f.read_only]


def params_from_form(kind: str, data) -> tuple[dict, dict[str, list[str]]]:
    """(params as the API would receive them, errors found before validation) from a submitted
    form (a QueryDict). A blank optional input is left out, so the kind's default applies; a
    blank required one too, so the serializer says it is required."""
    params: dict = {}
    errors: dict[str, list[str]] = {}
    for spec in param_inputs(kind):
        if spec.control == "checkbox":
            params[spec.name] = spec.input_name in data
            continue
        raw = data.get(spec.input_name, "")
        if not raw.strip():
            continue
        if spec.is_json:
            try:
                params[spec.name] = json.loads(raw)
            except ValueError:
                errors[spec.name] = ["Enter valid JSON."]
            continue
        params[spec.name] = raw
    return params, errors


def flatten_errors(errors) -> list[str]:
    """Error messages of a serializer's error value (a list, a dict or a string) as plain strings."""
    if isinstance(errors, dict):
        return [message for value in errors.values() for message in flatten_errors(value)]
    if isinstance(errors, (list, tuple)):
        return [message for value in errors for message in flatten_errors(value)]
    return [str(errors)]


def bound_inputs(inputs, values: dict, errors: dict) -> list[dict]:
    bound = []
    for spec in inputs:
        field_errors = errors.get(spec.name, [])
        described = [f"{spec.html_id}-hint"] if spec.hint else []
        if field_errors:
            described.append(f"{spec.html_id}-error")
        bound.append(
            {
                "spec": spec,
                "value": values.get(spec.name, spec.initial),
                "errors": field_errors,
                "describedby": " ".join(described),
            }
        )
    return bound


def split_errors(errors: dict, param_names: set[str]) -> tuple[dict[str, list[str]], list[str]]:
    """A JobSubmitSerializer's errors as (field -> messages, messages of the whole form); a
    params error names its parameter when it can, so it is shown at that field."""
    fields: dict[str, list[str]] = {}
    general: list[str] = []
    for key, value in errors.items():
        if key == "name":
            fields["name"] = flatten_errors(value)
        elif key == "params" and isinstance(value, dict):
            for param, messages_ in value.items():
                if param in param_names:
                    fields[param] = flatten_errors(messages_)
                else:
                    general += flatten_errors(messages_)
        else:
            general += flatten_errors(value)
    return fields, general
