"""The data map as the only declaration (issue 18).

- The customer tables (server/gateway/tables.py) match the data map column by column: the
  column type each field's kind and encryption call for, a Varchar long enough for every
  value the data map accepts, NOT NULL exactly where the field is required, and the
  system columns' types. (tests/server/test_datamap.py checks that the column *names* agree.)
- What used to be hand-kept lists beside the data map - the import's natural keys, what a
  lead hands to its contact, the admin's headings, list columns, page paths and plurals,
  the fields left off a record's page - are attributes of the fields and record types,
  and these tests hold them to what the code relies on.
"""

from __future__ import annotations

import re
from dataclasses import replace

import pytest
from litestar import Litestar
from piccolo.columns import (
    UUID,
    BigInt,
    Column,
    Date,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.table import Table

from admin_ui.navigation import MENU
from admin_ui.pages.records_list import RecordListPages
from admin_ui.plugin import admin_router
from server.csvio.importer import IMPORTABLE, NATURAL_KEYS
from server.datamap import (
    CONTACT,
    LEAD,
    RECORD_TYPES,
    SYSTEM_COLUMNS,
    Field,
    FieldKind,
    RecordType,
    duplicate_match_fields,
    natural_keys,
)
from server.gateway.leads import CONTACT_FROM_LEAD
from server.gateway.tables import TABLES, DeclaredColumns
from server.services import service_dependencies

RESOURCES = sorted(RECORD_TYPES)
# The column type a plaintext field of each kind is stored in.
PLAIN_COLUMN: dict[FieldKind, tuple[type[Column], ...]] = {
    FieldKind.TEXT: (Varchar,),
    FieldKind.CHOICE: (Varchar,),
    FieldKind.INTEGER: (Integer, BigInt),
    FieldKind.DATE: (Date,),
    FieldKind.DATETIME: (Timestamptz,),
    FieldKind.REFERENCE: (UUID,),
}
SYSTEM_COLUMN_TYPES: dict[str, type[Column]] = {
    "id": UUID,
    "subject_id": UUID,
    "owner_id": Integer,
    "team": Varchar,
    "created_at": Timestamptz,
    "updated_at": Timestamptz,
}


def column(table: type[Table], name: str) -> Column:
    return next(c for c in table._meta.columns if c._meta.name == name)


def longest_value(spec: Field) -> int:
    """The longest value the data map lets into the column."""
    if spec.choices:
        return max(len(choice) for choice in spec.choices)
    return spec.max_length


def mismatches(rt: RecordType, table: type[Table]) -> list[str]:
    wrong = []
    for spec in rt.fields:
        found = column(table, spec.name)
        expected = (Text,) if spec.encrypted else PLAIN_COLUMN.get(spec.kind, ())
        if type(found) not in expected:
            wrong.append(f"{spec.name}: {type(found).__name__}, expected {expected}")
        if isinstance(found, Varchar) and found.length < longest_value(spec):
            wrong.append(f"{spec.name}: Varchar({found.length}) < {longest_value(spec)}")
        if found._meta.null is spec.required:
            wrong.append(f"{spec.name}: null={found._meta.null} but required={spec.required}")
        if spec.blind_index and column(table, spec.index_column)._meta.null is not True:
            wrong.append(f"{spec.index_column}: a blind index is empty when the field is")
    return wrong


@pytest.mark.parametrize("resource", RESOURCES)
def test_every_field_has_the_column_its_declaration_calls_for(resource: str) -> None:
    assert mismatches(RECORD_TYPES[resource], TABLES[resource]) == []


@pytest.mark.parametrize("resource", RESOURCES)
def test_system_columns_have_their_types(resource: str) -> None:
    table = TABLES[resource]
    assert set(SYSTEM_COLUMN_TYPES) == set(SYSTEM_COLUMNS)
    for name, kind in SYSTEM_COLUMN_TYPES.items():
        assert type(column(table, name)) is kind, f"{resource}.{name}"
    assert table._meta.primary_key._meta.name == "id"


@pytest.mark.parametrize("resource", RESOURCES)
def test_a_table_that_writes_no_field_out_gets_them_from_the_declaration(resource: str) -> None:
    """What a new field gets when the class body does not spell it out (DeclaredColumns):
    for every field of every type, built from the declaration alone, the check passes."""
    rt = RECORD_TYPES[resource]

    class Bare(DeclaredColumns, Table, tablename=f"declared_{rt.table}", record_type=rt):
        pass  # every field's columns from the declaration (and Piccolo's own ``id``)

    assert mismatches(rt, Bare) == []
    made = {c._meta.name for c in Bare._meta.columns} - {"id"}
    # Lifecycle columns (a merged contact's ``merged_into``) are named by the data map but
    # typed by the table that writes them out: they are not fields, so nothing derives them.
    assert made == set(rt.columns) - set(SYSTEM_COLUMNS) - set(rt.lifecycle_columns)


def test_the_check_notices_a_column_that_drifts() -> None:
    """A field declared longer than its column, or required over a nullable column, fails."""
    drifted = {
        "source": replace(CONTACT.field("source"), kind=FieldKind.TEXT, choices=(), max_length=33),
        "job_title": replace(CONTACT.field("job_title"), required=True),
        "birth_date": replace(CONTACT.field("birth_date"), encrypted=False),
    }
    fields = tuple(drifted.get(f.name, f) for f in CONTACT.fields)
    found = mismatches(replace(CONTACT, fields=fields), TABLES["contact"])
    assert [line.split(":")[0] for line in found] == ["job_title", "birth_date", "source"]


# --- hand-kept lists, now declarations ----------------------------------------------------


def test_import_natural_keys_come_from_the_fields() -> None:
    assert NATURAL_KEYS == {
        "contact": ("email", "phone"),
        "lead": ("email", "phone"),
        "organization": ("domain", "name"),
    }
    for resource in IMPORTABLE:
        rt = RECORD_TYPES[resource]
        assert natural_keys(rt), f"{resource} is importable but has no natural key"
        for name in natural_keys(rt):
            spec = rt.field(name)
            # An import finds the existing record by the key: an exact lookup must exist.
            assert spec.blind_index or not spec.encrypted, f"{resource}.{name}"
    orders = [f.natural_key for rt in RECORD_TYPES.values() for f in rt.fields if f.natural_key]
    assert all(n > 0 for n in orders)


def test_a_new_natural_key_is_one_declaration() -> None:
    """Declaring a second e-mail field as a natural key is all an import needs."""
    second = Field(
        "email_2",
        CONTACT.field("email").category,
        FieldKind.EMAIL,
        "Second e-mail",
        encrypted=True,
        blind_index=True,
        natural_key=3,
    )
    extended = type(CONTACT)(
        resource="contact",
        table="contact",
        label="Contact",
        fields=(*CONTACT.fields, second),
    )
    assert natural_keys(extended) == ("email", "phone", "email_2")


def test_what_a_lead_hands_to_its_contact_is_declared_on_the_lead() -> None:
    assert CONTACT_FROM_LEAD == ("first_name", "last_name", "email", "phone", "source")
    for name in CONTACT_FROM_LEAD:
        lead_field, contact_field = LEAD.field(name), CONTACT.field(name)
        # Same kind and protection: a converted value is stored the way the contact keeps it.
        assert (lead_field.kind, lead_field.encrypted) == (
            contact_field.kind,
            contact_field.encrypted,
        )
        assert set(lead_field.choices) <= set(contact_field.choices or lead_field.choices)
    assert all(
        not f.to_contact for rt in RECORD_TYPES.values() if rt is not LEAD for f in rt.fields
    )


def test_admin_headings_and_list_columns_are_declared_with_the_record_type() -> None:
    for rt in RECORD_TYPES.values():
        assert rt.heading, f"{rt.resource}: no heading declared"
        assert rt.summary, f"{rt.resource}: no list columns declared"
        known = {f.name for f in rt.fields} | set(SYSTEM_COLUMNS)
        assert set(rt.heading) <= known, rt.resource
        assert set(rt.summary) <= known, rt.resource
    assert CONTACT.heading == ("first_name", "last_name")
    assert RECORD_TYPES["deal"].summary[:2] == ("contact_id", "organization_id")


def test_admin_page_paths_and_plurals_are_declared_with_the_record_type() -> None:
    """Every record type names a list of itself; those with pages of their own say where,
    each at its own path; the rest (survey answers, case messages) are shown elsewhere."""
    paths = {rt.resource: rt.page_path for rt in RECORD_TYPES.values()}
    plurals = [rt.plural for rt in RECORD_TYPES.values()]
    assert all(p and p[0].isupper() for p in plurals), plurals
    assert len(set(plurals)) == len(plurals)
    with_pages = [p for p in paths.values() if p is not None]
    assert len(set(with_pages)) == len(with_pages)
    for resource, path in paths.items():
        assert path is None or re.fullmatch(r"/[a-z][a-z-]*", path), (resource, path)
    assert {r for r, p in paths.items() if p is None} == {"feedback", "case_message"}
    assert paths["contact"] == "/contacts"
    assert paths["mail"] == "/mail"
    assert RECORD_TYPES["mail"].plural == "Captured e-mail"


def test_a_record_type_has_pages_exactly_when_it_declares_a_page_path() -> None:
    """The admin mounts the list, form and detail pages of each type with a page_path, and
    of no other; its menu names each list as the data map does."""
    app = Litestar(route_handlers=[admin_router()], dependencies=service_dependencies())
    routes = {(r.path, m) for r in app.routes for m in getattr(r, "methods", ())}
    lists = {
        r.path
        for r in app.routes
        for handlers in getattr(r, "route_handler_map", {}).values()
        if isinstance(getattr(handlers[0].fn, "__self__", None), RecordListPages)
        and handlers[0].fn.__name__ == "index"
    }
    declared = {rt.page_path for rt in RECORD_TYPES.values() if rt.page_path is not None}
    assert lists == declared
    for path in declared:
        expected = {
            (path, "GET"),
            (f"{path}/search", "POST"),
            (f"{path}/bulk", "POST"),
            (f"{path}/bulk/apply", "POST"),
            (f"{path}/new", "GET"),
            (f"{path}/new", "POST"),
            (f"{path}/{{record_id:str}}", "GET"),
            (f"{path}/{{record_id:str}}/edit", "GET"),
            (f"{path}/{{record_id:str}}/edit", "POST"),
            (f"{path}/{{record_id:str}}/delete", "GET"),
            (f"{path}/{{record_id:str}}/delete", "POST"),
        }
        assert expected <= routes, sorted(expected - routes)
    entries = {e.href: e for _, group in MENU for e in group}
    for rt in RECORD_TYPES.values():
        entry = entries.get(rt.page_path or "")
        if entry is not None:
            assert (entry.label, entry.right) == (rt.plural, (rt.resource, "list"))


def test_bookkeeping_fields_are_left_off_the_record_page_only() -> None:
    hidden = {
        (rt.resource, f.name) for rt in RECORD_TYPES.values() for f in rt.fields if f.bookkeeping
    }
    assert hidden == {("mail", "thread_key"), ("mail", "message_key"), ("mail", "mailbox_id")}


def test_duplicate_matching_fields_are_declared_and_blind_indexed() -> None:
    assert duplicate_match_fields(CONTACT) == ("email", "phone")
    for rt in RECORD_TYPES.values():
        for spec in rt.fields:
            if spec.duplicate_match:
                # Duplicates are found by grouping the blind index: nothing else can match.
                assert spec.blind_index, f"{rt.resource}.{spec.name}"
    second = Field(
        "email_2", CONTACT.field("email").category, FieldKind.EMAIL, "Second e-mail",
        encrypted=True, blind_index=True, duplicate_match=True,
    )  # fmt: skip
    extended = replace(CONTACT, fields=(*CONTACT.fields, second))
    assert duplicate_match_fields(extended) == ("email", "phone", "email_2")
