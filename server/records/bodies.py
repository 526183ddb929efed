"""The request bodies of the record routes, described from the data map per record type.

The handlers take the body as a plain JSON object and the gateway checks it against the
data map (``clean_values``): every problem at once, unknown keys refused without echoing
them. The OpenAPI document still has to say what a body may hold, field by field, or a
client generated from it (and the schemathesis run, tests/server/test_api_fuzz.py) sees only "an
object". These schemas state the same rules ``clean_values`` applies, so a body the
document forbids is one the server refuses; where the server is more lenient than a schema
can say (it trims text and takes a blank optional value as "clear it"), the schema allows
it too.
"""

from __future__ import annotations

from litestar.openapi.spec import Schema
from litestar.openapi.spec.enums import OpenAPIType

from server.datamap import (
    PLAIN_INTEGER_LIMIT,
    SEALED_INTEGER_LIMIT,
    Field,
    FieldKind,
    RecordType,
)
from server.gateway.ownership import MAX_STAFF_ID, MAX_TEAM_LENGTH

# An optional text value that is blank after trimming clears the field (``clean_values``).
_BLANK = Schema(type=OpenAPIType.STRING, pattern=r"^\s*$", description="blank: clears the field")
_NULL = Schema(type=OpenAPIType.NULL)
_FORMATS = {
    FieldKind.EMAIL: "email",
    FieldKind.DATE: "date",
    FieldKind.DATETIME: "date-time",
    FieldKind.REFERENCE: "uuid",
}
OWNERSHIP = {
    "owner_id": Schema(
        type=[OpenAPIType.INTEGER, OpenAPIType.NULL],
        minimum=1,
        maximum=MAX_STAFF_ID,
        description="the staff user the record belongs to (default: you)",
    ),
    "team": Schema(
        type=[OpenAPIType.STRING, OpenAPIType.NULL],
        min_length=1,
        max_length=MAX_TEAM_LENGTH,
        description="the team the record belongs to (default: yours)",
    ),
}


def _describe(spec: Field) -> str:
    words = [spec.label]
    if spec.currency_from:
        words.append(f"in minor units of `{spec.currency_from}`")
    if spec.default is not None:
        words.append(f"default `{spec.default}`")
    if spec.encrypted:
        words.append("stored encrypted")
    return "; ".join(words)


def field_schema(spec: Field) -> Schema:
    """One field's value as ``clean_values`` accepts it."""
    if spec.kind is FieldKind.INTEGER:
        limit = SEALED_INTEGER_LIMIT if spec.encrypted else PLAIN_INTEGER_LIMIT
        low = spec.minimum if spec.minimum is not None else -limit + 1
        high = spec.maximum if spec.maximum is not None else limit - 1
        kinds = [OpenAPIType.INTEGER] if spec.required else [OpenAPIType.INTEGER, OpenAPIType.NULL]
        return Schema(type=kinds, minimum=low, maximum=high, description=_describe(spec))
    if spec.kind is FieldKind.REFERENCE:  # never blank: an id or null
        kinds = [OpenAPIType.STRING] if spec.required else [OpenAPIType.STRING, OpenAPIType.NULL]
        return Schema(type=kinds, format=_FORMATS[spec.kind], description=_describe(spec))  # type: ignore[arg-type]
    value = Schema(
        type=OpenAPIType.STRING,
        max_length=spec.max_length,
        min_length=1 if spec.required else None,
        format=_FORMATS.get(spec.kind),  # type: ignore[arg-type]
        enum=list(spec.choices) or None,
    )
    if spec.required:
        value.description = _describe(spec)
        return value
    return Schema(any_of=[value, _BLANK, _NULL], description=_describe(spec))


def record_body_schema(rt: RecordType, *, partial: bool) -> Schema:
    """A create (``partial=False``) or update body of one record type. Fields set by a
    rule are left out: a body naming them is refused, as an unknown key is."""
    fields = [f for f in rt.fields if not f.set_by_rule]
    required = [f.name for f in fields if f.required and f.default is None]
    name = rt.label.replace(" ", "")
    return Schema(
        title=f"{name}{'Update' if partial else 'Create'}",
        type=OpenAPIType.OBJECT,
        properties={**{f.name: field_schema(f) for f in fields}, **OWNERSHIP},
        required=None if partial or not required else required,
        additional_properties=False,
        description=(
            f"The {rt.label.lower()} fields to change; `null` clears an optional one."
            if partial
            else f"A new {rt.label.lower()}."
        ),
    )


def search_body_schema(rt: RecordType, *, by_name: bool, longest: int) -> Schema:
    """A search body: a name (paged), or exactly one blind-indexed field's value."""
    exact = {
        f.name: Schema(type=OpenAPIType.STRING, max_length=longest, description=f.label)
        for f in rt.fields
        if f.blind_index
    }
    paged = {
        "name": Schema(type=OpenAPIType.STRING, description="words or word beginnings"),
        "page": Schema(type=OpenAPIType.INTEGER),
        "page_size": Schema(type=OpenAPIType.INTEGER),
    }
    return Schema(
        title=f"{rt.label.replace(' ', '')}Search",
        type=OpenAPIType.OBJECT,
        properties={**(paged if by_name else {}), **exact},
        description="One search term: a name, or one of the exact-match fields.",
    )
