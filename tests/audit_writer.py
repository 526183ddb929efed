"""A stand-alone process that appends audit events and seals while it does (run by
tests/audit/test_audit_trail.py, several at once, to prove sealing is correct across processes).

    python -m tests.audit_writer DATABASE_URL MASTER_KEY SIGNING_KEY EVENTS WORKER_ID
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from audit.events import AuditEvent, Outcome
from server import db
from server.background import seal_forever
from server.services import build_services
from server.settings import Settings, set_settings


def _event(worker: int, i: int) -> AuditEvent:
    return AuditEvent(
        actor_id=f"system:worker-{worker}",
        actor_role="system",
        action="read",
        resource_type="contact",
        outcome=Outcome.ALLOWED,
        purpose="compliance",
        request_id=f"w{worker}-{i}",
    )


async def run(url: str, master_key: Path, signing_key: Path, events: int, worker: int) -> None:
    settings = set_settings(
        Settings(
            home=Path(tempfile.mkdtemp(prefix="audit-writer-")),
            database_url=url,
            master_key_file=master_key,
            audit_signing_key_file=signing_key,
            session_secret="audit-writer",
        )
    )
    engine = db.set_engine(db.engine_for_url(settings.resolved_database_url))
    await db.start(engine)
    services = build_services(settings)
    stop = asyncio.Event()
    sealer = asyncio.create_task(seal_forever(services.audit_trail, 0.02, stop))
    try:
        # One by one in their own transactions (as writes do), one by one with no
        # transaction at all (a caller that forgot one: the log must open its own), and in
        # concurrent grouped commits (as reads do): all kinds interleave across processes.
        for start in range(0, events, 10):
            chunk = range(start, min(start + 10, events))
            alone, bare, grouped = chunk[:3], chunk[3:5], chunk[5:]
            for i in alone:
                async with db.write_transaction():
                    await services.audit.append(_event(worker, i))
            await asyncio.gather(*(services.audit.append(_event(worker, i)) for i in bare))
            await asyncio.gather(
                *(services.audit.append_committed(_event(worker, i)) for i in grouped)
            )
            await asyncio.sleep(0)
    finally:
        stop.set()
        await sealer
    await services.audit_trail.seal_all()
    await db.stop(engine)


if __name__ == "__main__":
    url, master, signing, count, worker = sys.argv[1:6]
    asyncio.run(run(url, Path(master), Path(signing), int(count), int(worker)))
