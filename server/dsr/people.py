"""The person behind a subject id: which of their records speaks for them.

A data subject may be a contact, a lead, or both (a converted lead keeps its subject id,
so the lead and the contact are one person with one history). Which record types are
people is the data map's ``PERSON_TYPES``; the first type, in that order, that holds a
living record of the subject is the person's own record: where the portal shows and
corrects their details and where notifications find their e-mail address. A lead that
is converted therefore moves on to its contact by itself, with no identity to migrate.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from server.datamap import PERSON_TYPES, RecordType
from server.gateway import Actor, Gateway, GatewayError


@dataclass(frozen=True)
class OwnRecord:
    """The record that speaks for a person, with the fields that were asked for."""

    record_type: RecordType
    record_id: str
    values: dict[str, Any]

    @property
    def email(self) -> str | None:
        address = self.values.get("email")
        return address if isinstance(address, str) and address else None


async def own_record(
    gateway: Gateway,
    actor: Actor,
    subject_id: str,
    *,
    purpose: str,
    fields: Callable[[RecordType], Sequence[str]],
) -> OwnRecord | None:
    """The person's own record read through the gateway with ``fields(record type)``, or
    None when they have none left (erased, or an unknown subject)."""
    for rt in PERSON_TYPES:
        try:
            ids = await gateway.subject_records(actor, rt.resource, subject_id, purpose=purpose)
            if not ids:
                continue
            record = await gateway.read(
                actor, rt.resource, ids[0], purpose=purpose, fields=tuple(fields(rt))
            )
        except GatewayError:
            return None
        return OwnRecord(rt, ids[0], dict(record.values))
    return None


async def email_of(gateway: Gateway, actor: Actor, subject_id: str, *, purpose: str) -> str | None:
    """The person's e-mail address on file, whichever kind of record holds it."""
    found = await own_record(gateway, actor, subject_id, purpose=purpose, fields=_email_only)
    return found.email if found else None


def _email_only(rt: RecordType) -> tuple[str, ...]:
    return ("email",) if "email" in rt.by_name else ()
