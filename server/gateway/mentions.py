"""Finding people in free text: the one detection that erasure and subject exports share.

A person is found in a text by their *identity*: the names, e-mail addresses and phone
numbers of their own records (contact, lead, organization), decrypted for the scan only
and never logged, stored or audited. Names and addresses match as whole words in any case,
spacing and accents ("Jose Nunez" finds José Núñez, as staff often type it); phone
numbers in any notation the ``phonenumbers`` matcher recognises.

Three uses, one rule (:class:`Matcher`):

- **Erasing X** (:func:`server.gateway.erasure.scrub_mentions`) replaces every span of X's
  identity in other people's free text with ``[erased]``.
- **Exporting X** shows the same spans as excerpts
  (:func:`server.gateway.mention_scan.mentions_of`, the same scan):
  what erasure would remove is exactly what access shows.
- **Exporting X** withholds *other* known people from X's free text
  (:func:`redact_others`): the spans that erasing them would scrub become
  ``[another person]``. Candidates are found through the name-search tokens and the
  e-mail and phone blind indexes, never by decrypting everyone, and are re-checked after
  decryption like every token match.

The first two scans decrypt only the records the mention index
(:mod:`server.gateway.mention_index`) names as candidates for X's identity, and every
record while that index is not complete; the matcher decides either way.
"""

from __future__ import annotations

import datetime as dt
import functools
import operator
import re
import unicodedata
import uuid
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import phonenumbers
from piccolo.table import Table

from server import db
from server.datamap import RECORD_TYPES, Category, Field, FieldKind, RecordType
from server.gateway.actor import Actor
from server.gateway.events import allowed_event
from server.gateway.tables import TABLES, SearchToken
from server.vault import DataKey
from server.vault.words import normalize_words

if TYPE_CHECKING:
    from server.gateway.core import GatewayCore

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
        mine = {fold_key(t) for t in own.texts}
        return Identity(
            tuple(t for t in self.texts if fold_key(t) not in mine), self.phones - own.phones
        )


def free_text_fields(rt: RecordType) -> list[Field]:
    """The fields of ``rt`` that may mention anyone: scanned by erasure and exports."""
    return [f for f in rt.fields if f.category is Category.FREE_TEXT and f.encrypted]


def record_types() -> list[tuple[RecordType, type[Table]]]:
    """Every record type of the data map that has a table (generic: new types join in)."""
    return [(RECORD_TYPES[r], t) for r, t in TABLES.items() if r in RECORD_TYPES]


async def identities_of(gw: GatewayCore, subjects: Collection[uuid.UUID]) -> dict[str, Identity]:
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
                    plain = token and gw.decrypt_field(rt, spec, str(row["id"]), keys[sid], token)
                    if not isinstance(plain, str) or not plain.strip():
                        continue
                    if spec.kind is FieldKind.PHONE:
                        phones[sid].add(plain)
                    elif spec.kind is FieldKind.EMAIL:
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


async def identity_of(gw: GatewayCore, subject: uuid.UUID) -> Identity:
    """One person's identity (see :func:`identities_of`)."""
    return (await identities_of(gw, [subject])).get(str(subject), Identity())


async def require(
    gw: GatewayCore, actor: Actor, rt: RecordType, action: str, purpose: str, subject: str
) -> None:
    """Ask the policy whether ``actor`` may take ``action`` on ``rt``; an audited denial
    (``Forbidden``) if not."""
    await gw.authorize(
        actor, rt.resource, action, purpose=purpose, subject_ids=(subject,) if subject else ()
    )


def national_digits(e164: str) -> str:
    """The national significant number of ``e164`` ("" if it is not one): the digits every
    notation of the number holds in a row, what a text must hold to mention it."""
    try:
        return phonenumbers.national_significant_number(phonenumbers.parse(e164))
    except phonenumbers.NumberParseException:
        return ""


_PHONE_SEPARATORS = r"[\s.\-/()]*"
SHORTEST_NATIONAL = 6  # fewer digits would turn up in order numbers and dates


def _phone_pattern(e164: str) -> str:
    """The digits of one number as people write them where ``phonenumbers``' matcher
    does not look: glued to a word ("Mob07911..."), without the trunk prefix
    ("7911 123456"), or in the notation of the number's own country ("1-202-555-0143",
    "(202) 555-0143" in a British installation). Any separators between the digits, an
    optional international or national prefix before them, never inside a longer number."""
    try:
        number = phonenumbers.parse(e164)
    except phonenumbers.NumberParseException:
        return ""
    national = phonenumbers.national_significant_number(number)
    if len(national) < SHORTEST_NATIONAL:
        return ""
    sep = _PHONE_SEPARATORS
    country = sep.join(str(number.country_code))
    prefixes = [rf"(?:(?:\+|00|011){sep})?{country}{sep}(?:\(0\){sep})?"]
    region = phonenumbers.region_code_for_number(number)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region) if region else None
    if metadata is not None and metadata.national_prefix:
        prefixes.append(sep.join(metadata.national_prefix) + sep)
    return rf"(?<!\d)\(?(?:{'|'.join(prefixes)})?{sep.join(national)}(?!\d)"


# Between the words of a name, any spacing or dash: "Smith-Jones" is also written
# "Smith Jones" or with an en dash.
_NAME_PARTS = re.compile(r"[\s\-\u2010-\u2015]+")
_NAME_GAP = r"[\s\-\u2010-\u2015]+"


# Typographic apostrophes (U+2019 and the like) stand for the ASCII one in names.
_APOSTROPHES = str.maketrans(dict.fromkeys("\u2019\u02bc\u2018`\u00b4", "'"))


def _fold_char(char: str) -> str:
    decomposed = unicodedata.normalize("NFKD", char.translate(_APOSTROPHES))
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


class _FoldTable(dict[int, str]):
    """``str.translate`` table folding one character at a time, filled as characters are
    met: the folding of a whole text runs in C, not character by character in Python."""

    def __missing__(self, code: int) -> str:
        folded = self[code] = _fold_char(chr(code))
        return folded


_FOLD = _FoldTable()


def folded(text: str) -> str:
    """``text`` as names are compared: case folded, accents dropped ("José Núñez" is
    "jose nunez", as staff often type it), apostrophes unified."""
    return text.translate(_FOLD)


def origins(text: str) -> list[int]:
    """For each character of ``folded(text)`` the index of the character of ``text`` it
    came from, plus ``len(text)``: a match in the folded text is a span of the original."""
    if text.isascii():
        return list(range(len(text) + 1))
    origin: list[int] = []
    for i, char in enumerate(text):
        origin.extend([i] * len(_FOLD[ord(char)]))
    origin.append(len(text))
    return origin


def fold_key(text: str) -> str:
    """One name or address as a lookup key: folded, spacing and dashes between its words
    unified ("Smith-Jones" is "smith jones")."""
    return " ".join(word for word in _NAME_PARTS.split(folded(text)) if word)


# A name is whole words; an e-mail address a whole address: smith@acme.example is
# neither in john.smith@acme.example nor in smith@acme.example.org.
_WORDS = r"(?<!\w)(?:{})(?!\w)"
_ADDRESS = r"(?<![\w.+'%-])(?:{})(?!\.?[\w-])"
# Every pattern above starts where a word starts and its first run of word characters
# ends where a word ends: that run is a whole word of any text it matches in.
_FIRST_WORD = re.compile(r"\w+")
_REGEXES_KEPT = 4096


def _add(found: list[Span], span: Span) -> None:
    start, end = span
    if not any(s < end and start < e for s, e in found):
        found.append(span)


class Matcher:
    """Finds the spans of any of several identities in a text: the single rule behind
    erasure's scrub, export excerpts and export redaction."""

    def __init__(self, identities: Iterable[Identity], region: str) -> None:
        texts: set[str] = set()
        phones: set[str] = set()
        for identity in identities:
            texts.update(identity.texts)
            phones.update(identity.phones)
        folded = {fold_key(text) for text in texts} - {""}
        ordered = sorted(folded, key=len, reverse=True)
        patterns = [
            (_ADDRESS if "@" in text else _WORDS).format(
                _NAME_GAP.join(re.escape(word) for word in text.split())
            )
            for text in ordered
        ]
        # Matched in the folded text (see :func:`folded`): case and accents do not matter.
        # One alternation of every pattern is tried at every position of every text, which
        # costs milliseconds a text once an export withholds a thousand people; a pattern
        # can only match where its first word is a whole word of the text, so each text
        # gets the alternation of just those patterns, in the same order (same matches).
        self._patterns = tuple(patterns)
        self._by_first_word: dict[str, list[int]] = {}
        self._always: tuple[int, ...] = ()
        for i, text in enumerate(ordered):
            first = _FIRST_WORD.match(text)
            if first is None:  # starts with a non-word character: no word to look for
                self._always += (i,)
            else:
                self._by_first_word.setdefault(first.group(0), []).append(i)
        self._regexes: dict[tuple[int, ...], re.Pattern[str]] = {}
        self._phones = frozenset(phones)
        self._region = region
        # The national numbers' digits: a text whose digits hold none of them cannot
        # mention the phones, and the full matcher (slow) is not run on it.
        self._national = tuple(
            sorted({national_digits(e164) for e164 in self._phones} - {""}, key=len)
        )
        digits = sorted({_phone_pattern(e164) for e164 in self._phones} - {""})
        self._digits = re.compile("|".join(digits)) if digits else None

    @property
    def empty(self) -> bool:
        return not self._patterns and not self._phones

    def _regex_for(self, folded_text: str) -> re.Pattern[str] | None:
        """The alternation of the patterns whose first word ``folded_text`` holds."""
        chosen = set(self._always)
        for word in _FIRST_WORD.findall(folded_text):
            chosen.update(self._by_first_word.get(word, ()))
        if not chosen:
            return None
        key = tuple(sorted(chosen))  # the patterns' own order: longest first
        regex = self._regexes.get(key)
        if regex is None:
            if len(self._regexes) >= _REGEXES_KEPT:
                self._regexes.clear()  # bounded: one scan's texts rarely share many sets
            regex = self._regexes[key] = re.compile("|".join(self._patterns[i] for i in key))
        return regex

    def spans(self, text: str) -> list[Span]:
        """Where the identities are mentioned, in order, never overlapping."""
        found: list[Span] = []
        folded_text = folded(text)
        regex = self._regex_for(folded_text) if self._patterns else None
        matches = list(regex.finditer(folded_text)) if regex else []
        if matches:  # rare: the character map is only worked out for a text that has one
            origin = origins(text)
            found = [(origin[m.start()], origin[m.end()]) for m in matches]
        if self._phones and self._may_hold_phone(text):
            for match in phonenumbers.PhoneNumberMatcher(text, self._region):
                e164 = phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
                if e164 in self._phones:
                    _add(found, (match.start, match.end))
            for digits in self._digits.finditer(text) if self._digits else ():
                _add(found, digits.span())
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


@dataclass
class ScanStats:
    """What one scan read: the records decrypted, and whether the mention index chose
    them (``False``: every other person's free text was read)."""

    rows: int = 0
    indexed: bool = False


async def scan(
    gw: GatewayCore,
    subject: uuid.UUID,
    matcher: Matcher,
    *,
    batch_size: int = 500,
    within: Mapping[str, Collection[uuid.UUID]] | None = None,
    stats: ScanStats | None = None,
) -> AsyncIterator[_Found]:
    """Every record of somebody else whose free text ``matcher`` finds something in: the
    one scan erasure and exports share. ``within``: only these record ids per type (the
    candidates of :func:`server.gateway.mention_index.candidates`); ``None``: every
    record. Keyset paging by id, ``batch_size`` rows at a time, so memory stays flat on a
    big database. The caller decided it may (erasure: ``erase``; an export: ``export``)
    and audits what it does with the result."""
    if matcher.empty:
        return
    if stats is not None:
        stats.indexed = within is not None
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
        chosen = None if within is None else sorted(within.get(rt.resource, ()))
        if chosen is not None and not chosen:
            continue
        last: Any = None
        offset = 0
        while True:
            query = table.select(*columns).where((subject_column != subject) & has_text)
            if chosen is not None:
                if offset >= len(chosen):
                    break
                query = query.where(pk.is_in(chosen[offset : offset + batch_size]))
                offset += batch_size
            elif last is not None:
                query = query.where(pk > last)
            rows = await query.order_by(pk).limit(batch_size)
            if not rows:
                if chosen is not None:
                    continue
                break
            last = rows[-1]["id"]
            if stats is not None:
                stats.rows += len(rows)
            keys = await gw.vault.keys_for(str(r["subject_id"]) for r in rows)
            for row in rows:
                key = keys.get(str(row["subject_id"]))
                if key is None:
                    continue  # that person is erased too: nothing readable is left
                texts: dict[str, tuple[str, tuple[Span, ...]]] = {}
                for spec in free:
                    token = row.get(spec.name)
                    plain = token and gw.decrypt_field(rt, spec, str(row["id"]), key, token)
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


_DIGIT_RUN = re.compile(r"\+?\d[\d\s.\-/()]{4,}\d")
_ANY_DIGIT = re.compile(r"\d")  # Unicode digits too, as phonenumbers reads them


def _phones_in(text: str, region: str) -> set[str]:
    """The valid numbers (E.164) ``text`` may hold: what ``phonenumbers``' matcher finds,
    and each run of digits read as a number of the installation's region or, if it starts
    with one, of the country whose code it starts with ("1-202-555-0143")."""
    if not _ANY_DIGIT.search(text):
        return set()  # most notes: the matcher costs ~80 µs a text to find nothing
    found = {
        phonenumbers.format_number(match.number, phonenumbers.PhoneNumberFormat.E164)
        for match in phonenumbers.PhoneNumberMatcher(text, region)
    }
    for run in _DIGIT_RUN.finditer(text):
        raw = run.group(0)
        digits = phonenumbers.normalize_digits_only(raw)
        for attempt in {raw, "+" + digits}:
            try:
                number = phonenumbers.parse(attempt, region)
            except phonenumbers.NumberParseException:
                continue
            if phonenumbers.is_valid_number(number):
                found.add(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
    return found


async def candidates_in(gw: GatewayCore, texts: Iterable[str]) -> set[uuid.UUID]:
    """People who may be named in ``texts``: a word that starts one of their indexed names
    or, if shorter than a prefix, is one (the name-search tokens), or an e-mail address or
    phone number their records hold (the blind indexes). Tokens are truncated, so most
    candidates are false: the caller decrypts them and keeps only real matches."""
    words: set[str] = set()
    emails: set[str] = set()
    phones: set[str] = set()
    for text in texts:
        # Short words too: "Li Wu" has no prefix token, only whole-word ones, and a full
        # name of short words is still what erasing them would scrub.
        words.update(normalize_words(text))
        emails.update(m.group(0) for m in _EMAIL.finditer(text))
        phones |= _phones_in(text, gw.default_region)
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
                emails
                if spec.kind is FieldKind.EMAIL
                else phones
                if spec.kind is FieldKind.PHONE
                else ()
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
    gw: GatewayCore, subject: uuid.UUID, texts: Sequence[str], *, also: Collection[str] = ()
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
    numbers: dict[str, set[str]] = {}  # national digits -> people (any notation has them)
    for sid, identity in found.items():
        for key in identity.texts:
            owners.setdefault(fold_key(key), set()).add(sid)
        for e164 in identity.phones:
            numbers.setdefault(national_digits(e164) or e164, set()).add(sid)
    probe = Matcher(found.values(), gw.default_region)
    named = {sid for sid in found if sid in also}
    for text in texts:
        for start, end in probe.spans(text):
            hit = text[start:end]
            named |= owners.get(fold_key(hit), set())
            digits = phonenumbers.normalize_digits_only(hit)
            for national, sids in numbers.items() if digits else ():
                if national in digits:
                    named |= sids
    return Matcher((found[sid] for sid in named), gw.default_region), tuple(sorted(named))


_UUID = re.compile(
    r"(?<![0-9a-f-])[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}(?![0-9a-f-])", re.IGNORECASE
)


async def foreign_ids(subject: uuid.UUID, texts: Iterable[str]) -> dict[str, str]:
    """The ids in ``texts`` (a link staff pasted into a note) that are another person's
    subject id or the id of a record about another person: id -> that person."""
    wanted = sorted({uuid.UUID(m.group(0)) for text in texts for m in _UUID.finditer(text)})
    owners: dict[str, str] = {}
    for start in range(0, len(wanted), _CANDIDATE_BATCH):
        batch = wanted[start : start + _CANDIDATE_BATCH]
        for _, table in record_types():
            pk, owner = table._meta.primary_key, getattr(table, "subject_id")
            for row in await table.select(pk, owner).where(pk.is_in(batch)):
                owners[str(row["id"])] = str(row["subject_id"])
            for row in await table.select(owner).where(owner.is_in(batch)).distinct():
                owners[str(row["subject_id"])] = str(row["subject_id"])
    return {found: owner for found, owner in owners.items() if owner != str(subject)}


async def redact_others(
    gw: GatewayCore,
    actor: Actor,
    subject: uuid.UUID,
    texts: Sequence[str],
    *,
    purpose: str,
    also: Collection[str] = (),
    marker: str = ANOTHER_PERSON,
) -> list[tuple[str, int]]:
    """Each of ``texts`` with every other known person withheld: the spans that erasing
    them would scrub, and their subject and record ids (:func:`foreign_ids`), become
    ``marker`` (with how many there were). ``also`` names people
    to withhold even where no token finds them (the person a mentioning record is about).
    Needs ``export`` on the record types people are their own subject of; one audited
    ``withhold_third_party`` event with the people withheld and their count."""
    for rt, _ in _person_types():
        await require(gw, actor, rt, "export", purpose, str(subject))
    matcher, named = await others_matcher(gw, subject, texts, also=also)
    ids = await foreign_ids(subject, texts)
    named = tuple(sorted({*named, *ids.values()}))

    def withhold(text: str) -> tuple[str, int]:
        count = 0

        def replace_id(found: re.Match[str]) -> str:
            nonlocal count
            if found.group(0).lower() not in ids:
                return found.group(0)
            count += 1
            return marker

        # Ids first: a name may look like one of their groups ("-abba-").
        text = _UUID.sub(replace_id, text) if ids else text
        text, spans = matcher.replace(text, marker)
        return text, count + spans

    redacted = [withhold(text) for text in texts]
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


def contact_details_in(text: str, region: str) -> tuple[str, ...]:
    """What kinds of contact detail ``text`` holds ("e-mail address", "phone number"),
    by the same patterns erasure and exports look for people with; never the values.
    How content that must name nobody (knowledge-base articles) is checked on save."""
    found: list[str] = []
    if _EMAIL.search(text):
        found.append("e-mail address")
    if _phones_in(text, region):
        found.append("phone number")
    return tuple(found)
