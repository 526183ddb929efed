"""Contacts, organizations and leads from a CSV file, in batches through the gateway.

A spreadsheet exported from another CRM has its own column names, so the header is matched
to data-map fields by name or label ignoring case, spaces, ``-`` and ``_`` ("E-mail
address", "First Name", "last_name" all match), and an operator can map the rest
(``E-mail=email``) or drop a column (``Notes=-``). Columns that match nothing are reported
and ignored, as are columns for fields the importing role may not set and reference
columns (record ids of another system mean nothing here).

Each row is checked against the data map before anything is written, and reported by the
line it starts on in the file (the header is line 1) with a reason per field - never the
value, which is someone's personal data. Good rows go to ``Gateway.create_many`` in
batches: one transaction and one audit event per batch, so an interrupted import is
finished by running it again.

Running the same file again creates nothing: every row has a natural key - the e-mail
address (else the phone number) of a contact or lead, the web domain (else the name) of an
organization - and a row whose key a record in the importer's scope already holds is
*skipped (already imported)*; so is a row repeating the key of an earlier line. A contact
or lead row with neither e-mail nor phone is refused: nothing could recognise it on a
second run.
"""

from __future__ import annotations

import csv
import inspect
import io
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from server.csvio.mapping import known_names, squash
from server.datamap import (
    RECORD_TYPES,
    FieldKind,
    InvalidValues,
    RecordType,
    clean_values,
    natural_keys,
)
from server.gateway import Actor, Gateway
from server.money import AmountError, parse_major

IMPORTABLE = ("contact", "organization", "lead")
# The natural key of each type, in order of preference: the first one a row has is used
# (declared on the fields in the data map: Field.natural_key).
NATURAL_KEYS: Mapping[str, tuple[str, ...]] = {
    resource: natural_keys(RECORD_TYPES[resource]) for resource in IMPORTABLE
}
PURPOSE = "customer_relationship"
BATCH_SIZE = 500
IGNORE = "-"  # ``--map "Column=-"`` drops a column
ALREADY_IMPORTED = "skipped (already imported)"
# What an export neutralised against spreadsheet formulas (server.csvio.exporter); undone
# on the way back in, so an exported file imports as it was.
_NEUTRALISED = re.compile(r"^'(?=[=+\-@\t\r])")


class ImportRefused(Exception):
    """The file as a whole cannot be imported (not CSV, no header, no usable columns).
    The message names the problem, never a value, and is safe to print. ``hint`` says
    what to do about it on the command line (the admin's mapping screen has its own)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Problem:
    line: int
    field: str  # a field name, or "" for the row as a whole
    reason: str


@dataclass(frozen=True)
class ColumnPlan:
    """How the header was understood: column position -> field, and what was left out."""

    fields: dict[int, str]
    ignored: dict[str, str]  # header name -> why it is not imported


@dataclass(frozen=True)
class SourceRow:
    line: int
    values: dict[str, str]  # field name -> raw text
    extra: bool = False  # more values than the header has columns


def summary_line(rows: int, created: int, skipped: int, bad: int, *, dry_run: bool) -> str:
    """The one-line result of an import, as the CLI prints it and the admin shows it."""
    verb = "would be created" if dry_run else "created"
    return f"{rows} rows: {created} {verb}, {skipped} skipped, {bad} bad"


@dataclass
class ImportReport:
    """What an import did (or, in a dry run, would do). Counts, lines, field names and
    reasons only."""

    resource: str
    dry_run: bool
    rows: int = 0
    created: int = 0
    skipped: list[Problem] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    ignored_columns: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def bad_lines(self) -> list[int]:
        return sorted({p.line for p in self.problems})

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        return summary_line(
            self.rows, self.created, len(self.skipped), len(self.bad_lines), dry_run=self.dry_run
        )

    def rate(self) -> str:
        per_second = self.rows / self.seconds if self.seconds > 0 else float(self.rows)
        return f"{per_second:,.0f} rows/s"

    def report_rows(self) -> list[tuple[int, str, str]]:
        """(line, field, reason) of every bad and skipped row, in file order."""
        entries = [(p.line, p.field, p.reason) for p in (*self.problems, *self.skipped)]
        return sorted(entries, key=lambda e: (e[0], e[1]))


def record_type(resource: str) -> RecordType:
    if resource not in IMPORTABLE:
        raise ImportRefused(
            f"cannot import {resource!r}: importable types are " + ", ".join(IMPORTABLE)
        )
    return RECORD_TYPES[resource]


def parse_mapping(items: Iterable[str], rt: RecordType) -> dict[str, str]:
    """``["E-mail=email", "Notes=-"]`` -> {squashed header: field name or "-"}."""
    mapping: dict[str, str] = {}
    for item in items:
        column, sep, target = item.partition("=")
        column, target = column.strip(), target.strip()
        if not sep or not column or not target:
            raise ImportRefused(f"--map {item!r}: expected COLUMN=FIELD (or COLUMN=- to skip)")
        if target != IGNORE and target not in rt.by_name:
            raise ImportRefused(
                f"--map {column}: {rt.resource} has no field {target!r}; fields: "
                + ", ".join(f.name for f in rt.fields)
            )
        mapping[squash(column)] = target
    return mapping


def plan_columns(
    rt: RecordType,
    header: Sequence[str],
    mapping: Mapping[str, str],
    settable: frozenset[str],
) -> ColumnPlan:
    """Match header names to fields; refuse a header two columns of which name one field,
    or that lacks a required field."""
    known = known_names(rt)
    fields: dict[int, str] = {}
    ignored: dict[str, str] = {}
    taken: dict[str, str] = {}
    for position, raw in enumerate(header):
        name = raw.strip()
        squashed = squash(name)
        if not squashed:
            continue
        target = mapping.get(squashed, known.get(squashed))
        if target == IGNORE:
            ignored[name] = "skipped: mapped to nothing"
            continue
        if target is None:
            ignored[name] = "unknown column"
            continue
        spec = rt.by_name[target]
        if spec.kind is FieldKind.REFERENCE:
            ignored[name] = "references to other records are not imported"
            continue
        if target not in settable:
            ignored[name] = "your role may not set this field"
            continue
        if target in taken:
            raise ImportRefused(
                f"columns {taken[target]!r} and {name!r} both map to {target}",
                hint="use --map to choose one",
            )
        taken[target] = name
        fields[position] = target
    missing = [
        f.name for f in rt.fields if f.required and f.default is None and f.name not in taken
    ]
    if missing:
        raise ImportRefused(
            f"no column for required {rt.resource} field(s): " + ", ".join(missing),
            hint="(name the column after the field, or use --map COLUMN=FIELD)",
        )
    return ColumnPlan(fields, ignored)


def _decode(content: bytes) -> tuple[str, str]:
    """The text of a UTF-8 CSV file and its separator (``,`` ``;`` or tab)."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ImportRefused("the file is not UTF-8 text") from None
    if "\x00" in text:
        raise ImportRefused("not a CSV file (it contains binary data)")
    first = text.split("\n", 1)[0]
    return text, max((",", ";", "\t"), key=first.count)


def peek(content: bytes, rows: int = 5) -> tuple[list[str], list[list[str]]]:
    """The header and the first ``rows`` rows, for the mapping screen's preview."""
    text, delimiter = _decode(content)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None or not any(name.strip() for name in header):
            raise ImportRefused("the file is empty: the first line must name the columns")
        sample: list[list[str]] = []
        for values in reader:
            if len(sample) >= rows:
                break
            if any(v.strip() for v in values):
                sample.append([_NEUTRALISED.sub("", v) for v in values])
    except csv.Error as exc:
        raise ImportRefused(f"not a readable CSV file (line {reader.line_num}: {exc})") from None
    return [name.strip() for name in header], sample


def read_rows(
    content: bytes,
    rt: RecordType,
    mapping: Mapping[str, str],
    settable: frozenset[str],
) -> tuple[ColumnPlan, list[SourceRow]]:
    """Parse a UTF-8 CSV file (a byte-order mark is accepted; ``,`` ``;`` or tab
    separated) into rows of field -> text, with the line each row starts on."""
    text, delimiter = _decode(content)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    rows: list[SourceRow] = []
    try:
        header = next(reader, None)
        if header is None or not any(name.strip() for name in header):
            raise ImportRefused("the file is empty: the first line must name the columns")
        plan = plan_columns(rt, header, mapping, settable)
        last_line = reader.line_num
        for values in reader:
            start, last_line = last_line + 1, reader.line_num
            if not values or not any(v.strip() for v in values):
                continue  # blank lines separate nothing
            row = {
                name: _NEUTRALISED.sub("", values[position])
                for position, name in plan.fields.items()
                if position < len(values)
            }
            rows.append(SourceRow(start, row, extra=len(values) > len(header)))
    except csv.Error as exc:
        raise ImportRefused(f"not a readable CSV file (line {reader.line_num}: {exc})") from None
    return plan, rows


def _typed(rt: RecordType, raw: Mapping[str, str]) -> tuple[dict[str, Any], dict[str, str]]:
    """Text cells as the data map expects them: empty cells left out, whole numbers as
    ints, amounts of money in major units ("12500.00" EUR) as minor units. Returns
    (values, problems)."""
    values: dict[str, Any] = {}
    problems: dict[str, str] = {}
    for name, text in raw.items():
        text = text.strip()
        if not text:
            continue
        source = rt.by_name[name].currency_from
        if source:  # money in major units of the row's currency, as exports write it
            try:
                values[name] = parse_major(text, (raw.get(source) or "").strip() or None)
            except AmountError as exc:
                problems[name] = str(exc)
            continue
        if rt.by_name[name].kind is FieldKind.INTEGER:
            try:
                values[name] = int(text.replace(" ", "").replace(",", ""))
            except ValueError:
                problems[name] = "expected a whole number"
            continue
        values[name] = text
    return values, problems


def _natural_key(resource: str, cleaned: Mapping[str, Any]) -> tuple[str, str] | None:
    for name in NATURAL_KEYS[resource]:
        value = cleaned.get(name)
        if value:
            return name, str(value).casefold() if name == "domain" else str(value)
    return None


@dataclass
class _Pending:
    line: int
    values: dict[str, Any]
    key: tuple[str, str]


class _Import:
    def __init__(
        self,
        gateway: Gateway,
        actor: Actor,
        rt: RecordType,
        *,
        dry_run: bool,
        owner_id: int | None,
        team: str | None,
        default_source: bool,
    ) -> None:
        self.gateway = gateway
        self.actor = actor
        self.rt = rt
        self.dry_run = dry_run
        self.owner_id = owner_id
        self.team = team
        self.default_source = default_source
        self.report = ImportReport(resource=rt.resource, dry_run=dry_run)
        self.seen: dict[tuple[str, str], int] = {}  # natural key -> first line in the file

    def check(self, row: SourceRow) -> _Pending | None:
        """Validate one row as the gateway will; report it and return None if it is bad."""
        if row.extra:
            self.report.problems.append(
                Problem(row.line, "", "more values than the header has columns")
            )
            return None
        values, problems = _typed(self.rt, row.values)
        if self.default_source and "source" not in values:
            values["source"] = "import"
        try:
            cleaned = clean_values(
                self.rt, values, partial=False, default_region=self.gateway.default_region
            )
        except InvalidValues as exc:
            problems.update(exc.problems)
            cleaned = {}
        if problems:
            for name, reason in sorted(problems.items()):
                self.report.problems.append(Problem(row.line, name, reason))
            return None
        key = _natural_key(self.rt.resource, cleaned)
        if key is None:
            first = NATURAL_KEYS[self.rt.resource]
            self.report.problems.append(
                Problem(
                    row.line,
                    first[0],
                    f"needed (or {first[1]}) to recognise the row if the file is imported again",
                )
            )
            return None
        if key in self.seen:
            self.report.skipped.append(
                Problem(row.line, key[0], f"skipped (same {key[0]} as line {self.seen[key]})")
            )
            return None
        self.seen[key] = row.line
        if key[0] == "domain":
            values["domain"] = key[1]
        return _Pending(row.line, values, key)

    async def flush(self, batch: list[_Pending]) -> None:
        if not batch:
            return
        existing: set[tuple[str, str]] = set()
        for name in NATURAL_KEYS[self.rt.resource]:
            wanted = [p.key[1] for p in batch if p.key[0] == name]
            if wanted:
                found = await self.gateway.existing_values(
                    self.actor, self.rt.resource, name, wanted, purpose=PURPOSE
                )
                existing |= {(name, value) for value in found}
        fresh: list[_Pending] = []
        for pending in batch:
            if pending.key in existing:
                self.report.skipped.append(Problem(pending.line, pending.key[0], ALREADY_IMPORTED))
            else:
                fresh.append(pending)
        if self.dry_run:
            self.report.created += len(fresh)
            return
        result = await self.gateway.create_many(
            self.actor,
            self.rt.resource,
            [p.values for p in fresh],
            purpose=PURPOSE,
            owner_id=self.owner_id,
            team=self.team,
        )
        self.report.created += len(result.created)
        for index, problems in result.rejected.items():
            for name, reason in sorted(problems.items()):
                self.report.problems.append(Problem(fresh[index].line, name, reason))


async def import_rows(
    gateway: Gateway,
    actor: Actor,
    resource: str,
    plan: ColumnPlan,
    rows: Sequence[SourceRow],
    *,
    dry_run: bool,
    owner_id: int | None = None,
    team: str | None = None,
    progress: Callable[[int], Awaitable[None] | None] | None = None,
    batch_size: int = BATCH_SIZE,
) -> ImportReport:
    """Create the good rows (unless ``dry_run``), skip the ones already on file, report
    the bad ones. ``progress(n)`` is called as rows are done (and awaited if it is a
    coroutine function: the admin's import job writes its progress to the database).

    A dry run writes no record, but its existence checks are audited (``match`` events),
    as every lookup of customer data is.
    """
    rt = record_type(resource)
    settable = gateway.permitted_fields(actor, resource, "create", purpose=PURPOSE) or frozenset()
    started = time.perf_counter()
    run = _Import(
        gateway,
        actor,
        rt,
        dry_run=dry_run,
        owner_id=owner_id,
        team=team,
        default_source="source" in settable and "source" not in plan.fields.values(),
    )
    run.report.ignored_columns = dict(plan.ignored)
    batch: list[_Pending] = []
    done = 0
    for row in rows:
        run.report.rows += 1
        pending = run.check(row)
        if pending is not None:
            batch.append(pending)
        done += 1
        if len(batch) >= batch_size:
            await run.flush(batch)
            batch = []
            await _report_progress(progress, done)
            done = 0
    await run.flush(batch)
    if done:
        await _report_progress(progress, done)
    run.report.problems.sort(key=lambda p: (p.line, p.field))
    run.report.skipped.sort(key=lambda p: p.line)
    run.report.seconds = time.perf_counter() - started
    return run.report


async def _report_progress(
    progress: Callable[[int], Awaitable[None] | None] | None, done: int
) -> None:
    if progress is None:
        return
    pending = progress(done)
    if inspect.isawaitable(pending):
        await pending


def write_report(report: ImportReport, stream: io.TextIOBase | Any) -> None:
    """The per-row report as CSV: line, field, reason (no values)."""
    writer = csv.writer(stream)
    writer.writerow(("line", "field", "reason"))
    writer.writerows(report.report_rows())
