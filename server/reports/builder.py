"""The report builder: a staff-chosen record type, grouping fields, one measure, an optional
time bucket and filters, run through ``Gateway.aggregate``.

The gateway compiles scope, restriction and consent into the SQL and audits the run with
the definition's field names (never values). Only fields stored in clear (the data map's
``aggregatable``) that the role may read under the chosen purpose can be grouped, bucketed,
filtered or measured; anything else is the gateway's audited 403. The result then goes
through small-group suppression (``server.reports.suppression``) before anyone sees it,
and, when the report asks for it, through differential privacy first
(``server.reports.privacy``).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import msgspec

from server.csvio.exporter import neutralise
from server.datamap import RECORD_TYPES, SYSTEM_COLUMNS, FieldKind
from server.gateway import Actor, Forbidden, Gateway, InvalidInput
from server.reports.privacy import DpRelease, PrivacyLedger, noisy_counts, noisy_sums
from server.reports.suppression import Grid, suppress

Measure = Literal["count", "sum", "average", "median"]
Bucket = Literal["day", "week", "month", "quarter"]
MEASURES: tuple[str, ...] = ("count", "sum", "average", "median")
BUCKETS: tuple[str, ...] = ("day", "week", "month", "quarter")
TIME_COLUMNS = ("created_at", "updated_at")  # every table has them, in clear
GROUP_COLUMNS = ("owner_id", "team")  # ownership columns: clear, and scope-compiled
FieldName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[a-z_]+$")]
FilterValue = Annotated[str, msgspec.Meta(max_length=200)]
Filters = Annotated[dict[FieldName, FilterValue], msgspec.Meta(max_length=8)]


class ReportDefinition(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What a report computes. Saved as JSON in ``saved_report.definition``."""

    record_type: FieldName
    group_by: Annotated[list[FieldName], msgspec.Meta(max_length=2)] = msgspec.field(
        default_factory=list
    )
    measure: Measure = "count"
    measure_field: FieldName | None = None
    bucket: Bucket | None = None
    bucket_field: FieldName | None = None
    filters: Filters = msgspec.field(default_factory=dict)
    purpose: FieldName | None = None
    # Differential privacy: the epsilon this release spends (None: exact numbers), and the
    # clamp bound for a sum (each record contributes at most this much, minor units).
    dp_epsilon: Annotated[float, msgspec.Meta(gt=0, le=2)] | None = None
    dp_bound: Annotated[int, msgspec.Meta(ge=1, le=10**12)] = 1_000_000

    @property
    def dimensions(self) -> list[str]:
        return [*self.group_by, *([f"{self.bucket_field} by {self.bucket}"] if self.bucket else [])]


class ReportRow(msgspec.Struct, frozen=True):
    label: str
    cells: list[float | None]  # None: suppressed
    total: float | None


class ReportResult(msgspec.Struct, frozen=True):
    """A report's table after suppression: what the page, the API, the CSV and the e-mail
    show. ``None`` is a suppressed cell."""

    record_type: str
    measure: str
    row_dimension: str
    column_dimension: str | None
    columns: list[str]
    rows: list[ReportRow]
    column_totals: list[float | None]
    grand_total: float | None
    suppressed: int
    min_group_size: int
    dp: DpRelease | None = None


def problem(name: str, reason: str) -> InvalidInput:
    return InvalidInput(f"invalid report: {name}: {reason}", problems={name: reason})


def check_shape(definition: ReportDefinition) -> None:
    """The definition's own consistency (field rights are the gateway's to decide)."""
    rt = RECORD_TYPES.get(definition.record_type)
    if rt is None:
        raise problem("record_type", "not a record type")
    if not definition.group_by and not definition.bucket:
        raise problem("group_by", "choose at least one grouping field or a time bucket")
    if len(definition.dimensions) > 2:
        raise problem("group_by", "at most two dimensions (grouping fields and time bucket)")
    if len(set(definition.group_by)) != len(definition.group_by):
        raise problem("group_by", "a field is named twice")
    if definition.measure != "count":
        spec = rt.by_name.get(definition.measure_field or "")
        if spec is None or not spec.summable:
            raise problem("measure_field", f"{definition.measure} needs a whole-number field")
        currency = spec.currency_from
        if currency and currency not in definition.group_by and currency not in definition.filters:
            raise problem(
                "measure_field",
                f"amounts in different currencies do not add up: group or filter by {currency}",
            )
    if (definition.bucket is None) != (definition.bucket_field is None):
        raise problem("bucket", "a time bucket needs both a unit and a date field")
    if definition.bucket_field and definition.bucket_field not in TIME_COLUMNS:
        spec = rt.by_name.get(definition.bucket_field)
        if spec is None or spec.kind not in (FieldKind.DATE, FieldKind.DATETIME):
            raise problem("bucket_field", "not a date field")
    if definition.dp_epsilon is not None and definition.measure == "median":
        raise problem("dp_epsilon", "differential privacy is offered for counts, sums and averages")


def groupable_fields(
    gateway: Gateway, actor: Actor, record_type: str, purpose: str | None
) -> list[str]:
    """The fields this actor may group on under ``purpose``: stored in clear and readable
    by the role (a policy question; the gateway decides again when the report runs)."""
    rt = RECORD_TYPES[record_type]
    readable = gateway.permitted_fields(actor, record_type, "list", purpose=purpose) or frozenset()
    names = [f.name for f in rt.fields if f.aggregatable and f.name in readable]
    return [*names, *(c for c in GROUP_COLUMNS if c in SYSTEM_COLUMNS)]


def summable_fields(
    gateway: Gateway, actor: Actor, record_type: str, purpose: str | None
) -> list[str]:
    rt = RECORD_TYPES[record_type]
    readable = gateway.permitted_fields(actor, record_type, "list", purpose=purpose) or frozenset()
    return [f.name for f in rt.fields if f.summable and f.name in readable]


def date_fields(gateway: Gateway, actor: Actor, record_type: str, purpose: str | None) -> list[str]:
    rt = RECORD_TYPES[record_type]
    readable = gateway.permitted_fields(actor, record_type, "list", purpose=purpose) or frozenset()
    own = [
        f.name
        for f in rt.fields
        if f.aggregatable and f.kind in (FieldKind.DATE, FieldKind.DATETIME) and f.name in readable
    ]
    return [*own, *TIME_COLUMNS]


def check_rights(gateway: Gateway, actor: Actor, definition: ReportDefinition) -> None:
    """Before saving: every field the definition uses is one this role may aggregate under
    its purpose (the gateway decides again, audited, on every run)."""
    check_shape(definition)
    rt, purpose = definition.record_type, definition.purpose
    if gateway.permitted_fields(actor, rt, "list", purpose=purpose) is None:
        raise Forbidden(f"your role may not list {rt} records")
    usable = {
        *groupable_fields(gateway, actor, rt, purpose),
        *summable_fields(gateway, actor, rt, purpose),
        *date_fields(gateway, actor, rt, purpose),
    }
    used = [
        *definition.group_by,
        *([definition.bucket_field] if definition.bucket_field else []),
        *([definition.measure_field] if definition.measure_field else []),
        *(name.removesuffix("_before") for name in definition.filters),
    ]
    refused = sorted({n for n in used if n not in usable})
    if refused:
        raise Forbidden(
            f"{rt} cannot be aggregated by: {', '.join(refused)} "
            "(encrypted, or not readable by your role under this purpose)"
        )


def bucket_label(value: Any, unit: str) -> str:
    if value is None or value == "":
        return "(none)"
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return str(value)
    day = value.date() if isinstance(value, dt.datetime) else value
    if unit == "day":
        return day.isoformat()
    if unit == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    if unit == "month":
        return f"{day.year}-{day.month:02d}"
    return f"{day.year}-Q{(day.month - 1) // 3 + 1}"


def _label(value: Any) -> str:
    return "(none)" if value is None or value == "" else str(value)


@dataclass
class _Cell:
    count: int = 0
    total: int = 0
    values: dict[int, int] = field(default_factory=dict)  # value -> records (non-null)

    def add(self, other: _Cell) -> None:
        self.count += other.count
        self.total += other.total
        for v, n in other.values.items():
            self.values[v] = self.values.get(v, 0) + n


def _median(values: dict[int, int]) -> float | None:
    n = sum(values.values())
    if n == 0:
        return None
    ordered = sorted(values.items())
    wanted = [(n - 1) // 2, n // 2]
    found: list[int] = []
    seen = 0
    for value, times in ordered:
        while wanted and wanted[0] < seen + times:
            found.append(value)
            wanted.pop(0)
        seen += times
    return (found[0] + found[1]) / 2


def _measure(cell: _Cell, measure: str) -> float:
    if measure == "count":
        return float(cell.count)
    if measure == "sum":
        return float(cell.total)
    if measure == "median":
        return _median(cell.values) or 0.0
    counted = sum(cell.values.values())
    return round(cell.total / counted, 2) if counted else 0.0


class ReportBuilder:
    """Runs definitions for one gateway; DP releases spend from ``ledger``."""

    def __init__(self, gateway: Gateway, ledger: PrivacyLedger, min_group_size: int) -> None:
        self.gateway = gateway
        self.ledger = ledger
        self.min_group_size = min_group_size

    async def run(self, actor: Actor, definition: ReportDefinition) -> ReportResult:
        check_shape(definition)
        by_value = definition.measure in ("average", "median") or (
            definition.dp_epsilon is not None and definition.measure == "sum"
        )
        columns = [
            *definition.group_by,
            *([definition.bucket_field] if definition.bucket_field else []),
            *([definition.measure_field] if by_value and definition.measure_field else []),
        ]
        release: DpRelease | None = None
        if definition.dp_epsilon is not None:
            release = await self.ledger.spend(actor.role, definition.dp_epsilon)
        # People, not records: a cell of many deals of one customer is still one customer.
        # Exact per SQL group; a cell folded from several groups (time buckets) gets the
        # largest of them, a lower bound, so the rule errs towards hiding. A noisy release
        # decides on its noisy counts alone (post-processing keeps the DP guarantee).
        count_people = release is None
        summed = definition.measure == "sum" and not by_value
        groups = await self.gateway.aggregate(
            actor,
            definition.record_type,
            group_by=tuple(dict.fromkeys(columns)),
            sum_of=definition.measure_field if summed else None,
            purpose=definition.purpose,
            filters=definition.filters,
            audit_detail={"dp_epsilon": str(definition.dp_epsilon)} if release else None,
            count_people=count_people and not by_value,
        )
        people: dict[tuple[str, str], int] | None = None
        if count_people:
            people = defaultdict(int)
            people_groups = groups
            if by_value:  # values split the groups: count people over the cells' own groups
                people_groups = await self.gateway.aggregate(
                    actor,
                    definition.record_type,
                    group_by=tuple(dict.fromkeys(columns[: len(columns) - 1])),
                    purpose=definition.purpose,
                    filters=definition.filters,
                    count_people=True,
                )
            for g in people_groups:
                at = self._cell_of(definition, columns, g.key)
                people[at] = max(people[at], g.people or 0)
        names = list(dict.fromkeys(columns))
        # A value-split report has one SQL group per distinct value: its cell depends only
        # on the key's other columns, so label each of those once.
        at_value = (
            names.index(definition.measure_field) if by_value and definition.measure_field else None
        )
        cell_at: dict[tuple[Any, ...], _Cell] = {}
        cells: dict[tuple[str, str], _Cell] = defaultdict(_Cell)
        for g in groups:
            dims = g.key if at_value is None else g.key[:at_value] + g.key[at_value + 1 :]
            cell = cell_at.get(dims)
            if cell is None:
                cell = cell_at[dims] = cells[self._cell_of(definition, columns, g.key)]
            cell.count += g.count
            if definition.measure == "sum" and not by_value:
                cell.total += g.total or 0
            elif at_value is not None:
                value = g.key[at_value]
                if value is not None:
                    number = int(value)
                    cell.values[number] = cell.values.get(number, 0) + g.count
                    cell.total += number * g.count
        return self._table(definition, cells, release, people)

    @staticmethod
    def _cell_of(
        definition: ReportDefinition, columns: list[str], key: tuple[Any, ...]
    ) -> tuple[str, str]:
        """The (row, column) labels of one SQL group (its key follows ``columns``)."""
        values = dict(zip(dict.fromkeys(columns), key, strict=False))
        dims = [_label(values[n]) for n in definition.group_by]
        if definition.bucket and definition.bucket_field:
            dims.append(bucket_label(values[definition.bucket_field], definition.bucket))
        return dims[0], (dims[1] if len(dims) > 1 else "")

    def _table(
        self,
        definition: ReportDefinition,
        cells: dict[tuple[str, str], _Cell],
        release: DpRelease | None,
        people: dict[tuple[str, str], int] | None = None,
    ) -> ReportResult:
        rows = sorted({r for r, _ in cells})
        cols = sorted({c for _, c in cells})
        if release is not None and definition.dp_epsilon is not None:
            cells = self._with_noise(definition, cells, rows, cols)
        grid = Grid(
            rows=tuple(rows),
            columns=tuple(cols),
            counts={(rows.index(r), cols.index(c)): cell.count for (r, c), cell in cells.items()},
        )
        hidden = suppress(grid, self.min_group_size, self._few_people(grid, people))
        placed = [(rows.index(rr), cols.index(cc), cell) for (rr, cc), cell in cells.items()]

        def value(r: int, c: int) -> float | None:
            if (r, c) in hidden:
                return None
            parts = [
                cell for rr, cc, cell in placed if r in (len(rows), rr) and c in (len(cols), cc)
            ]
            if len(parts) == 1:  # one cell: its own figures, nothing to fold
                return _measure(parts[0], definition.measure)
            merged = _Cell()
            for cell in parts:
                merged.add(cell)
            return _measure(merged, definition.measure)

        dims = definition.dimensions
        return ReportResult(
            record_type=definition.record_type,
            measure=definition.measure
            + (f" of {definition.measure_field}" if definition.measure != "count" else ""),
            row_dimension=dims[0],
            column_dimension=dims[1] if len(dims) > 1 else None,
            columns=cols if len(dims) > 1 else [definition.measure],
            rows=[
                ReportRow(
                    label=label,
                    cells=[value(ri, ci) for ci in range(len(cols))],
                    total=value(ri, len(cols)),
                )
                for ri, label in enumerate(rows)
            ],
            column_totals=[value(len(rows), ci) for ci in range(len(cols))],
            grand_total=value(len(rows), len(cols)),
            suppressed=len(hidden),
            min_group_size=self.min_group_size,
            dp=release,
        )

    def _few_people(
        self, grid: Grid, people: dict[tuple[str, str], int] | None
    ) -> set[tuple[int, int]]:
        """Cells and totals about fewer than the minimum of different people (a total is
        about at least as many people as its largest cell)."""
        if people is None:
            return set()
        rows, cols = list(grid.rows), list(grid.columns)
        bound = {(rows.index(r), cols.index(c)): n for (r, c), n in people.items()}
        for r in range(len(rows)):
            bound[(r, len(cols))] = max((bound.get((r, c), 0) for c in range(len(cols))), default=0)
        for c in range(len(cols) + 1):
            bound[(len(rows), c)] = max((bound.get((r, c), 0) for r in range(len(rows))), default=0)
        return {p for p, n in bound.items() if n < self.min_group_size}

    @staticmethod
    def _with_noise(
        definition: ReportDefinition,
        cells: dict[tuple[str, str], _Cell],
        rows: list[str],
        cols: list[str],
    ) -> dict[tuple[str, str], _Cell]:
        """Every cell of the grid (empty ones too, or their absence would tell) released
        with Laplace noise; totals are then sums of noisy cells (post-processing)."""
        epsilon = definition.dp_epsilon or 0.0
        with_sum = definition.measure in ("sum", "average")
        keys = [(r, c) for r in rows for c in cols]
        share = epsilon / 2 if with_sum else epsilon
        counts = noisy_counts([cells[k].count if k in cells else 0 for k in keys], share)
        sums = (
            noisy_sums(
                [
                    sum(
                        min(v, definition.dp_bound) * n for v, n in cells[k].values.items() if v > 0
                    )
                    if k in cells
                    else 0
                    for k in keys
                ],
                definition.dp_bound,
                share,
            )
            if with_sum
            else [0] * len(keys)
        )
        noisy: dict[tuple[str, str], _Cell] = {}
        for k, n, s in zip(keys, counts, sums, strict=True):
            cell = _Cell(count=n, total=s)
            if with_sum and n > 0:
                cell.values = {round(s / n) if n else 0: n}  # average = noisy sum / count
            noisy[k] = cell
        return noisy


def to_csv(result: ReportResult) -> str:
    """The aggregates as CSV (suppressed cells say so), spreadsheet formulas neutralised."""
    out = io.StringIO()
    writer = csv.writer(out)
    header = [result.row_dimension, *result.columns, "Total"]
    writer.writerow([neutralise(h) for h in header])

    def shown(values: Iterable[float | None]) -> list[str]:
        return ["suppressed" if v is None else _number(v) for v in values]

    for row in result.rows:
        writer.writerow([neutralise(row.label), *shown([*row.cells, row.total])])
    writer.writerow(["Total", *shown([*result.column_totals, result.grand_total])])
    return out.getvalue()


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"
