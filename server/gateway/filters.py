"""List filters and typed columns: how the values a caller filters or writes by become SQL.

A filter names fields the data map lets lists filter by (or, for reports, any field
stored in clear), each value is validated like a written one, and a field the actor may
not read cannot be filtered by: filtering would reveal it one yes/no at a time.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from piccolo.table import Table

from policy.enforcer import AccessDecision
from server.datamap import Field, FieldKind, InvalidValues, RecordType, clean_values, shown_name
from server.gateway.errors import InvalidInput

_MOMENTS = (FieldKind.DATE, FieldKind.DATETIME)  # kinds a ``<field>_before`` list filter accepts


def filter_conditions(
    rt: RecordType,
    table: type[Table],
    decision: AccessDecision,
    filters: Mapping[str, Any],
    *,
    default_region: str,
    any_aggregatable: bool = False,
) -> list[Any]:
    """SQL conditions for list filters (``filterable`` fields); ``any_aggregatable``
    widens them to every field stored in clear, for reports (``aggregate``)."""
    conditions: list[Any] = []
    problems: dict[str, str] = {}
    for name, value in filters.items():
        if value is None or value == "":
            continue
        if name in {"owner_id", "team"}:
            column = getattr(table, name)
            conditions.append(column == value)
            continue
        if name in {"id", "subject_id"}:
            condition = _id_condition(table, name, value, problems)
            if condition is not None:
                conditions.append(condition)
            continue
        bound = rt.by_name.get(name.removesuffix("_before"))
        if name.endswith("_before") and bound is not None and bound.kind in _MOMENTS:
            # "<field>_before": a date or time strictly earlier (tasks due by a moment).
            condition = _before_condition(
                rt, table, decision, bound, value, problems, default_region
            )
            if condition is not None:
                conditions.append(condition)
            continue
        spec = rt.by_name.get(name)
        if spec is None or not (spec.aggregatable if any_aggregatable else spec.filterable):
            problems[shown_name(name)] = "not a filterable field"
        elif name not in decision.fields:
            problems[name] = "your role may not read this field"
        else:
            # One value (``==``) or several (a list or tuple: SQL ``IN``, e.g. a
            # segment's lifecycle_stage in {prospect, customer}); each one is checked.
            many = isinstance(value, list | tuple)
            wanted: list[Any] = []
            for one in value if many else (value,):
                try:
                    cleaned = clean_values(
                        rt, {name: one}, partial=True, default_region=default_region
                    )
                except InvalidValues as exc:
                    problems.update(exc.problems)
                    break
                cond_value = cleaned[name]
                wanted.append(uuid.UUID(cond_value) if spec.kind == "reference" else cond_value)
            else:
                if not wanted:
                    problems[name] = "give at least one value"
                elif many:
                    conditions.append(getattr(table, name).is_in(wanted))
                else:
                    conditions.append(getattr(table, name) == wanted[0])
    if problems:
        raise InvalidInput(
            "invalid filter: " + "; ".join(f"{k}: {v}" for k, v in problems.items()),
            problems=problems,
        )
    return conditions


def _id_condition(table: type[Table], name: str, value: Any, problems: dict[str, str]) -> Any:
    """``id``: these records only (names for the ids on a page, in one list); ``subject_id``:
    one person's records, or a segment's people. Ids only, one or several."""
    values = value if isinstance(value, list | tuple) else (value,)
    if name == "id":
        try:
            ids = [uuid.UUID(str(v)) for v in values]
        except ValueError:
            ids = []
        if ids:
            return table._meta.primary_key.is_in(ids)
        problems["id"] = "must be one or more record ids"
        return None
    try:
        people = [uuid.UUID(str(v)) for v in values]
    except ValueError:
        problems["subject_id"] = "must be one or more subject ids"
        return None
    column = getattr(table, "subject_id")
    # Nobody matches an empty list (IN () is not valid SQL).
    return column.is_in(people) if people else column.is_null()


def _before_condition(
    rt: RecordType,
    table: type[Table],
    decision: AccessDecision,
    spec: Field,
    value: Any,
    problems: dict[str, str],
    default_region: str,
) -> Any:
    name = f"{spec.name}_before"
    if not spec.filterable or spec.encrypted:
        problems[name] = "not a filterable field"
    elif spec.name not in decision.fields:
        problems[name] = "your role may not read this field"
    else:
        try:
            cleaned = clean_values(
                rt, {spec.name: value}, partial=True, default_region=default_region
            )
        except InvalidValues as exc:
            problems[name] = exc.problems[spec.name]
            return None
        moment = to_db(rt, cleaned)[spec.name]
        return getattr(table, spec.name) < moment
    return None


def to_db(rt: RecordType, columns: Mapping[str, Any]) -> dict[str, Any]:
    """Values as the typed columns store them: the data map canonicalises ids and
    moments to strings; plaintext references, dates and times are typed columns."""
    out = dict(columns)
    for spec in rt.fields:
        if spec.encrypted or not out.get(spec.name):
            continue
        if spec.kind is FieldKind.REFERENCE:
            out[spec.name] = uuid.UUID(out[spec.name])
        elif spec.kind is FieldKind.DATE:  # plaintext dates and times are typed columns
            out[spec.name] = dt.date.fromisoformat(out[spec.name])
        elif spec.kind is FieldKind.DATETIME:
            out[spec.name] = dt.datetime.fromisoformat(out[spec.name])
    return out
