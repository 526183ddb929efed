"""Loading the baseline: the generator's rows as plaintext, by Piccolo multi-row inserts.

Also creates the one staff user and a session for it (the baseline has no login
endpoint: the runner hands the cookie to the load generator directly).
"""

from __future__ import annotations

import datetime as dt
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

from piccolo.table import Table

from bench.baseline import db
from bench.baseline.app import token_hash
from bench.baseline.tables import (
    BaselineContact,
    BaselineDeal,
    BaselineInteraction,
    BaselineOrganization,
    BaselineSession,
    BaselineUser,
    bind,
    create_schema,
)
from bench.datagen import CustomerData
from bench.results_model import LoadedIds, LoadFigures

OWNER_TEAM = "hq"


async def create_login(secret: bytes) -> tuple[int, str]:
    """An admin user and an open session; returns (user id, cookie token)."""
    now = dt.datetime.now(dt.UTC)
    user = BaselineUser(email="bench.admin@staff.example.com", role="admin", team=OWNER_TEAM)
    await user.save()
    token = secrets.token_urlsafe(32)
    await BaselineSession.insert(
        BaselineSession(
            token_hash=token_hash(secret, token),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + dt.timedelta(hours=12),
        )
    ).run()
    return int(user.id), token


async def prepare(
    database_url: str,
    secret: bytes,
    data: CustomerData,
    *,
    batch_size: int,
    progress: Callable[[int], None],
) -> tuple[LoadFigures, LoadedIds, str]:
    """Schema, login and data in the baseline's own database; returns the cookie token."""
    engine = db.engine_for_url(database_url)
    bind(engine)
    await db.start(engine)
    try:
        await create_schema()
        user_id, token = await create_login(secret)
        figures, ids = await load_baseline(data, user_id, batch_size=batch_size, progress=progress)
    finally:
        await db.stop(engine)
    return figures, ids, token


async def load_baseline(
    data: CustomerData,
    owner_id: int,
    *,
    batch_size: int,
    progress: Callable[[int], None],
) -> tuple[LoadFigures, LoadedIds]:
    """Insert organizations, contacts, deals, interactions, ``batch_size`` rows a statement.

    Plain dates and times become typed values, as Consentry's gateway stores them.
    """
    ids = LoadedIds()
    figures = LoadFigures()

    async def insert(table: type[Table], batch: list[dict[str, Any]]) -> list[str]:
        now = dt.datetime.now(dt.UTC)  # one timestamp per batch, as gateway.create_many
        new_ids = [uuid.uuid4() for _ in batch]
        rows = [
            table(
                id=rid,
                owner_id=owner_id,
                team=OWNER_TEAM,
                created_at=now,
                updated_at=now,
                **values,
            )
            for rid, values in zip(new_ids, batch, strict=True)
        ]
        await table.insert(*rows).run()
        progress(len(rows))
        return [str(rid) for rid in new_ids]

    started = time.perf_counter()
    for batch in data.organization_batches(batch_size):
        ids.organizations.extend(await insert(BaselineOrganization, batch))
    figures.add("organization", len(ids.organizations), time.perf_counter() - started)

    started = time.perf_counter()
    for span, batch in data.contact_batches(batch_size):
        for index, values in zip(span, batch, strict=True):
            values["organization_id"] = uuid.UUID(ids.organizations[data.organization_of(index)])
        ids.contacts.extend(await insert(BaselineContact, batch))
    figures.add("contact", len(ids.contacts), time.perf_counter() - started)

    started = time.perf_counter()
    for span, batch in data.deal_batches(batch_size):
        for index, values in zip(span, batch, strict=True):
            contact = data.deal_contact(index)
            values["contact_id"] = uuid.UUID(ids.contacts[contact])
            values["organization_id"] = uuid.UUID(ids.organizations[data.organization_of(contact)])
            values["expected_close"] = dt.date.fromisoformat(values["expected_close"])
        ids.deals.extend(await insert(BaselineDeal, batch))
    figures.add("deal", len(ids.deals), time.perf_counter() - started)

    started = time.perf_counter()
    for span, batch in data.interaction_batches(batch_size):
        for index, values in zip(span, batch, strict=True):
            contact = data.interaction_contact(index)
            values["contact_id"] = uuid.UUID(ids.contacts[contact])
            deal = data.deal_of(contact)
            values["deal_id"] = None if deal is None else uuid.UUID(ids.deals[deal])
            values["occurred_at"] = dt.datetime.fromisoformat(values["occurred_at"])
        ids.interactions += len(await insert(BaselineInteraction, batch))
    figures.add("interaction", ids.interactions, time.perf_counter() - started)
    return figures, ids
