"""How the export's ``index.html`` shows values to the person it is about.

``data.json`` and the CSV files keep exact, machine-readable forms (ids, ISO 8601 with
microseconds, amounts as major-unit decimal strings). The page a person opens shows what
those mean: a linked record by its name, an amount as the admin shows it (``server.money``:
the currency's own decimals, so JPY has none and BHD three), a time as a date and a
minute, a code by its label.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from babel.numbers import UnknownCurrencyError

from server.datamap import RECORD_TYPES, FieldKind, RecordType
from server.money import decimals_of, format_money

# The field holding an amount -> the field naming its currency.
MONEY: Mapping[tuple[str, str], str] = {("deal", "amount"): "currency"}
TITLE_FIELDS = ("title", "name", "subject")


def amount(major: Any, currency: str) -> str:
    """data.json's "12500.00" EUR -> "12,500.00 EUR", as on every admin page; a value that
    is not a number stays as it is, with its code."""
    try:
        minor = int(Decimal(str(major)).scaleb(decimals_of(currency or None)))
        return format_money(minor, currency or None)
    except (ArithmeticError, ValueError, TypeError, UnknownCurrencyError):
        return f"{major} {currency}".strip()


def moment(text: Any) -> str:
    """An ISO 8601 time -> "2 December 2026, 09:41 UTC"; anything else as it is."""
    try:
        parsed = dt.datetime.fromisoformat(str(text))
    except ValueError:
        return str(text)
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC)
    return f"{parsed.day} {parsed:%B %Y, %H:%M} UTC"


def day(text: Any) -> str:
    try:
        parsed = dt.date.fromisoformat(str(text)[:10])
    except ValueError:
        return str(text)
    return f"{parsed.day} {parsed:%B %Y}"


def words(code: Any) -> str:
    """``"marketing_email"`` -> "Marketing email", ``"dsr.log"`` -> "Dsr log"; codes in
    capitals stay."""
    text = str(code)
    return text if text.isupper() else text.replace("_", " ").replace(".", " ").capitalize()


def field_labels(resource: Any, names: Any) -> list[str]:
    """Field names of an access-log entry by their labels ("birth_date" -> "Date of
    birth") where the record type is known."""
    rt = RECORD_TYPES.get(str(resource))
    return [rt.by_name[n].label if rt is not None and n in rt.by_name else words(n) for n in names]


def title_of(resource: str, doc: Mapping[str, Any]) -> str:
    if resource in {"contact", "lead"}:
        name = " ".join(str(doc[n]) for n in ("first_name", "last_name") if doc.get(n))
        return name or RECORD_TYPES[resource].label
    for name in TITLE_FIELDS:
        if doc.get(name):
            return str(doc[name])
    return RECORD_TYPES[resource].label


def shown(rt: RecordType, name: str, doc: Mapping[str, Any], titles: Mapping[str, str]) -> str:
    value = doc.get(name)
    if value is None or value == "":
        return ""
    if name in ("created_at", "updated_at"):
        return moment(value)
    spec = rt.by_name.get(name)
    if spec is None:
        return str(value)
    if (rt.resource, name) in MONEY:
        return amount(value, str(doc.get(MONEY[(rt.resource, name)]) or ""))
    if spec.kind is FieldKind.REFERENCE or spec.references_from:
        return titles.get(str(value), "A linked record that is not about you")
    if spec.kind is FieldKind.DATETIME:
        return moment(value)
    if spec.kind is FieldKind.DATE:
        return day(value)
    if spec.kind is FieldKind.CHOICE or (rt.resource == "deal" and name == "stage"):
        return words(value)
    return str(value)


def record_tables(data: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per record type: its label and, per record, (field label, shown value) rows - the
    record id left out (it is in the JSON and CSV files)."""
    titles = dict(names)
    for resource, docs in data["records"].items():
        for doc in docs:
            titles[str(doc["id"])] = title_of(resource, doc)
    tables = []
    for resource, docs in data["records"].items():
        rt = RECORD_TYPES[resource]
        labels = data["labels"][resource]["fields"]
        tables.append(
            {
                "label": data["labels"][resource]["label"],
                "records": [
                    [
                        (label, shown(rt, name, doc, titles))
                        for name, label in labels.items()
                        if name != "id"
                    ]
                    for doc in docs
                ],
            }
        )
    return tables
