"""The mention index: erasure and exports find a person in other people's free text through
keyed, truncated tokens written with each record, not by decrypting the whole database
(issue 15 item 5, docs/dsr.md "The mention index").

What a user would notice: erasing someone scrubs every note that names them - notes typed
after the index existed and notes typed before it (found by reading everything until the
back-fill has run, through the index after) - while reading only the records that can
mention them; and the index holds nothing a database thief can read a name from.
"""

from __future__ import annotations

import ast
import uuid
from pathlib import Path
from typing import Any

from server import db
from server.gateway import Actor, mention_index
from server.gateway.mentions import Matcher, identity_of, record_types
from server.gateway.tables import MentionIndexState, MentionToken
from server.services import Services
from tests.admin_ui.test_admin_ui import sales_contact
from tests.conftest import Staff, contact_values
from tests.dbutil import raw_sql
from tests.server.cli.test_cli import Install, consentry, forget_process_state, install
from tests.server.cli.test_search_cli import _in_process
from tests.server.gateway.test_authz_matrix import values_for as authz_values
from tests.server.vault.test_at_rest import _database_copy

__all__ = ["install"]

ROOT = Path(__file__).resolve().parents[3]
ADMIN = Actor.system("test-admin")
PERSON = {
    "first_name": "José",
    "last_name": "Núñez-Brackenridge",
    "email": "jose.nunez@example.org",
    "phone": "+44 7911 123456",
}
# How staff write the person in other people's notes: every one is a mention.
MENTIONS = (
    "Met jose nunez-brackenridge at the fair.",
    "JOSÉ said to call back.",
    "NÚÑEZ BRACKENRIDGE wants a quote",
    "Mob07911123456 after six",
    "call him on 7911 123456",
    "+44 (0)7911-123456 is his mobile",
    "Wrote to Jose.Nunez@Example.org yesterday",
    "Referred by nunez brackenridge",
)
# Look alike but are not mentions: another address holding his, a longer number, a word
# that only starts like his name.
NOT_MENTIONS = (
    "Wrote to xjose.nunez@example.org.uk",
    "Order 0791112345678 shipped",
    "Joseph and Josefina came",
)


async def _person(services: Services) -> Any:
    return await services.gateway.create(ADMIN, "contact", contact_values(**PERSON, notes=""))


async def _notes(services: Services, texts: tuple[str, ...]) -> list[str]:
    """One other customer per text, the text in their notes; returns their record ids."""
    result = await services.gateway.create_many(
        ADMIN, "contact", [contact_values(notes=text) for text in texts]
    )
    assert not result.rejected
    return list(result.created)


async def _found(services: Services, subject: str) -> set[str]:
    mentions = await services.gateway.subject_mentions(ADMIN, subject, purpose="compliance")
    return {m.record_id for m in mentions}


async def _forget_index_of(record_ids: list[str]) -> None:
    """As if these records were written before the mention index existed: no tokens, and
    the migration found records, so the index is not complete."""
    await MentionToken.delete().where(
        MentionToken.record_id.is_in([uuid.UUID(i) for i in record_ids])
    )
    await mention_index.mark_incomplete()


async def _notes_now(services: Services, record_ids: list[str]) -> list[str]:
    return [(await services.gateway.read(ADMIN, "contact", i)).values["notes"] for i in record_ids]


async def test_mentions_written_after_the_index_are_found_through_it(
    services: Services,
) -> None:
    person = await _person(services)
    mentioning = await _notes(services, MENTIONS)
    unrelated = await _notes(services, NOT_MENTIONS)
    assert await mention_index.is_complete(services.gateway)

    assert await _found(services, person.subject_id) == set(mentioning)
    scrub = await services.gateway.erase_mentions(ADMIN, person.subject_id)
    assert scrub.indexed
    assert scrub.changed == len(MENTIONS)
    for text in await _notes_now(services, mentioning):
        assert "[erased]" in text
        for secret in ("jose", "josé", "nunez", "núñez", "brackenridge", "7911"):
            assert secret not in text.lower(), text
    assert await _notes_now(services, unrelated) == list(NOT_MENTIONS)
    # The scrubbed notes are re-indexed from what is left: nothing finds them any more.
    assert await _found(services, person.subject_id) == set()


async def test_the_index_finds_exactly_what_reading_everything_finds(
    services: Services,
) -> None:
    """The index only narrows: the same records and the same spans either way."""
    person = await _person(services)
    await _notes(services, MENTIONS + NOT_MENTIONS)
    gw = services.gateway

    def spans(found: list[Any]) -> set[tuple[str, str, tuple[Any, ...]]]:
        return {(m.record_id, f, s) for m in found for f, (_, s) in m.texts.items()}

    indexed = await gw.subject_mentions(ADMIN, person.subject_id, purpose="compliance")
    await mention_index.mark_incomplete()
    everything = await gw.subject_mentions(ADMIN, person.subject_id, purpose="compliance")
    assert len(indexed) == len(MENTIONS)
    assert spans(indexed) == spans(everything)


async def test_mentions_written_before_the_index_are_found_before_and_after_the_backfill(
    services: Services,
) -> None:
    person = await _person(services)
    old = await _notes(services, MENTIONS[:4])
    await _forget_index_of(old)
    new = await _notes(services, MENTIONS[4:])  # typed after the index existed

    # Not complete: the index is not trusted, every free text is read, nothing is missed.
    assert not await mention_index.is_complete(services.gateway)
    assert await _found(services, person.subject_id) == set(old + new)

    done = await mention_index.rebuild_all(services.gateway, ADMIN, batch_size=3)
    assert done["contact"] == 1 + len(MENTIONS)
    assert await mention_index.is_complete(services.gateway)
    assert await _found(services, person.subject_id) == set(old + new)
    scrub = await services.gateway.erase_mentions(ADMIN, person.subject_id)
    assert scrub.indexed
    assert scrub.changed == len(MENTIONS)


async def test_erasure_before_the_backfill_reads_everything_and_misses_nothing(
    services: Services,
) -> None:
    person = await _person(services)
    old = await _notes(services, MENTIONS[:3])
    others = await _notes(services, ("Nothing to see",) * 5)
    await _forget_index_of(old + others)
    scrub = await services.gateway.erase_mentions(ADMIN, person.subject_id)
    assert not scrub.indexed
    assert scrub.scanned == len(old) + len(others)
    assert scrub.changed == len(old)
    assert all("[erased]" in text for text in await _notes_now(services, old))


async def test_an_erasure_among_2000_records_reads_only_the_candidates(
    services: Services, staff: Staff
) -> None:
    rep = await staff.create("sales")
    actor = staff.actor(rep)
    person = await services.gateway.create(actor, "contact", sales_contact(**PERSON))
    rows = [
        sales_contact(
            notes=f"Call {i}: spoke to José Núñez about the renewal"
            if i % 200 == 0
            else f"Call {i}: renewal of contract {i * 7919} discussed, send the offer by mail"
        )
        for i in range(2000)
    ]
    for start in (0, 1000):  # one call of 2,000 exceeds PostgreSQL's 32,767 parameters
        await services.gateway.create_many(ADMIN, "contact", rows[start : start + 1000])
    decrypted: list[str] = []
    real = services.gateway.decrypt_field

    def counting(rt: Any, spec: Any, row_id: str, key: Any, token: str) -> Any:
        if spec.name == "notes":
            decrypted.append(row_id)
        return real(rt, spec, row_id, key, token)

    services.gateway.decrypt_field = counting  # type: ignore[method-assign]
    try:
        scrub = await services.gateway.erase_mentions(ADMIN, person.subject_id)
    finally:
        del services.gateway.decrypt_field
    assert scrub.indexed
    assert scrub.changed == 10
    # The ten that mention him, plus the odd false match of a truncated token at most.
    assert 10 <= scrub.scanned <= 20
    assert 10 <= len(set(decrypted)) <= 20


async def test_tokens_follow_the_record_update_delete_anonymise(
    services: Services, staff: Staff
) -> None:
    gw = services.gateway
    person = await _person(services)
    (other,) = await _notes(services, ("Met José yesterday",))
    assert await _found(services, person.subject_id) == {other}

    await gw.update(ADMIN, "contact", other, {"notes": "Nothing about anyone"})
    assert await _found(services, person.subject_id) == set()
    await gw.update(ADMIN, "contact", other, {"notes": "Nunez-Brackenridge again"})
    assert await _found(services, person.subject_id) == {other}

    rt_rows = await MentionToken.count().where(MentionToken.record_id == uuid.UUID(other))
    assert rt_rows > 0
    await gw.delete(ADMIN, "contact", other)
    assert await MentionToken.count().where(MentionToken.record_id == uuid.UUID(other)) == 0

    interaction = await gw.create(
        ADMIN,
        "interaction",
        {
            "contact_id": (await gw.create(ADMIN, "contact", contact_values())).id,
            "channel": "meeting",
            "occurred_at": "2026-11-30T10:00:00+00:00",
            "summary": "Talked about jose.nunez@example.org",
        },
    )
    assert await _found(services, person.subject_id) == {interaction.id}
    assert await gw.anonymise_records(ADMIN, "interaction", [interaction.id]) == 1
    assert (
        await MentionToken.count().where(MentionToken.record_id == uuid.UUID(interaction.id)) == 0
    )


async def test_an_erased_person_leaves_no_token(services: Services) -> None:
    person = await _person(services)
    await services.gateway.update(ADMIN, "contact", person.id, {"notes": "Knows Ada Lovelace"})
    assert await MentionToken.count().where(MentionToken.record_id == uuid.UUID(person.id)) > 0
    result = await services.erasure.erase(person.subject_id, by="system:test")
    assert result.complete
    assert await MentionToken.count().where(MentionToken.record_id == uuid.UUID(person.id)) == 0


async def test_the_index_holds_no_plaintext(services: Services, database_url: str) -> None:
    await _person(services)
    await _notes(services, MENTIONS)
    rows = await raw_sql(database_url, "SELECT * FROM mention_token")
    assert rows
    for row in rows:
        assert set(row) == {"id", "record_type", "record_id", "field", "token"}
        assert isinstance(row["token"], int)
        assert (row["record_type"], row["field"]) == ("contact", "notes")
    dump = await _database_copy(database_url)
    for secret in ("Brackenridge", "brackenridge", "Nunez", "nunez", "jose.nunez", "7911123456"):
        assert secret.encode() not in dump, secret


async def test_a_migrated_database_with_records_starts_incomplete(services: Services) -> None:
    """The migration's first state: complete on an empty database, not with records."""
    import importlib

    migration = importlib.import_module(
        "migrations.search.versions.search_2026_12_02t19_31_00_000000"
    )
    manager = await migration.forwards()
    first_state = manager.raw[-1]
    assert await mention_index.is_complete(services.gateway)  # the template: no records

    await _person(services)
    await MentionIndexState.delete(force=True)
    async with db.write_transaction():
        await first_state()
    assert not await mention_index.is_complete(services.gateway)


async def test_a_changed_index_key_is_not_trusted(services: Services) -> None:
    person = await _person(services)
    (other,) = await _notes(services, ("Met José yesterday",))
    assert await mention_index.is_complete(services.gateway)
    await MentionIndexState.update({MentionIndexState.probe: 12345}, force=True)
    assert not await mention_index.is_complete(services.gateway)
    assert await _found(services, person.subject_id) == {other}  # by reading everything


async def test_every_free_text_field_of_the_data_map_is_indexed_when_written(
    services: Services,
) -> None:
    """Generic over the data map: each free-text field of each record type with a table
    finds the person through the index after a create and after an update."""
    gw = services.gateway
    person = await _person(services)
    contact = await gw.create(ADMIN, "contact", contact_values())
    checked = []
    for rt, _ in record_types():
        fields = mention_index.indexed_fields(rt)
        if not fields:
            continue
        try:
            if rt.resource == "case_message":  # a message belongs to a case
                case = await gw.create(ADMIN, "case", authz_values("case", contact.id, ""))
                base = {"kind": "note", "case_id": case.id}
            else:
                email = f"x.{uuid.uuid4().hex[:6]}@example.org"
                base = authz_values(rt.resource, contact.id, email)
        except KeyError:
            raise AssertionError(
                f"{rt.resource}: add values to values_for in "
                "tests/server/gateway/test_authz_matrix.py"
            ) from None
        for spec in fields:
            record = await gw.create(
                ADMIN, rt.resource, {**base, spec.name: "Met José Núñez-Brackenridge"}
            )
            found = await mention_index.candidates(gw, [await identity_of(gw, _uuid(person))])
            assert found is not None
            assert uuid.UUID(record.id) in found.get(rt.resource, set()), (rt.resource, spec)
            await gw.update(ADMIN, rt.resource, record.id, {spec.name: "Nobody in here"})
            found = await mention_index.candidates(gw, [await identity_of(gw, _uuid(person))])
            assert found is not None
            assert uuid.UUID(record.id) not in found.get(rt.resource, set()), (rt.resource, spec)
            checked.append(f"{rt.resource}.{spec.name}")
    assert {"contact.notes", "interaction.summary", "note.body", "case.description"} <= set(checked)


def _uuid(record: Any) -> uuid.UUID:
    return uuid.UUID(record.subject_id)


def test_the_matcher_and_the_index_agree_on_tricky_texts() -> None:
    """Every text the matcher finds the person in holds one of the lookup's requirements."""
    from server.gateway.mentions import Identity

    identity = Identity(
        ("José Núñez-Brackenridge", "José", "Núñez-Brackenridge", "jose.nunez@example.org"),
        frozenset({"+447911123456", "+12025550143"}),
    )
    matcher = Matcher([identity], "GB")
    wanted = mention_index.requirements([identity])
    assert wanted is not None
    texts = (
        *MENTIONS,
        *NOT_MENTIONS,
        "1-202-555-0143",
        "(202) 555-0143 ext 2",
        "o'brien and JOSE",
        "jose\u2019s notes",
        "<jose.nunez@example.org>",
        "mailto:JOSE.NUNEZ@EXAMPLE.ORG.",
        "N\u00fa\u00f1ez\u2013Brackenridge",  # an en dash
        "NUÑEZ\u00a0BRACKENRIDGE",
        "ref 447911123456",
    )
    for text in texts:
        if matcher.spans(text):
            terms = mention_index.text_terms(text)
            assert any(requirement <= terms for requirement in wanted), text


def test_every_write_point_of_the_name_index_keeps_the_mention_index_too() -> None:
    """Where the gateway keeps name-search tokens in step with a write, it keeps mention
    tokens in step too (a new write path copying one and not the other fails here)."""
    pairs = {
        "write": {"write", "refresh"},
        "write_new": {"write_new"},
        "clear": {"clear"},
        "clear_subject_rows": {"clear_subject_rows"},
        "clear_subject": {"clear_subject"},
        "refresh": {"refresh"},
    }
    missing = []
    for path in sorted((ROOT / "server").rglob("*.py")):
        if path.name in {"name_index.py", "mention_index.py"}:
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            calls: dict[str, set[str]] = {"name_index": set(), "mention_index": set()}
            for inner in ast.walk(node):
                if (
                    isinstance(inner, ast.Call)
                    and isinstance(inner.func, ast.Attribute)
                    and isinstance(inner.func.value, ast.Name)
                    and inner.func.value.id in calls
                ):
                    calls[inner.func.value.id].add(inner.func.attr)
            for op in calls["name_index"] & set(pairs):
                if not pairs[op] & calls["mention_index"]:
                    missing.append(f"{path.relative_to(ROOT)}:{node.name} name_index.{op}")
    assert not missing, missing


def test_cli_reindex_and_migrate_backfill(install: Install) -> None:
    assert consentry("keys", "init").exit_code == 0
    assert consentry("migrate").exit_code == 0
    assert "mention index: complete" in consentry("mentions", "status").stdout

    async def seed(services: Any) -> str:
        person = await services.gateway.create(ADMIN, "contact", contact_values(**PERSON))
        result = await services.gateway.create_many(
            ADMIN, "contact", [contact_values(notes=t) for t in MENTIONS[:2]]
        )
        await _forget_index_of(list(result.created))
        return str(person.subject_id)

    async def found(services: Any) -> tuple[bool, int]:
        mentions = await services.gateway.subject_mentions(ADMIN, subject, purpose="compliance")
        return await mention_index.is_complete(services.gateway), len(mentions)

    subject = _in_process(seed)
    status = consentry("mentions", "status")
    assert "mention index: incomplete" in status.stdout
    assert _in_process(found) == (False, 2)  # read everything: still found

    migrated = consentry("migrate")
    assert migrated.exit_code == 0, migrated.output
    assert "mention index rebuilt: 3 contact(s)" in migrated.stdout
    assert _in_process(found) == (True, 2)
    assert "mention index: complete" in consentry("mentions", "status").stdout

    again = consentry("mentions", "reindex", "--batch-size", "1")
    assert again.exit_code == 0, again.output
    assert "3 contact(s)" in again.stdout
    assert _in_process(found) == (True, 2)
    assert consentry("mentions", "reindex", "--batch-size", "0").exit_code == 2
    forget_process_state()
