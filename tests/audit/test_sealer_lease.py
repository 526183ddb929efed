"""One sealer per deployment (audit.sealer_lease): two workers' sealers run side by side,
only the lease holder seals, the other takes over when the holder stops or dies, and a
stall is still reported by a worker that does not seal."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path

from audit.alert_tables import AuditAlert
from audit.events import AuditEvent, Outcome
from audit.sealer_lease import sealer_lease
from audit.signing import SignedTreeHead
from audit.trail import AuditTrail
from server import db
from server.background import seal_forever
from server.services import Services

REPO = Path(__file__).resolve().parents[2]


class CountingTrail(AuditTrail):
    """The real trail, counting the heads it signs itself (which worker sealed)."""

    signed: int = 0

    async def seal(self) -> SignedTreeHead | None:
        head = await super().seal()
        if head is not None:
            self.signed += 1
        return head


def _trail(services: Services) -> CountingTrail:
    return CountingTrail(services.audit_trail.signer, mac=services.audit.mac)


async def _append(services: Services, count: int) -> None:
    await asyncio.gather(
        *(
            services.audit.append_committed(
                AuditEvent(
                    actor_id="system:test",
                    actor_role="system",
                    action="read",
                    resource_type="contact",
                    outcome=Outcome.ALLOWED,
                    purpose="compliance",
                    request_id=f"lease-{i}",
                )
            )
            for i in range(count)
        )
    )


async def _sealed_up_to_now(services: Services, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        newest = await services.audit_trail.newest_event()
        head = await services.audit_trail.latest_head()
        if newest is None or (head is not None and head.tree_size >= newest[0]):
            return True
        await asyncio.sleep(0.02)
    return False


async def test_only_the_lease_holder_seals_and_the_other_takes_over(
    services: Services,
) -> None:
    engine = db.get_engine()
    first, second = _trail(services), _trail(services)
    first_lease, second_lease = sealer_lease(engine), sealer_lease(engine)
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    first_task = asyncio.create_task(
        seal_forever(first, 0.02, stop_first, lease=first_lease, lease_retry_seconds=0.05)
    )
    await asyncio.sleep(0.2)  # the first one takes the lease
    second_task = asyncio.create_task(
        seal_forever(second, 0.02, stop_second, lease=second_lease, lease_retry_seconds=0.05)
    )
    try:
        for _ in range(5):
            await _append(services, 10)
            assert await _sealed_up_to_now(services, 2.0)
            assert first_lease.held
            assert not second_lease.held
        assert first.signed >= 1
        assert second.signed == 0  # never competed for the write lock

        stop_first.set()  # the holder stops (a worker shut down): the lease is released
        await first_task
        assert not first_lease.held
        signed_before = first.signed
        await _append(services, 10)
        assert await _sealed_up_to_now(services, 2.0)
        assert second_lease.held
        assert second.signed >= 1
        assert first.signed == signed_before
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.gather(first_task, second_task)
    assert not second_lease.held
    assert (await services.audit_trail.verify()).ok


HOLDER = """
import asyncio, sys
from server import db
from audit.sealer_lease import sealer_lease

async def main():
    engine = db.engine_for_url(sys.argv[1])
    lease = sealer_lease(engine)
    assert await lease.acquire()
    print("held", flush=True)
    await asyncio.sleep(600)

asyncio.run(main())
"""


async def test_a_worker_that_dies_loses_the_lease(services: Services, database_url: str) -> None:
    holder = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        database_url,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(holder.stdout.readline(), timeout=30)
        assert line.strip() == b"held"
        lease = sealer_lease(db.get_engine())
        assert not await lease.acquire()  # held elsewhere
        holder.send_signal(signal.SIGKILL)  # no clean-up of any kind
        await asyncio.wait_for(holder.wait(), timeout=10)
        deadline = time.monotonic() + 10
        while not await lease.acquire():
            assert time.monotonic() < deadline, "the dead worker's lease was never freed"
            await asyncio.sleep(0.05)
        assert lease.held
        await lease.release()
    finally:
        if holder.returncode is None:
            holder.kill()
            await holder.wait()


async def test_a_worker_without_the_lease_still_reports_a_stalled_sealer(
    services: Services,
) -> None:
    """The lease holder is alive but does not seal (wedged): a worker that does not hold
    the lease raises the stall alert, and /ready's check sees the backlog."""
    engine = db.get_engine()
    wedged = sealer_lease(engine)
    assert await wedged.acquire()  # held, and nobody seals under it
    watcher = _trail(services)
    stop = asyncio.Event()
    task = asyncio.create_task(
        seal_forever(
            watcher,
            0.02,
            stop,
            alerts=services.alerts,
            stall_seconds=0.3,
            lease=sealer_lease(engine),
            lease_retry_seconds=0.05,
        )
    )
    try:
        await _append(services, 3)
        deadline = time.monotonic() + 5
        while not await AuditAlert.select().where(AuditAlert.kind == "sealing_stalled"):
            assert time.monotonic() < deadline, "no stall alert from the watching worker"
            await asyncio.sleep(0.05)
        assert watcher.signed == 0
        backlog = await services.audit_trail.unsigned_backlog()
        assert backlog is not None
        assert services.audit_trail.stalled(backlog, 0.3, once=False) is not None
    finally:
        stop.set()
        await task
        await wedged.release()
