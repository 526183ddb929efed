"""The data map is the one declaration that classifies every customer field.

These tests hold the tables and the data map together ("forgetting to classify a field
fails a test"), check that personal data is declared as ciphertext, and check input
validation: every problem reported at once, and never the submitted value in a message.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from piccolo.columns import Integer, Text
from piccolo.table import Table

from server.datamap import (
    CONTACT,
    ORGANIZATION,
    PURPOSES,
    RECORD_TYPES,
    SYSTEM_COLUMNS,
    Category,
    InvalidValues,
    RecordType,
    clean_values,
)
from server.gateway.tables import TABLES

PERSONAL = {
    Category.IDENTIFIER,
    Category.CONTACT,
    Category.ADDRESS,
    Category.DEMOGRAPHIC,
    Category.FREE_TEXT,
    Category.FINANCIAL,
}

RESOURCES = sorted(RECORD_TYPES)


def _column_names(table: type[Table]) -> set[str]:
    return {column._meta.name for column in table._meta.columns}


def _column(table: type[Table], name: str) -> Any:
    return next(c for c in table._meta.columns if c._meta.name == name)


def _problems(record_type: RecordType, values: dict[str, Any], *, partial: bool) -> dict[str, str]:
    with pytest.raises(InvalidValues) as caught:
        clean_values(record_type, values, partial=partial, default_region="GB")
    return caught.value.problems


def _clean(record_type: RecordType, values: dict[str, Any], region: str = "GB") -> dict[str, Any]:
    return clean_values(record_type, values, partial=True, default_region=region)


# --- the tables and the data map agree ------------------------------------------------


def test_every_customer_table_has_a_record_type_and_back() -> None:
    assert set(TABLES) == set(RECORD_TYPES)
    for resource, table in TABLES.items():
        assert table._meta.tablename == RECORD_TYPES[resource].table


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_table_column_is_declared_in_the_data_map(resource: str) -> None:
    undeclared = _column_names(TABLES[resource]) - RECORD_TYPES[resource].columns
    assert not undeclared, f"classify these {resource} columns in server/datamap.py"


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_declared_column_exists_in_the_table(resource: str) -> None:
    missing = RECORD_TYPES[resource].columns - _column_names(TABLES[resource])
    assert not missing, f"{resource} declares columns the table lacks (migration missing?)"


def test_record_type_columns_cover_system_fields_and_blind_indexes() -> None:
    columns = CONTACT.columns
    assert set(SYSTEM_COLUMNS) <= columns
    assert {"email", "email_bidx", "phone", "phone_bidx", "notes"} <= columns
    # Only blind-indexed fields get an index column.
    assert "notes_bidx" not in columns
    assert "first_name_bidx" not in columns


def test_field_names_are_unique_and_not_system_columns() -> None:
    for rt in RECORD_TYPES.values():
        names = [f.name for f in rt.fields]
        assert len(names) == len(set(names)), rt.resource
        assert not set(names) & set(SYSTEM_COLUMNS), rt.resource


# --- personal data is ciphertext --------------------------------------------------------


@pytest.mark.parametrize("resource", RESOURCES)
def test_encrypted_fields_are_text_columns(resource: str) -> None:
    table = TABLES[resource]
    for spec in RECORD_TYPES[resource].fields:
        if spec.encrypted:
            # Exactly Text: a Varchar would truncate or reject a long cs1. envelope.
            assert type(_column(table, spec.name)) is Text, f"{resource}.{spec.name}"


@pytest.mark.parametrize("resource", RESOURCES)
def test_blind_indexed_fields_have_an_integer_index_column(resource: str) -> None:
    table = TABLES[resource]
    indexed = [f for f in RECORD_TYPES[resource].fields if f.blind_index]
    assert indexed or RECORD_TYPES[resource].subject_from, "expected a blind-indexed field"
    for spec in indexed:
        assert spec.index_column == f"{spec.name}_bidx"
        assert isinstance(_column(table, spec.index_column), Integer), spec.index_column
        # An index over plaintext would be pointless and leaks the value's equality.
        assert spec.encrypted, spec.name


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_personal_category_is_encrypted(resource: str) -> None:
    plain_personal = [
        f.name for f in RECORD_TYPES[resource].fields if f.category in PERSONAL and not f.encrypted
    ]
    assert not plain_personal, f"{resource}: personal fields stored in plaintext"


def test_known_personal_fields_are_encrypted() -> None:
    for name in ("first_name", "last_name", "email", "phone", "birth_date", "notes", "city"):
        assert CONTACT.field(name).encrypted, name
    assert ORGANIZATION.field("annual_revenue").encrypted
    assert ORGANIZATION.field("annual_revenue").category is Category.FINANCIAL


def test_interaction_participants_are_encrypted_free_text() -> None:
    """Who else took part names people (colleagues, the customer's assistant): free text,
    so encrypted, and scrubbed by erasure like every other free-text field."""
    spec = RECORD_TYPES["interaction"].field("participants")
    assert spec.category is Category.FREE_TEXT
    assert spec.encrypted
    assert not spec.filterable
    assert not spec.blind_index
    assert spec.max_length == 1000
    assert _problems(RECORD_TYPES["interaction"], {"participants": "x" * 1001}, partial=True) == {
        "participants": "longer than 1000 characters"
    }


def test_filterable_fields_are_plaintext() -> None:
    # List filters compare column values in SQL: an encrypted column cannot be filtered.
    for rt in RECORD_TYPES.values():
        for spec in rt.fields:
            if spec.filterable:
                assert not spec.encrypted, f"{rt.resource}.{spec.name}"


def test_every_field_purpose_is_registered() -> None:
    for rt in RECORD_TYPES.values():
        for spec in rt.fields:
            assert spec.purposes, f"{rt.resource}.{spec.name} has no purpose"
            assert spec.purposes <= set(PURPOSES), f"{rt.resource}.{spec.name}"


# --- clean_values: every problem at once ------------------------------------------------


def test_create_reports_every_problem_at_once() -> None:
    problems = _problems(
        CONTACT,
        {
            "first_name": 42,
            "shoe_size": "44",
            "email": "not-an-address",
            "notes": "x" * 5001,
            "lifecycle_stage": "vip",
            "country": "G1",
            "birth_date": "09/12/1906",
            # last_name (required) is missing
        },
        partial=False,
    )
    assert set(problems) == {
        "first_name",
        "shoe_size",
        "email",
        "notes",
        "lifecycle_stage",
        "country",
        "birth_date",
        "last_name",
    }
    assert problems["first_name"] == "expected a string"
    assert problems["shoe_size"] == "unknown field"
    assert problems["email"] == "not a valid e-mail address"
    assert problems["notes"] == "longer than 5000 characters"
    assert problems["lifecycle_stage"].startswith("must be one of: ")
    assert "customer" in problems["lifecycle_stage"]
    assert problems["country"] == "expected a two-letter ISO 3166 country code"
    assert problems["birth_date"] == "expected a date as YYYY-MM-DD"
    assert problems["last_name"] == "is required"


def test_integer_fields_reject_strings_floats_and_booleans() -> None:
    problems = _problems(
        ORGANIZATION,
        {"employee_count": "12", "annual_revenue": True, "name": 7},
        partial=True,
    )
    assert problems == {
        "employee_count": "expected a whole number",
        "annual_revenue": "expected a whole number",
        "name": "expected a string",
    }
    assert _problems(ORGANIZATION, {"employee_count": 12.0}, partial=True) == {
        "employee_count": "expected a whole number"
    }
    assert _problems(ORGANIZATION, {"employee_count": False}, partial=True) == {
        "employee_count": "expected a whole number"
    }
    assert _problems(ORGANIZATION, {"annual_revenue": 2**60}, partial=True) == {
        "annual_revenue": "number out of range"
    }
    assert _clean(ORGANIZATION, {"employee_count": 12, "annual_revenue": 0}) == {
        "employee_count": 12,
        "annual_revenue": 0,
    }


def test_required_fields_missing_on_create_but_not_on_partial_update() -> None:
    problems = _problems(CONTACT, {"city": "Leeds"}, partial=False)
    assert problems == {"first_name": "is required", "last_name": "is required"}
    assert _problems(ORGANIZATION, {}, partial=False) == {"name": "is required"}

    assert clean_values(CONTACT, {"city": "Leeds"}, partial=True, default_region="GB") == {
        "city": "Leeds"
    }


def test_required_fields_cannot_be_cleared_even_on_update() -> None:
    problems = _problems(CONTACT, {"first_name": None, "last_name": "   "}, partial=True)
    assert problems == {"first_name": "is required", "last_name": "must not be empty"}


def test_optional_fields_can_be_cleared() -> None:
    assert _clean(CONTACT, {"notes": None, "city": "  ", "email": ""}) == {
        "notes": None,
        "city": None,
        "email": None,
    }


def test_exactly_max_length_is_accepted_and_one_more_is_not() -> None:
    assert _clean(CONTACT, {"postcode": "A" * 20}) == {"postcode": "A" * 20}
    assert _problems(CONTACT, {"postcode": "A" * 21}, partial=True) == {
        "postcode": "longer than 20 characters"
    }


def test_oversize_country_is_reported_as_too_long() -> None:
    assert _problems(CONTACT, {"country": "GBR"}, partial=True) == {
        "country": "longer than 2 characters"
    }


def test_bad_dates_countries_choices_and_references() -> None:
    problems = _problems(
        CONTACT,
        {
            "birth_date": "1906-13-40",
            "country": "12",
            "source": "Referral",  # choices are exact
            "organization_id": "not-a-uuid",
        },
        partial=True,
    )
    assert problems == {
        "birth_date": "expected a date as YYYY-MM-DD",
        "country": "expected a two-letter ISO 3166 country code",
        "source": "must be one of: web, event, referral, import, phone, partner, manual, email",
        "organization_id": "not a valid id",
    }


def test_valid_values_are_canonicalised() -> None:
    org_id = uuid.uuid4()
    cleaned = _clean(
        CONTACT,
        {
            "first_name": "  Grace ",
            "country": "us",
            "birth_date": "1906-12-09",
            "lifecycle_stage": "customer",
            "organization_id": str(org_id).upper(),
        },
    )
    assert cleaned == {
        "first_name": "Grace",
        "country": "US",
        "birth_date": "1906-12-09",
        "lifecycle_stage": "customer",
        "organization_id": str(org_id),
    }


# --- clean_values: messages never carry the value ---------------------------------------

SECRET_VALUES: dict[str, Any] = {
    "email": "grace.secret.hopper@@navy-secret.example",
    "phone": "+44 secret phone 9",
    "birth_date": "secret-birthday",
    "country": "Secretland",
    "lifecycle_stage": "secret-stage",
    "notes": "secret-note-" * 500,
    "organization_id": "secret-organization",
    "first_name": ["secret-list-name"],
}


def test_error_messages_never_contain_the_submitted_value() -> None:
    with pytest.raises(InvalidValues) as caught:
        clean_values(CONTACT, SECRET_VALUES, partial=False, default_region="GB")
    exc = caught.value
    assert set(exc.problems) == set(SECRET_VALUES) | {"last_name"}
    message = str(exc)
    for name, value in SECRET_VALUES.items():
        text = value[0] if isinstance(value, list) else value[:40]
        assert text not in message, name
        assert "secret" not in exc.problems[name], name
    assert "secret" not in message
    assert "secret" not in repr(exc.args)


def test_integer_error_does_not_echo_the_value() -> None:
    with pytest.raises(InvalidValues) as caught:
        clean_values(
            ORGANIZATION, {"annual_revenue": "987654321"}, partial=True, default_region="GB"
        )
    assert "987654321" not in str(caught.value)
    assert all("987654321" not in v for v in caught.value.problems.values())


# --- normalisation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "grace.hopper@example.org",
        "Grace.Hopper@Example.ORG",
        "  GRACE.HOPPER@EXAMPLE.ORG  ",
        "\tgrace.hopper@example.org\n",
    ],
)
def test_email_spellings_store_identically(raw: str) -> None:
    assert _clean(CONTACT, {"email": raw}) == {"email": "grace.hopper@example.org"}
    assert _clean(ORGANIZATION, {"email": raw}) == {"email": "grace.hopper@example.org"}


@pytest.mark.parametrize(
    "raw",
    [
        "+44 20 7946 0001",
        "+442079460001",
        "020 7946 0001",
        "02079460001",
        "(020) 7946-0001",
        "0044 20 7946 0001",
    ],
)
def test_phone_spellings_store_identically(raw: str) -> None:
    assert _clean(CONTACT, {"phone": raw}) == {"phone": "+442079460001"}


def test_international_phone_is_independent_of_default_region() -> None:
    assert _clean(CONTACT, {"phone": "+44 20 7946 0001"}, region="US") == {"phone": "+442079460001"}
    # National forms are read in the default region.
    assert _clean(CONTACT, {"phone": "(202) 555-0143"}, region="US") == {"phone": "+12025550143"}
    with pytest.raises(InvalidValues) as caught:
        clean_values(CONTACT, {"phone": "020 7946 0001"}, partial=True, default_region="US")
    assert caught.value.problems == {"phone": "not a valid phone number"}


@pytest.mark.parametrize("raw", ["12345", "not a number", "+44 20"])
def test_invalid_phone_numbers_are_rejected(raw: str) -> None:
    problems = _problems(CONTACT, {"phone": raw}, partial=True)
    assert set(problems) == {"phone"}
    assert raw not in problems["phone"]


def test_unknown_field_names_are_echoed_only_when_they_look_like_field_names() -> None:
    """A client could put personal data in a *key*; errors must not repeat it either."""
    with pytest.raises(InvalidValues) as caught:
        clean_values(
            CONTACT,
            {"first_name": "A", "last_name": "B", "jane.doe@example.org": "x", "shoe_size": 9},
            partial=False,
            default_region="GB",
        )
    assert caught.value.problems["shoe_size"] == "unknown field"
    assert "jane.doe@example.org" not in str(caught.value)
    assert "jane.doe@example.org" not in caught.value.problems
    assert caught.value.problems["(unrecognised field name)"] == "unknown field"
