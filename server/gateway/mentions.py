"""Finding people in free text: the one detection that erasure and subject exports share.

A person is found in a text by their *identity*: the names, e-mail addresses and phone
numbers of their own records (contact, lead, organization), decrypted for the scan only
and never logged, stored or audited. Names and addresses match as whole words in any case
and spacing; phone numbers in any notation the ``phonenumbers`` matcher recognises.

Three uses, one rule (:class:`Matcher`):

- **Erasing X** (:func:`server.gateway.erasure.scrub_mentions`) replaces every span of X's
  identity in other people's free text with ``[erased]``.
- **Exporting X** shows the same spans as excerpts (:func:`mentions_of`, the same scan):
  what erasure would remove is exactly what access shows.
- **Exporting X** withholds *other* known people from X's free text
  (:func:`redact_others`): the spans that erasing them would scrub become
  ``[another person]``. Candidates are found through the name-search tokens and the
  e-mail and phone blind indexes, never by decrypting everyone, and are re-checked after
  decryption like every token match.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
import re
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import phonenumbers
from piccolo.table import Table

from server import db
from server.datamap import RECORD_TYPES, Category, Field, Kind, RecordType
from server.gateway.actor import Actor
from server.gateway.errors import Forbidden
from server.gateway.events import allowed_event
from server.gateway.tables import TABLES, SearchToken
from server.vault import DataKey
from server.vault.words import SHORTEST_PREFIX, normalize_words

if TYPE_CHECKING:
    from server.gateway.gateway import Gateway

ANOTHER_PERSON = "[another person]"
# Identifying fields whose values are looked for in other people's free text.
IDENTIFYING = frozenset({Category.IDENTIFIER, Category.CONTACT})
SHORTEST_NAME = 3  # "Al" or "Li" alone would match half the notes in the database
_EMAIL = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")
_CANDIDATE_BATCH = 500

Span = tuple[int, int]


@dataclass(frozen=True)
class Identity:
    """What finds one person in a text: names and e-mail addresses (longest first) and
    phone numbers (E.164). Held in memory for one scan only."""

    texts: tuple[str, ...] = ()
    phones: frozenset[str] = frozenset()

    @property
    def empty(self) -> bool:
        return not self.texts and not self.phones

    def without(self, own: Identity) -> Identity:
        """This identity less what it shares with ``own``: two people called Grace must not
        make a person's own first name disappear from their own export."""
        mine = {t.casefold() for t in own.texts}
        return Identity(
            tuple(t for t in self.texts if t.casefold() not in mine), self.phones - own.phones
        )


def free_text_fields(rt: RecordType) -> list[Field]:
    """The fields of ``rt`` that may mention anyone: scanned by erasure and exports."""
    return [f for f in rt.fields if f.category is Category.FREE_TEXT and f.encrypted]


def record_types() -> list[tuple[RecordType, type[Table]]]:
    """Every record type of the data map that has a table (generic: new types join in)."""
    return [(RECORD_TYPES[r], t) for r, t in TABLES.items() if r in RECORD_TYPES]


async def identities_of(gw: Gateway, subjects: Collection[uuid.UUID]) -> dict[str, Identity]:
    """The identities of these people, decrypted from their own records (one query per
    record type for the whole batch). An erased person (no key) has none."""
    wanted = list(dict.fromkeys(subjects))
    if not wanted:
        return {}
    keys = await gw.vault.keys_for(str(s) for s in wanted)
    present = [s for s in wanted if str(s) in keys]
    texts: dict[str, set[str]] = {str(s): set() for s in present}
    phones: dict[str, set[str]] = {str(s): set() for s in present}
    for rt, table in record_types():
        fields = [f for f in rt.fields if f.encrypted and f.category in IDENTIFYING]
        if not fields or not present:
            continue
        columns = [getattr(table, n) for n in ("id", "subject_id", *(f.name for f in fields))]
        for start in range(0, len(present), _CANDIDATE_BATCH):
            batch = present[start : start + _CANDIDATE_BATCH]
            rows = await table.select(*columns).where(getattr(table, "subject_id").is_in(batch))
            for row in rows:
                sid = str(row["subject_id"])
                names: list[str] = []
                for spec in fields:
                    token = row.get(spec.name)
                    plain = token and gw._decrypt(rt, spec, str(row["id"]), keys[sid], token)
                    if not isinstance(plain, str) or not plain.strip():
                        continue
                    if spec.kind is Kind.PHONE:
                        phones[sid].add(plain)
                    elif spec.kind is Kind.EMAIL:
                        texts[sid].add(plain)
                    else:
                        names.append(plain.strip())
                texts[sid].update(n for n in names if len(n) >= SHORTEST_NAME)
                if len(names) > 1:
                    texts[sid].add(" ".join(names))
    return {
        sid: Identity(tuple(sorted(texts[sid], key=len, reverse=True)), frozenset(phones[sid]))
        for sid in texts
    }


async def identity_of(gw: Gateway, subject: uuid.UUID) -> Identity:
    """One person's identity (see :func:`identities_of`)."""
    return (await identities_of(gw, [subject])).get(str(subject), Identity())


async def require(
    gw: Gateway, actor: Actor, rt: RecordType, action: str, purpose: str, subject: str
) -> None:
    """Ask the policy whether ``actor`` may take ``action`` on ``rt``; an audited denial
    (``Forbidden``) if not."""
    decision = gw._decide(actor, rt, action, purpose)
    if not decision.allowed:
        raise await gw._deny(
            actor,
            rt,
            action,
            purpose,
            decision.reason,
            Forbidden(f"your role may not {action} {rt.resource} records"),
            subject_ids=(subject,) if subject else (),
        )


def _national_digits(e164: str) -> str:
    try:
        return phonenumbers.national_significant_number(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return ""


def _key(text: str) -> str:
    return " ".join(text.split()).casefold()


class Matcher:
    """Finds the spans of any of several identities in a text: the single rule behind
    erasure's scrub, export excerpts and export redaction."""

    def __init__(self, identities: Iterable[Identity], region: str) -> None:
        texts: set[str] = set()
        phones: set[str] = set()
        for identity in identities:
            texts.update(identity.texts)
            phones.update(identity.phones)
        ordered = sorted(texts, key=len, reverse=True)
        patterns = [r"\s+".join(re.escape(word) for word in text.split()) for text in ordered]
        self._regex = (
            re.compile(r"(?<!\w)(?:" + "|".join(patterns) + r")(?!\w)", re.IGNORECASE)
            if patterns
            else None
        )
        self._phones = frozenset(phones)
        self._region = region
        # The national numbers' digits: a text whose digits hold none of them cannot
        # mention the phones, and the full matcher (slow) is not run on it.
        self._national = tuple(
            sorted({_national_digits(e164) for e164 in self._phones} - {""}, key=len)
        )

    @property
    def empty(self) -> bool:
        return self._regex is None and not self._phones

    def spans(self, text: str) -> list[Span]:
        """Where the identities are mentioned, in order, never overlapping."""
        found = [m.span() for m in self._regex.finditer(text)] if self._regex else []
        if self._phones and self._may_hold_phone(text):
            for match in phonenumbers.PhoneNumberMatcher(text, self._region):
                e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
                if e164 in self._phones and not any(
                    s < match.end and match.start < e for s, e in found
                ):
                    found.append((match.start, match.end))
        return sorted(found)

    def _may_hold_phone(self, text: str) -> bool:
        digits = phonenumbers.normalize_digits_only(text)
        return any(national in digits for national in self._national) or not self._national

    def replace(self, text: str, marker: str) -> tuple[str, int]:
        """``text`` with every span replaced by ``marker``, and how many there were."""
        return self.replace_each(text, lambda _: marker)

    def replace_each(self, text: str, marker_for: Callable[[str], str]) -> tuple[str, int]:
        """``text`` with every span replaced by ``marker_for(the matched text)``."""
        spans = self.spans(text)
        out = text
        for start, end in reversed(spans):
            out = out[:start] + marker_for(text[start:end]) + out[end:]
        return out, len(spans)


# --- mentions of one person in other people's records -------------------------------------


@dataclass(frozen=True)
class Mention:
    """One record of somebody else whose free text mentions the person: what erasure
    scrubs and what an export shows. ``texts`` maps field name -> (plaintext, spans)."""

    resource: str
    record_id: str
    owner_subject: str  # the person the record is about (never shown in an export)
    created_at: dt.datetime | None
    texts: Mapping[str, tuple[str, tuple[Span, ...]]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Found:
    rt: RecordType
    table: type[Table]
    row: Mapping[str, Any]
    key: DataKey
    mention: Mention


async def scan(
    gw: Gateway, subject: uuid.UUID, matcher: Matcher, *, batch_size: int = 500
) -> AsyncIterator[_Found]:
    """Every record of somebody else whose free text ``matcher`` finds something in: the
    one scan erasure and exports share. Keyset paging by id, ``batch_size`` rows at a
    time, so memory stays flat on a big database. The caller decided it may (erasure:
    ``erase``; an export: ``export``) and audits what it does with the result."""
    if matcher.empty:
        return
    for rt, table in record_types():
        free = free_text_fields(rt)
        if not free:
            continue
        pk = table._meta.primary_key
        subject_column = getattr(table, "subject_id")
        has_text = functools.reduce(
            operator.or_, (getattr(table, f.name).is_not_null() for f in free)
        )
        columns = [getattr(table, n) for n in ("id", "subject_id", "created_at")]
        columns += [getattr(table, f.name) for f in free]
        last: Any = None
        while True:
            query = table.select(*columns).where((subject_column != subject) & has_text)
            if last is not None:
                query = query.where(pk > last)
            rows = await query.order_by(pk).limit(batch_size)
            if not rows:
                break
            last = rows[-1]["id"]
            keys = await gw.vault.keys_for(str(r["subject_id"]) for r in rows)
            for row in rows:
                key = keys.get(str(row["subject_id"]))
                if key is None:
                    continue  # that person is erased too: nothing readable is left
                texts: dict[str, tuple[str, tuple[Span, ...]]] = {}
                for spec in free:
                    token = row.get(spec.name)
                    plain = token and gw._decrypt(rt, spec, str(row["id"]), key, token)
                    if isinstance(plain, str) and plain:
                        spans = matcher.spans(plain)
                        if spans:
                            texts[spec.name] = (plain, tuple(spans))
                if texts:
                    mention = Mention(
                        rt.resource,
                        str(row["id"]),
                        str(row["subject_id"]),
                        row.get("created_at"),
                        texts,
                    )
                    yield _Found(rt, table, row, key, mention)


# --- other people in one person's own text -----------------------------------------------


def _person_types() -> list[tuple[RecordType, type[Table]]]:
    """Record types that are their own subject (contacts, leads, organizations)."""
    return [(rt, t) for rt, t in record_types() if rt.subject_from is None]


async def _subjects_of(table: type[Table], record_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    found: set[uuid.UUID] = set()
    pk = table._meta.primary_key
    for start in range(0, len(record_ids), _CANDIDATE_BATCH):
        rows = await table.select(getattr(table, "subject_id")).where(
            pk.is_in(list(record_ids[start : start + _CANDIDATE_BATCH]))
        )
        found.update(uuid.UUID(str(r["subject_id"])) for r in rows)
    return found


async def candidates_in(gw: Gateway, texts: Iterable[str]) -> set[uuid.UUID]:
    """People who may be named in ``texts``: a word that starts one of their indexed names
    (the name-search tokens), or an e-mail address or phone number their records hold
    (the blind indexes). Tokens are truncated, so most candidates are false: the caller
    decrypts them and keeps only real matches."""
    words: set[str] = set()
    emails: set[str] = set()
    phones: set[str] = set()
    for text in texts:
        words.update(w for w in normalize_words(text) if len(w) >= SHORTEST_PREFIX)
        emails.update(m.group(0) for m in _EMAIL.finditer(text))
        for match in phonenumbers.PhoneNumberMatcher(text, gw.default_region):
            phones.add(
                phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
            )
    found: set[uuid.UUID] = set()
    for rt, table in _person_types():
        name_fields = [f for f in rt.fields if f.word_index and f.category in IDENTIFYING]
        record_ids: set[uuid.UUID] = set()
        for spec in name_fields:
            tokens = sorted({gw.vault.query_token(rt, spec, w) for w in words})
            for start in range(0, len(tokens), _CANDIDATE_BATCH):
                rows = await SearchToken.select(SearchToken.record_id).where(
                    (SearchToken.record_type == rt.resource)
                    & (SearchToken.field == spec.name)
                    & SearchToken.token.is_in(tokens[start : start + _CANDIDATE_BATCH])
                )
                record_ids.update(uuid.UUID(str(r["record_id"])) for r in rows)
        found |= await _subjects_of(table, sorted(record_ids))
        for spec in rt.fields:
            values = (
                emails if spec.kind is Kind.EMAIL else phones if spec.kind is Kind.PHONE else ()
            )
            if not spec.blind_index or not values:
                continue
            bidx = set()
            for value in values:
                try:
                    bidx.add(gw.vault.index_token(rt, spec, value))
                except ValueError:
                    continue  # not a valid address after all
            if bidx:
                rows = await table.select(getattr(table, "subject_id")).where(
                    getattr(table, spec.index_column).is_in(sorted(bidx))
                )
                found.update(uuid.UUID(str(r["subject_id"])) for r in rows)
    return found


async def others_matcher(
    gw: Gateway, subject: uuid.UUID, texts: Sequence[str], *, also: Collection[str] = ()
) -> tuple[Matcher, tuple[str, ...]]:
    """A matcher for every known person other than ``subject`` who is named in ``texts``
    (plus the people in ``also``, named or not), less whatever they share with the person
    themself; and the subject ids it covers (for the audit event, never for the export)."""
    candidates = await candidates_in(gw, texts)
    candidates |= {uuid.UUID(s) for s in also}
    candidates.discard(subject)
    if not candidates:
        return Matcher((), gw.default_region), ()
    own = await identity_of(gw, subject)
    found = {
        sid: mine
        for sid, identity in (await identities_of(gw, sorted(candidates))).items()
        if not (mine := identity.without(own)).empty
    }
    # Who owns each name, address and number (two people may share a first name): one
    # pass of one matcher over the texts tells which candidates are really named.
    owners: dict[str, set[str]] = {}
    for sid, identity in found.items():
        for key in (*(_key(t) for t in identity.texts), *identity.phones):
            owners.setdefault(key, set()).add(sid)
    probe = Matcher(found.values(), gw.default_region)
    named = {sid for sid in found if sid in also}
    for text in texts:
        for start, end in probe.spans(text):
            hit = text[start:end]
            named |= owners.get(_key(hit), set()) | owners.get(_e164(hit, gw.default_region), set())
    return Matcher((found[sid] for sid in named), gw.default_region), tuple(sorted(named))


def _e164(text: str, region: str) -> str:
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return ""
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


# --- what a subject export asks -----------------------------------------------------------


async def mentions_of(
    gw: Gateway, actor: Actor, subject: uuid.UUID, *, purpose: str, batch_size: int = 500
) -> list[Mention]:
    """The records of other people whose free text mentions the person (what erasing them
    would scrub), for their export. Needs ``export`` on every record type with free text;
    one audited ``export_mention`` event per record type found, naming the field names and
    the people whose records were read - never a value."""
    for rt, _ in record_types():
        if free_text_fields(rt):
            await require(gw, actor, rt, "export", purpose, str(subject))
    identity = await identity_of(gw, subject)
    matcher = Matcher([identity], gw.default_region)
    found = [f.mention async for f in scan(gw, subject, matcher, batch_size=batch_size)]
    by_type: dict[str, list[Mention]] = {}
    for mention in found:
        by_type.setdefault(mention.resource, []).append(mention)
    if by_type:
        async with db.write_transaction():
            for resource, items in by_type.items():
                await gw.audit.append(
                    allowed_event(
                        actor,
                        "export_mention",
                        resource,
                        purpose,
                        (str(subject), *(m.owner_subject for m in items)),
                        fields={name for m in items for name in m.texts},
                        detail={"records": len(items), "for": "data_subject"},
                    )
                )
    return found


async def redact_others(
    gw: Gateway,
    actor: Actor,
    subject: uuid.UUID,
    texts: Sequence[str],
    *,
    purpose: str,
    also: Collection[str] = (),
    marker: str = ANOTHER_PERSON,
) -> list[tuple[str, int]]:
    """Each of ``texts`` with every other known person withheld: the spans that erasing
    them would scrub become ``marker`` (with how many there were). ``also`` names people
    to withhold even where no token finds them (the person a mentioning record is about).
    Needs ``export`` on the record types people are their own subject of; one audited
    ``withhold_third_party`` event with the people withheld and their count."""
    for rt, _ in _person_types():
        await require(gw, actor, rt, "export", purpose, str(subject))
    matcher, named = await others_matcher(gw, subject, texts, also=also)
    redacted = [matcher.replace(text, marker) for text in texts]
    if named:
        async with db.write_transaction():
            await gw.audit.append(
                allowed_event(
                    actor,
                    "withhold_third_party",
                    "data_subject",
                    purpose,
                    (str(subject), *named),
                    reason="rights_of_others",
                    detail={"people": len(named), "for": "data_subject"},
                )
            )
    return redacted
