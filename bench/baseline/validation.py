"""Input validation for the baseline: the same rules Consentry's data map applies.

Validating and normalising input (e-mail syntax, E.164 phone numbers, dates, choices,
lengths) is what any CRM does, privacy-first or not, so the baseline pays for it too.
The rules are written out here rather than imported from ``server.datamap`` so that the
baseline does not depend on Consentry's code.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import phonenumbers
from email_validator import EmailNotValidError, validate_email

PHONE_REGION = "GB"  # Consentry's default region for numbers written without +country
_COUNTRY = re.compile(r"^[A-Z]{2}$")


@dataclass(frozen=True)
class Rule:
    kind: str  # text | email | phone | date | choice | country | reference | integer
    max_length: int = 200
    required: bool = False
    choices: tuple[str, ...] = ()


CONTACT_RULES: dict[str, Rule] = {
    "first_name": Rule("text", 100, required=True),
    "last_name": Rule("text", 100, required=True),
    "email": Rule("email", 254),
    "phone": Rule("phone", 40),
    "job_title": Rule("text", 120),
    "birth_date": Rule("date", 10),
    "address_line": Rule("text"),
    "city": Rule("text", 100),
    "postcode": Rule("text", 20),
    "country": Rule("country", 2),
    "notes": Rule("text", 5000),
    "lifecycle_stage": Rule("choice", choices=("lead", "prospect", "customer", "former_customer")),
    "source": Rule(
        "choice", choices=("web", "event", "referral", "import", "phone", "partner", "manual")
    ),
    "organization_id": Rule("reference"),
}
FILTERABLE = ("lifecycle_stage", "source", "organization_id")


class Invalid(ValueError):
    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))


def normalize_email(value: str) -> str:
    return validate_email(value.strip(), check_deliverability=False).normalized.lower()


def _clean(rule: Rule, raw: Any) -> Any:
    if rule.kind == "integer":
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueError("expected a whole number")
        return raw
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    value = raw.strip()
    if len(value) > rule.max_length:
        raise ValueError(f"longer than {rule.max_length} characters")
    if rule.required and not value:
        raise ValueError("must not be empty")
    if not value:
        return None
    if rule.kind == "email":
        try:
            return normalize_email(value)
        except EmailNotValidError:
            raise ValueError("not a valid e-mail address") from None
    if rule.kind == "phone":
        try:
            number = phonenumbers.parse(value, PHONE_REGION)
        except phonenumbers.NumberParseException:
            raise ValueError("not a phone number") from None
        if not phonenumbers.is_valid_number(number):
            raise ValueError("not a valid phone number")
        return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
    if rule.kind == "date":
        return dt.date.fromisoformat(value).isoformat()
    if rule.kind == "choice" and value not in rule.choices:
        raise ValueError("must be one of: " + ", ".join(rule.choices))
    if rule.kind == "country":
        value = value.upper()
        if not _COUNTRY.match(value):
            raise ValueError("expected a two-letter country code")
    if rule.kind == "reference":
        return uuid.UUID(value)
    return value


def clean_contact(values: Mapping[str, Any], *, partial: bool) -> dict[str, Any]:
    """Validated, normalised column values; every problem is collected before raising."""
    problems: dict[str, str] = {}
    cleaned: dict[str, Any] = {}
    for name, raw in values.items():
        rule = CONTACT_RULES.get(name)
        if rule is None:
            problems[name] = "unknown field"
        elif raw is None:
            if rule.required:
                problems[name] = "is required"
            else:
                cleaned[name] = None
        else:
            try:
                cleaned[name] = _clean(rule, raw)
            except ValueError as exc:
                problems[name] = str(exc)
    if not partial:
        for name, rule in CONTACT_RULES.items():
            if rule.required and name not in values:
                problems[name] = "is required"
    if problems:
        raise Invalid(problems)
    return cleaned
