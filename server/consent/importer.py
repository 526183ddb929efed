"""Consent evidence from a CSV file: who agreed to what, when, how, under which notice.

Consent without proof is no consent (Art. 7(1)): a row is granted only when it carries its
evidence (``consented_at``, ``source``, ``notice_version``); anything less is reported and
recorded as nothing. People are found by exact e-mail or phone through the gateway's
``locate`` (ids only, audited), and every grant goes through :class:`ConsentEngine`, so an
imported consent is the same ledger event, state row and audit event as any other.

Re-running a file records nothing new. A row is *already recorded* when the ledger holds
a grant for the same person, purpose and channel whose evidence names the same
``import_batch`` (by default the file's sha256), or the same ``reference`` with the same
notice version. This holds even after the person withdrew: re-importing an old file must
never bring a withdrawn consent back. For the same reason a row is rejected when a
withdrawal recorded since its ``consented_at``, or an objection, covers it: old evidence
cannot overrule a newer "no".

Nothing here repeats a personal value: a rejected row is reported by its line number and a
fixed reason ("no contact with this e-mail"), never by the address. :func:`import_consent`
takes rows as mappings so the contact importer can pass its own rows' consent columns.
"""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
import re
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from server.consent.model import (
    ANY_CHANNEL,
    DIRECT_MARKETING,
    PROFILING,
    ConsentError,
    ConsentEventKind,
    PurposeInfo,
    Source,
)
from server.consent.service import ConsentEngine
from server.consent.tables import ConsentEvent
from server.gateway import Actor, Gateway, InvalidInput

IMPORT_ACTOR = Actor.system("consent-import")
# Finding the person a consent is about, to keep the proof of it (Art. 7(1)), is
# accountability: the ``compliance`` purpose, not a marketing one.
LOOKUP_PURPOSE = "compliance"
LOOKUP_COLUMNS = ("email", "phone")
EVIDENCE_COLUMNS = ("consented_at", "source", "notice_version")
REQUIRED_COLUMNS = ("purpose", *EVIDENCE_COLUMNS)
OPTIONAL_COLUMNS = ("channel", "reference")
_CODE = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")  # what the engine accepts as a reference
# Consent from these sources is recorded by the engine's own flows (links, portal, expiry),
# never claimed by a file.
_NOT_IMPORTABLE = frozenset({Source.SYSTEM, Source.EMAIL_LINK, Source.PREFERENCE_CENTER})
IMPORTABLE_SOURCES = tuple(s.value for s in Source if s not in _NOT_IMPORTABLE)


class ImportRefused(Exception):
    """The file as a whole cannot be imported (unreadable, no usable header, bad batch id).
    The message names the problem and is safe to print."""


class HasServices(Protocol):
    """What the importer needs of :class:`server.services.Services`."""

    @property
    def gateway(self) -> Gateway: ...

    @property
    def consent(self) -> ConsentEngine: ...


class CsvRow(dict[str, str]):
    """One CSV record and the line it starts on (the header is line 1)."""

    line: int

    def __init__(self, values: Mapping[str, str], line: int) -> None:
        super().__init__(values)
        self.line = line


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do)."""

    batch: str
    dry_run: bool
    rows: int = 0
    granted: int = 0
    already_recorded: int = 0
    rejected: list[Rejected] = field(default_factory=list)

    def summary(self) -> str:
        verb = "would be granted" if self.dry_run else "granted"
        return (
            f"{self.granted} {verb}, {self.already_recorded} already recorded, "
            f"{len(self.rejected)} rejected"
        )


class _RowRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def batch_id(content: bytes) -> str:
    """The default batch id: the file's sha256, so the same file is recognised again."""
    return hashlib.sha256(content).hexdigest()


def check_header(columns: Iterable[str]) -> None:
    """Refuse a header that cannot carry consent evidence, naming what is missing."""
    present = set(columns)
    missing = [c for c in REQUIRED_COLUMNS if c not in present]
    if not present & set(LOOKUP_COLUMNS):
        missing.insert(0, "email or phone")
    if missing:
        raise ImportRefused("missing required column(s): " + ", ".join(missing))


def read_csv(content: bytes) -> list[CsvRow]:
    """Parse a UTF-8 CSV file (a byte-order mark is accepted) into rows with line numbers.

    Header names are compared without case or surrounding spaces. A record with more
    values than the header has columns keeps an ``__extra__`` marker so it is rejected
    rather than silently misread.
    """
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRefused("the file is not UTF-8 text") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None or not any(name.strip() for name in header):
            raise ImportRefused("the file is empty: the first line must name the columns")
        names = [name.strip().lower() for name in header]
        check_header(names)
        rows: list[CsvRow] = []
        last_line = reader.line_num
        for values in reader:
            start, last_line = last_line + 1, reader.line_num
            if not values or not any(v.strip() for v in values):
                continue  # blank lines separate nothing
            row = dict(zip(names, values, strict=False))
            if len(values) > len(names):
                row["__extra__"] = "1"
            rows.append(CsvRow(row, start))
    except csv.Error as exc:
        raise ImportRefused(f"not a readable CSV file (line {reader.line_num}: {exc})") from None
    return rows


def _lines(rows: Iterable[Mapping[str, str]]) -> Iterator[tuple[int, Mapping[str, str]]]:
    for index, row in enumerate(rows):
        yield (row.line if isinstance(row, CsvRow) else index + 2), row


def _consented_at(raw: str, now: dt.datetime) -> tuple[dt.datetime, str]:
    """(the earliest moment the value can mean, the text kept as evidence).

    A date means that whole day (its start is used to compare with withdrawals, so a
    withdrawal the same day wins); a time without an offset is taken as UTC.
    """
    try:
        if len(raw) == 10:
            day = dt.date.fromisoformat(raw)
            moment = dt.datetime.combine(day, dt.time(), dt.UTC)
            text = day.isoformat()
        else:
            moment = dt.datetime.fromisoformat(raw)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=dt.UTC)
            text = moment.isoformat()
    except ValueError:
        raise _RowRefused("consented_at is not an ISO date or date-time") from None
    if moment > now:
        raise _RowRefused("consented_at is in the future")
    return moment, text


class _Import:
    """One run: caches of purposes, notices and located contacts, and the report."""

    def __init__(self, services: HasServices, *, dry_run: bool, batch: str) -> None:
        self.gateway = services.gateway
        self.consent = services.consent
        self.dry_run = dry_run
        self.batch = batch
        self.report = ImportReport(batch=batch, dry_run=dry_run)
        self.purposes: dict[str, PurposeInfo] = {}
        self.notices: dict[int, bool] = {}
        # A file often names one person on several rows: one audited lookup per value.
        self.located: dict[tuple[str, str], list[str]] = {}
        self.planned: set[tuple[str, str, str]] = set()  # dry run: grants it would make
        self.now = dt.datetime.now(dt.UTC)

    async def load(self) -> None:
        self.purposes = {p.name: p for p in await self.consent.purposes()}

    async def row(self, row: Mapping[str, str]) -> None:
        if row.get("__extra__"):
            raise _RowRefused("more values than the header has columns")
        value = {k: (v or "").strip() for k, v in row.items() if k is not None}
        missing = [c for c in EVIDENCE_COLUMNS if not value.get(c)]
        if missing:
            raise _RowRefused("no consent evidence: missing " + ", ".join(missing))
        info = self._purpose(value.get("purpose", ""))
        try:
            channel = info.channel_for(value.get("channel") or None)
        except ConsentError as exc:
            raise _RowRefused(exc.message) from None
        moment, consented_at = _consented_at(value["consented_at"], self.now)
        if value["source"] not in IMPORTABLE_SOURCES:
            raise _RowRefused("source must be one of: " + ", ".join(IMPORTABLE_SOURCES))
        source = Source(value["source"])
        notice_version = await self._notice(value["notice_version"])
        reference = value.get("reference", "")
        if reference and not _CODE.fullmatch(reference):
            raise _RowRefused("reference must be 1-100 letters, digits or _ . : -")
        subject = await self._subject(value)
        if await self._already_recorded(subject, info.name, channel, notice_version, reference):
            self.report.already_recorded += 1
            return
        await self._refuse_if_overruled(subject, info, channel, moment)
        if self.dry_run:
            self.planned.add((subject, info.name, channel))
            self.report.granted += 1
            return
        evidence = {"import_batch": self.batch, "requested_at": consented_at}
        if reference:
            evidence["reference"] = reference
        try:
            await self.consent.grant(
                subject,
                info.name,
                channel,
                source=source.value,
                notice_version=notice_version,
                actor_id=IMPORT_ACTOR.id,
                evidence=evidence,
            )
        except ConsentError as exc:
            raise _RowRefused(exc.message) from None
        self.report.granted += 1

    def _purpose(self, name: str) -> PurposeInfo:
        info = self.purposes.get(name)
        if info is None:
            raise _RowRefused("unknown purpose")
        if not info.needs_consent:
            raise _RowRefused("this purpose does not rest on consent")
        if not info.active:
            raise _RowRefused("this purpose is no longer offered")
        return info

    async def _notice(self, raw: str) -> int:
        try:
            version = int(raw)
        except ValueError:
            raise _RowRefused("notice_version must be a whole number") from None
        if version not in self.notices:
            self.notices[version] = await self.consent.notice(version) is not None
        if not self.notices[version]:
            raise _RowRefused("no privacy notice with this version")
        return version

    async def _subject(self, value: Mapping[str, str]) -> str:
        column = next((c for c in LOOKUP_COLUMNS if value.get(c)), None)
        if column is None:
            raise _RowRefused("no e-mail or phone to find the contact by")
        label = "e-mail" if column == "email" else "phone number"
        key = (column, value[column])
        if key not in self.located:
            try:
                found = await self.gateway.locate(
                    IMPORT_ACTOR, "contact", column, value[column], purpose=LOOKUP_PURPOSE
                )
            except InvalidInput:
                raise _RowRefused(f"not a valid {label}") from None
            self.located[key] = sorted({subject for _, subject in found})
        subjects = self.located[key]
        if not subjects:
            raise _RowRefused(f"no contact with this {label}")
        if len(subjects) > 1:  # whose consent would it be? Merge the records first.
            raise _RowRefused(f"several people have this {label}")
        return subjects[0]

    async def _already_recorded(
        self, subject: str, purpose: str, channel: str, notice_version: int, reference: str
    ) -> bool:
        if (subject, purpose, channel) in self.planned:
            return True
        # A read of the ledger for this one person, as reports.py reads it: the engine
        # stays the only writer.
        rows = await ConsentEvent.select(ConsentEvent.evidence, ConsentEvent.notice_version).where(
            (ConsentEvent.subject_id == uuid.UUID(subject))
            & (ConsentEvent.purpose == purpose)
            & (ConsentEvent.channel == channel)
            & (ConsentEvent.kind == ConsentEventKind.GRANTED.value)
        )
        for row in rows:
            evidence = await self.consent.readable_evidence(
                subject, json.loads(row["evidence"] or "{}")
            )
            if evidence.get("import_batch") == self.batch:
                return True
            if (
                reference
                and evidence.get("reference") == reference
                and row["notice_version"] == notice_version
            ):
                return True
        return False

    async def _refuse_if_overruled(
        self, subject: str, info: PurposeInfo, channel: str, consented: dt.datetime
    ) -> None:
        scopes = {info.name}
        if info.direct_marketing or info.name == PROFILING:
            scopes.add(DIRECT_MARKETING)
        for status in await self.consent.state(subject):
            if status.state is ConsentEventKind.OBJECTED and status.purpose in scopes:
                raise _RowRefused("the person objected to this processing")
            if (
                status.purpose == info.name
                and status.channel in {channel, ANY_CHANNEL}
                and status.state is ConsentEventKind.WITHDRAWN
                and status.since >= consented
            ):
                raise _RowRefused("a withdrawal recorded after consented_at overrules this row")


async def import_consent(
    services: HasServices,
    rows: Iterable[Mapping[str, str]],
    *,
    dry_run: bool,
    batch: str,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Grant the consents ``rows`` prove; report the rest by line and reason.

    Each grant is its own transaction (ledger row, state row, audit event), so an
    interrupted import is finished by running it again. ``dry_run`` checks every row and
    counts what would happen without recording consent; the contact lookups it makes are
    still audited, as every read of customer data is. ``progress(1)`` is called per row.
    """
    if not _CODE.fullmatch(batch):
        raise ImportRefused("the batch id must be 1-100 letters, digits or _ . : -")
    run = _Import(services, dry_run=dry_run, batch=batch)
    await run.load()
    for line, row in _lines(rows):
        run.report.rows += 1
        try:
            await run.row(row)
        except _RowRefused as exc:
            run.report.rejected.append(Rejected(line, exc.reason))
        if progress is not None:
            progress(1)
    return run.report
