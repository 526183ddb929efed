"""Record forms generated from the data map, and form input turned into gateway values.

The data map says each field's label, kind, choices, length and whether it is required;
the policy says which fields this role may write. A form has an input for exactly the
fields that are both declared and writable, so a restricted field never reaches the page.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from server.datamap import Field, FieldKind, RecordType
from server.money import AmountError, parse_major, plain_major

UTC = ZoneInfo("UTC")

TEXTAREA_FROM_LENGTH = 500  # longer text gets a multi-line box; a title stays one line

INPUT_TYPES = {
    FieldKind.TEXT: "text",
    FieldKind.EMAIL: "email",
    FieldKind.PHONE: "tel",
    FieldKind.DATE: "date",
    FieldKind.DATETIME: "datetime-local",
    FieldKind.INTEGER: "number",
    FieldKind.COUNTRY: "text",
}
HINTS = {
    FieldKind.PHONE: "With the country code, e.g. +44 20 7946 0000.",
    FieldKind.COUNTRY: "Two-letter code, e.g. GB.",
    FieldKind.INTEGER: "A whole number.",
}


# Help text for one field of one record type, shown under its input (after the kind's hint).
FIELD_HINTS: dict[tuple[str, str], str] = {
    ("interaction", "participants"): (
        "Other people who took part, e.g. colleagues, the customer's assistant."
    ),
    ("deal", "amount"): (
        "In the currency's own units, e.g. 12,500.00 for EUR or 12,500 for JPY (no decimals)."
    ),
    ("deal", "pipeline_id"): "Left empty: the default pipeline.",
    ("deal", "stage"): (
        "A stage of the deal's pipeline; left empty on a new deal: the pipeline's first stage."
    ),
}


def choice_label(value: str) -> str:
    """``"phone_call"`` -> ``"Phone call"``; codes in capitals (``"GBP"``) stay as they are."""
    if value.isupper():
        return value
    return value.replace("_", " ").capitalize()


@dataclass(frozen=True)
class ChoiceGroup:
    """An ``<optgroup>`` of a select whose options depend on another field: ``key`` is
    that field's value the group belongs to (a deal's stages, grouped by pipeline id)."""

    key: str
    label: str
    options: tuple[tuple[str, str], ...]  # (value, label)


@dataclass(frozen=True)
class FieldChoices:
    """Options for one input, from a page's choices provider rather than the data map:
    configuration (pipelines and their stages) that the data map cannot list. Either
    flat ``options`` or ``groups`` keyed by the value of the field named ``depends_on``."""

    options: tuple[tuple[str, str], ...] = ()
    groups: tuple[ChoiceGroup, ...] = ()
    depends_on: str = ""
    default_group: str = ""  # the group that applies while ``depends_on`` is left empty

    def label_of(self, value: str, group_key: str = "") -> str | None:
        """The label of ``value`` (in the group ``group_key`` where grouped)."""
        for option, label in self.options:
            if option == value:
                return label
        for group in self.groups:
            if group.key == group_key:
                for option, label in group.options:
                    if option == value:
                        return label
        return None


@dataclass(frozen=True)
class FormField:
    """One input of a record form, as the template needs it."""

    name: str
    label: str
    control: str  # "input", "textarea" or "select"
    input_type: str
    required: bool
    max_length: int
    choices: tuple[tuple[str, str], ...]  # (value, label)
    hint: str
    groups: tuple[ChoiceGroup, ...] = ()  # a select of <optgroup>s instead of ``choices``
    depends_on: str = ""  # the field whose value picks the group (data-depends-on)
    selected_group: str = ""  # the group whose option equal to the value is selected
    default_group: str = ""  # the group that applies while ``depends_on`` is empty
    picker: str = ""  # a reference picked by name search: the record type searched
    pick_term: str = ""  # what was last typed into the picker's search box

    @property
    def input_id(self) -> str:
        return f"field-{self.name}"


def form_field(
    spec: Field,
    references: Iterable[tuple[str, str]] = (),
    *,
    resource: str = "",
    provided: FieldChoices | None = None,
) -> FormField:
    """The input for ``spec``; ``provided`` (by a page's choices provider) turns it into a
    select, and ``resource`` picks up the field's help text in ``FIELD_HINTS``."""
    kind_hint = "" if spec.currency_from else HINTS.get(spec.kind, "")  # money has decimals
    hint = " ".join(h for h in (kind_hint, FIELD_HINTS.get((resource, spec.name), "")) if h)
    if provided is not None:
        return FormField(
            name=spec.name,
            label=spec.label,
            control="select",
            input_type="text",
            required=spec.required,
            max_length=spec.max_length,
            choices=provided.options,
            hint=hint,
            groups=provided.groups,
            depends_on=provided.depends_on,
            default_group=provided.default_group,
        )
    if spec.kind is FieldKind.CHOICE:
        control, choices = "select", tuple((c, choice_label(c)) for c in spec.choices)
    elif spec.kind is FieldKind.REFERENCE:
        control, choices = "select", tuple(references)
    elif spec.kind is FieldKind.TEXT and spec.max_length >= TEXTAREA_FROM_LENGTH:
        control, choices = "textarea", ()
    else:
        control, choices = "input", ()
    return FormField(
        name=spec.name,
        label=spec.label,
        control=control,
        # Money is typed as text ("12,500.00"): a number input refuses grouping commas.
        input_type="text" if spec.currency_from else INPUT_TYPES.get(spec.kind, "text"),
        required=spec.required,
        max_length=spec.max_length,
        choices=choices,
        hint=hint,
    )


def form_fields(
    rt: RecordType, names: Iterable[str], references: Iterable[tuple[str, str]] = ()
) -> list[FormField]:
    """Inputs for ``names`` in data-map order (``references``: options for id fields)."""
    wanted = set(names)
    options = tuple(references)
    return [form_field(f, options, resource=rt.resource) for f in rt.fields if f.name in wanted]


def display_value(value: Any) -> str:
    """A stored value as a form shows it."""
    return "" if value is None else str(value)


def input_text(rt: RecordType, name: str, values: Mapping[str, Any], zone: ZoneInfo = UTC) -> str:
    """A stored value as its input shows it: money in major units ("12500.00"), a moment
    as ``datetime-local`` wants it, in the user's zone ("2026-12-03T10:00")."""
    value = values.get(name)
    spec = rt.by_name.get(name)
    if value is None or spec is None:
        return display_value(value)
    if spec.currency_from:
        try:
            return plain_major(int(value), values.get(spec.currency_from))
        except (TypeError, ValueError):
            return display_value(value)
    if spec.kind is FieldKind.DATETIME:
        return local_input(str(value), zone)
    return display_value(value)


def local_input(stored: str, zone: ZoneInfo) -> str:
    """A stored UTC moment as a ``datetime-local`` value in ``zone``."""
    try:
        moment = dt.datetime.fromisoformat(stored)
    except ValueError:
        return stored
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M")


def moment_from_input(text: str, zone: ZoneInfo) -> str:
    """A typed ``datetime-local`` value (a wall-clock time in ``zone``) as an ISO moment
    with its offset; the gateway stores it in UTC. Text that is no date-time is passed on
    for the gateway to refuse with its message."""
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        return text
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.isoformat()


@dataclass(frozen=True)
class FormInput:
    """A submitted record form: gateway values, the typed text to show again, and the
    problems found before the gateway was asked (an amount that is no amount)."""

    values: dict[str, Any]
    submitted: dict[str, str]
    problems: dict[str, str]


def read_form(
    rt: RecordType,
    form: Mapping[str, Any],
    names: Iterable[str],
    *,
    current: Mapping[str, Any] | None = None,
    zone: ZoneInfo = UTC,
) -> FormInput:
    """Gateway values from a submitted form, and the submitted text to show again.

    Creating (``current`` is None): an empty input means "not set". Editing: an empty
    input clears the field (None), and inputs equal to the stored value are left out, so
    the update and its audit event name only the fields that really changed. Money is
    typed in major units of the currency chosen in the same form (else the stored one);
    a date-time is typed in the user's ``zone``.
    """
    values: dict[str, Any] = {}
    submitted: dict[str, str] = {}
    problems: dict[str, str] = {}
    names = list(names)
    for name in names:
        raw = form.get(name)
        if raw is None or not isinstance(raw, str):
            continue
        submitted[name] = raw
        text = raw.strip()
        spec = rt.by_name[name]
        if spec.currency_from:
            _money(spec, text, form, names, current, values, problems)
            continue
        if current is not None:
            if text == input_text(rt, name, current, zone).strip():
                continue
            if not text:
                values[name] = None
                continue
        elif not text:
            continue
        values[name] = (
            moment_from_input(text, zone) if spec.kind is FieldKind.DATETIME else _typed(spec, text)
        )
    return FormInput(values, submitted, problems)


def _money(
    spec: Field,
    text: str,
    form: Mapping[str, Any],
    names: list[str],
    current: Mapping[str, Any] | None,
    values: dict[str, Any],
    problems: dict[str, str],
) -> None:
    """An amount typed in major units, as minor units in ``values`` (or a problem)."""
    source = spec.currency_from or ""
    chosen = form.get(source) if source in names else None
    stored_currency = (current or {}).get(source)
    currency = (chosen.strip() or None) if isinstance(chosen, str) else stored_currency
    stored = (current or {}).get(spec.name)
    if not text:
        if current is not None and stored is not None:
            values[spec.name] = None
        return
    try:
        minor = parse_major(text, str(currency) if currency else None)
    except AmountError as exc:
        problems[spec.name] = str(exc)
        return
    if current is None or minor != stored:
        values[spec.name] = minor


def values_from_form(
    rt: RecordType,
    form: Mapping[str, Any],
    names: Iterable[str],
    *,
    current: Mapping[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """:func:`read_form` for forms without money or moments (a note)."""
    read = read_form(rt, form, names, current=current)
    return read.values, read.submitted


def _typed(spec: Field, text: str) -> Any:
    if spec.kind is FieldKind.INTEGER:
        try:
            return int(text)
        except ValueError:
            return text  # the gateway explains: "expected a whole number"
    return text


def field_problems(
    rt: RecordType, problems: Mapping[str, str]
) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Gateway problems as per-field messages and an error summary of (anchor, message)."""
    by_field: dict[str, str] = {}
    summary: list[tuple[str, str]] = []
    for name, reason in problems.items():
        spec = rt.by_name.get(name)
        label = spec.label if spec else name.replace("_", " ").capitalize()
        text = problem_message(label, reason)
        if spec is None:
            summary.append(("", text))
            continue
        by_field[name] = text
        summary.append((f"field-{name}", text))
    return by_field, summary


def problem_message(label: str, reason: str) -> str:
    """``"First name", "is required"`` -> ``"First name is required."``"""
    reason = reason.strip().rstrip(".") or "is not valid"
    if not label:
        return reason[0].upper() + reason[1:] + "."
    if reason.startswith(("is ", "must ")):
        return f"{label} {reason}."
    return f"{label}: {reason}."
