"""What a record list shows besides its own fields: the person and organization by name,
the owner by name, column headings that sort, and a page number that exists.

Names of referenced records are read through the gateway (scoped and audited like every
read), once per distinct record on the page, never more than a page's worth. Sorting is
by plaintext columns only (server.gateway.sorting); headings of other columns do not sort.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from server.auth.directory import ActiveStaff
from server.datamap import RECORD_TYPES, FieldKind, RecordType
from server.gateway import Gateway, GatewayError
from server.gateway import Record as GatewayRecord
from server.gateway.actor import Actor
from server.gateway.sorting import sortable_fields

OWNER = "owner_id"  # a list column that is not a data-map field


@dataclass(frozen=True)
class Cell:
    restricted: bool
    text: str
    link: str = ""
    kind: str = ""  # "amount" or "moment": a CSS class (one line; amounts right-aligned)


@dataclass(frozen=True)
class Column:
    name: str
    label: str
    sort_link: str = ""  # empty: this column does not sort
    sorted: str = ""  # "ascending" / "descending" for aria-sort, "" when not sorted by it
    kind: str = ""  # as the column's cells (Cell.kind)


def last_page(total: int, page_size: int) -> int:
    return max(1, (total + page_size - 1) // page_size)


def clamp_page(page: int, total: int, page_size: int) -> int:
    """Asked for page 50 of 4: page 4."""
    return min(max(page, 1), last_page(total, page_size))


def usable_sort(rt: RecordType, readable: Iterable[str], sort: str) -> str:
    """The sort key if this user may sort by it, else "" (a stale or hand-typed key in a
    link falls back to the default order instead of an error page)."""
    name = sort.removeprefix("-")
    return sort if name and name in sortable_fields(rt, frozenset(readable)) else ""


def columns(
    rt: RecordType,
    names: Sequence[str],
    readable: Iterable[str],
    sort: str,
    link: Any,
) -> list[Column]:
    """Headings; those of sortable columns link to the list sorted by them (a second
    click reverses the order). ``link(sort_key)`` builds the list's URL."""
    sortable = set(sortable_fields(rt, frozenset(readable)))
    out = []
    for name in names:
        label = "Owner" if name == OWNER else rt.by_name[name].label
        kind = "" if name == OWNER else cell_kind(rt, name)
        if name not in sortable:
            out.append(Column(name, label, kind=kind))
            continue
        current = sort.removeprefix("-") == name
        descending = current and sort.startswith("-")
        next_key = name if (not current or descending) else f"-{name}"
        state = ("descending" if descending else "ascending") if current else ""
        out.append(Column(name, label, link(next_key), state, kind))
    return out


async def cells(
    gateway: Gateway,
    actor: Actor,
    rt: RecordType,
    items: Sequence[GatewayRecord],
    names: Sequence[str],
    shown: Any,
    heading_of: Any,
    zone: ZoneInfo,
) -> list[list[Cell]]:
    """One row of cells per record. ``shown(rt, name, value, values=, zone=)`` renders a
    plain value, ``heading_of(rt, record, zone)`` a referenced record's name, which
    links to its page (the data map's ``page_path``)."""

    wanted: dict[str, set[str]] = {}
    for name in names:
        target = rt.by_name[name].references if name in rt.by_name else None
        if target:
            ids = {
                str(r.values[name])
                for r in items
                if r.values.get(name) and name not in r.restricted
            }
            wanted.setdefault(target, set()).update(ids)
    names_of: dict[tuple[str, str], str] = {}
    for target, ids in wanted.items():
        for record_id in sorted(ids):
            try:
                other = await gateway.read(actor, target, record_id)
            except GatewayError:
                names_of[(target, record_id)] = ""
            else:
                names_of[(target, record_id)] = heading_of(RECORD_TYPES[target], other, zone)
    owners = dict(await ActiveStaff().choices()) if OWNER in names else {}
    rows = []
    for r in items:
        row = []
        for name in names:
            if name == OWNER:
                label = owners.get(r.owner_id or 0, f"Staff {r.owner_id}")
                row.append(Cell(False, label.split(" (")[0]))
                continue
            value = r.values.get(name)
            target = rt.by_name[name].references
            if name in r.restricted:
                row.append(Cell(True, ""))
            elif target and value:
                text = names_of.get((target, str(value)), "")
                path = RECORD_TYPES[target].page_path
                link = f"{path}/{value}" if text and path else ""
                row.append(Cell(False, text or "Not visible to you", link))
            else:
                text = shown(rt, name, value, values=r.values, zone=zone)
                row.append(Cell(False, text, kind=cell_kind(rt, name)))
        rows.append(row)
    return rows


def cell_kind(rt: RecordType, name: str) -> str:
    """The CSS class of a field's cells: "amount" (one line, right-aligned), "moment"."""
    spec = rt.by_name[name]
    if spec.currency_from:
        return "amount"
    return "moment" if spec.kind in {FieldKind.DATE, FieldKind.DATETIME} else ""


def list_link(base_path: str, query: Mapping[str, Any], **changes: Any) -> str:
    merged = {k: v for k, v in {**query, **changes}.items() if v not in ("", None)}
    return f"{base_path}?{urlencode(merged)}" if merged else base_path
