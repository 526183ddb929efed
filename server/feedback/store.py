"""What erasure and housekeeping do to the feedback tables (server.dsr.erasure calls it)."""

from __future__ import annotations

import uuid

from server.feedback.tables import SurveyInvitation


async def forget_invitations(subject_id: str) -> None:
    """Delete one person's open survey links (their named answers are ``feedback``
    records, which erasure reaches like any record; the counts name nobody)."""
    await SurveyInvitation.delete().where(SurveyInvitation.subject_id == uuid.UUID(str(subject_id)))
