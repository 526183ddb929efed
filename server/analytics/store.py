"""Deleting scores: the one thing other packages may do to the score table.

The consent engine calls :func:`forget_scores` in the transaction that records a
withdrawal, expiry or objection touching profiling, and erasure calls it for the erased
person, so a score never outlives its basis.
"""

from __future__ import annotations

import uuid

from server.analytics.tables import CustomerScore


async def forget_scores(subject_id: str) -> None:
    """Delete one person's scores (nothing if they have none)."""
    await CustomerScore.delete().where(CustomerScore.subject_id == uuid.UUID(str(subject_id)))
