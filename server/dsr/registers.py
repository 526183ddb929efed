"""What the compliance registers say about merging one person's records.

The gateway's merges (``server.gateway.duplicates``) ask ``Gateway.merge_blockers``, which
``build_services`` sets to :func:`merge_blockers`: the gateway never imports ``server.dsr``
(``server.dsr`` builds on the gateway; an import-linter contract keeps it so). Reads the
registers by subject id only; the answers are sentences for the merge page, no values.
"""

from __future__ import annotations

import datetime as dt
import uuid

from server.dsr.requests import ANSWERED
from server.dsr.tables import DsrRequest, ErasureJob, LegalHold


async def merge_blockers(subject_id: str, label: str) -> list[str]:
    """Why the ``label`` ("surviving", "merged") contact may not be merged now."""
    problems: list[str] = []
    sid = uuid.UUID(subject_id)
    today = dt.datetime.now(dt.UTC).date()
    holds = await LegalHold.count().where(
        (LegalHold.subject_id == sid)
        & LegalHold.released_at.is_null()
        & (LegalHold.held_until >= today)
    )
    if holds:
        problems.append(
            f"the {label} contact is under a legal hold: their records must stay as "
            "they are until the hold ends or is released"
        )
    open_requests = await DsrRequest.count().where(
        (DsrRequest.subject_id == sid) & DsrRequest.state.not_in(sorted(ANSWERED))
    )
    if open_requests:
        problems.append(
            f"the {label} contact has an open data-subject request: answer it before "
            "merging, so it is answered about the records it was made about"
        )
    if await ErasureJob.count().where(ErasureJob.subject_id == sid):
        problems.append(f"the {label} contact is being or has been erased")
    return problems
