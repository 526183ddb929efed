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

from bench.baseline import db
from bench.baseline.app import token_hash
from bench.baseline.tables import (
    BaselineContact,
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
    """Insert every organization, then every contact, ``batch_size`` rows per statement."""
    started = time.perf_counter()
    org_ids: list[str] = []
    for batch in data.organization_batches(batch_size):
        now = dt.datetime.now(dt.UTC)  # one timestamp per batch, as gateway.create_many
        org_rows: list[BaselineOrganization] = []
        for values in batch:
            rid = uuid.uuid4()
            org_ids.append(str(rid))
            org_rows.append(
                BaselineOrganization(
                    id=rid,
                    owner_id=owner_id,
                    team=OWNER_TEAM,
                    created_at=now,
                    updated_at=now,
                    **values,
                )
            )
        await BaselineOrganization.insert(*org_rows).run()
        progress(len(org_rows))
    org_seconds = time.perf_counter() - started
    started = time.perf_counter()
    contact_ids: list[str] = []
    for span, batch in data.contact_batches(batch_size):
        now = dt.datetime.now(dt.UTC)
        contact_rows: list[BaselineContact] = []
        for index, values in zip(span, batch, strict=True):
            rid = uuid.uuid4()
            contact_ids.append(str(rid))
            organization = uuid.UUID(org_ids[data.organization_of(index)])
            contact_rows.append(
                BaselineContact(
                    id=rid,
                    owner_id=owner_id,
                    team=OWNER_TEAM,
                    created_at=now,
                    updated_at=now,
                    organization_id=organization,
                    **values,
                )
            )
        await BaselineContact.insert(*contact_rows).run()
        progress(len(contact_rows))
    contact_seconds = time.perf_counter() - started
    figures = LoadFigures.of(len(org_ids), org_seconds, len(contact_ids), contact_seconds)
    return figures, LoadedIds(organizations=org_ids, contacts=contact_ids)
