"""Audit verification rate: ``AuditTrail.verify()`` over a log of N events, built once.

``python -m bench.audit_verify build URL N`` writes N events (group-commit batches of
500, sealed every 50,000 as a server would) and keeps the signing key next to it;
``python -m bench.audit_verify run URL [--profile FILE]`` times a full verification
(every entry recomputed, every MAC, the Merkle tree rebuilt, every signed head checked).
Building is separate so that before/after figures are taken on the same bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.log import AuditLog
from audit.signing import TreeHeadSigner
from audit.trail import AuditTrail
from bench.micro import _event
from server import db
from server.migrate import apply_migrations


def _key_file(url: str) -> Path:
    name = url.rsplit("/", 1)[-1].replace(".", "_")
    return Path(tempfile.gettempdir()) / f"consentry-verify-bench-{name}.key"


def _signer(url: str, *, new: bool = False) -> TreeHeadSigner:
    path = _key_file(url)
    if new:
        key = Ed25519PrivateKey.generate()
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        )
    return TreeHeadSigner(Ed25519PrivateKey.from_private_bytes(path.read_bytes()))


async def build(url: str, events: int) -> None:
    engine = db.set_engine(db.engine_for_url(url))
    await db.start(engine)
    try:
        await apply_migrations()
        signer = _signer(url, new=True)
        log = AuditLog(signer.entry_mac())
        trail = AuditTrail(signer)
        for first in range(0, events, 500):
            await log._commit([_event(i) for i in range(first, min(events, first + 500))])
            if (first + 500) % 50_000 == 0:
                await trail.seal_all()
        await trail.seal_all()
    finally:
        await db.stop(engine)


async def run(url: str, profile: str | None) -> dict[str, Any]:
    engine = db.set_engine(db.engine_for_url(url))
    await db.start(engine)
    try:
        trail = AuditTrail(_signer(url))
        profiler = cProfile.Profile() if profile else None
        started, cpu_started = time.perf_counter(), time.process_time()
        if profiler:
            profiler.enable()
        report = await trail.verify()
        if profiler and profile:
            profiler.disable()
            profiler.dump_stats(profile)
        seconds = time.perf_counter() - started
        cpu_seconds = time.process_time() - cpu_started
    finally:
        await db.stop(engine)
    return {
        "ok": report.ok,
        "problem": report.problem,
        "checked": report.checked,
        "heads_checked": report.heads_checked,
        "macs_checked": report.macs_checked,
        "seconds": round(seconds, 3),
        "events_per_s": round(report.checked / seconds, 1),
        # This process's CPU (its threads included, not PostgreSQL's): steadier than wall
        # time on a shared machine.
        "cpu_seconds": round(cpu_seconds, 3),
        "events_per_cpu_s": round(report.checked / cpu_seconds, 1),
        "loadavg_1m": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["build", "run"])
    parser.add_argument("url")
    parser.add_argument("events", nargs="?", type=int, default=100_000)
    parser.add_argument("--profile")
    args = parser.parse_args()
    if args.what == "build":
        asyncio.run(build(args.url, args.events))
    else:
        print(json.dumps(asyncio.run(run(args.url, args.profile))))


if __name__ == "__main__":
    main()
