"""The scans that use the mention index: a person's mentions in other people's free text.

:func:`scan_for` decrypts only the records :func:`server.gateway.mention_index.candidates`
names for the identities (every record while the index is not complete); the matcher of
:mod:`server.gateway.mentions` decides either way. Apart from both, because the index is
built from what ``mentions`` finds (it imports ``mentions``), so ``mentions`` cannot
import it back (the acyclic contract in pyproject.toml).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from server import db
from server.gateway import mention_index
from server.gateway.actor import Actor
from server.gateway.events import allowed_event
from server.gateway.mentions import (
    Identity,
    Matcher,
    Mention,
    ScanStats,
    _Found,
    free_text_fields,
    identity_of,
    record_types,
    require,
    scan,
)

if TYPE_CHECKING:
    from server.gateway.core import GatewayCore


async def scan_for(
    gw: GatewayCore,
    subject: uuid.UUID,
    identities: Sequence[Identity],
    *,
    batch_size: int = 500,
    stats: ScanStats | None = None,
) -> AsyncIterator[_Found]:
    """:func:`scan` for the mentions of ``identities``, over the records the mention index
    names as candidates - or every record while the index cannot answer."""
    within = await mention_index.candidates(gw, identities)
    matcher = Matcher(identities, gw.default_region)
    async for found in scan(
        gw, subject, matcher, batch_size=batch_size, within=within, stats=stats
    ):
        yield found


# --- what a subject export asks -----------------------------------------------------------


async def mentions_of(
    gw: GatewayCore, actor: Actor, subject: uuid.UUID, *, purpose: str, batch_size: int = 500
) -> list[Mention]:
    """The records of other people whose free text mentions the person (what erasing them
    would scrub), for their export. Needs ``export`` on every record type with free text;
    one audited ``export_mention`` event per record type found, naming the field names and
    the people whose records were read - never a value."""
    for rt, _ in record_types():
        if free_text_fields(rt):
            await require(gw, actor, rt, "export", purpose, str(subject))
    identity = await identity_of(gw, subject)
    found = [f.mention async for f in scan_for(gw, subject, [identity], batch_size=batch_size)]
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
