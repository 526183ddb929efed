"""``python -m bench scoring``: the customer-scoring job over a generated deployment.

Issue 20, item 8: 100,000 customers with 25,000 deals and 300,000 interactions (the
proportions of bench/datagen.py), every one of them consenting to profiling; target: the
whole scoring run (``CustomerScores.score_all``: the gateway's audited read of the facts,
training and validating the churn model, sealing every person's scores under their key,
writing them with their audit events) under 60 s.

Like ``python -m bench names``, the loader writes what the gateway would write in bulk with
PostgreSQL ``COPY`` (a subject and a wrapped data key per customer, sealed deal titles, the
deals' and interactions' plaintext columns, a consent-state row for profiling): loading
through ``Gateway.create_many`` would take far longer than the run it prepares. The job
itself is the real one. Results go to ``bench/results/scoring/`` (``latest.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console

from bench.consentry_target import consentry_env, init_keys
from bench.databases import DEFAULT_POSTGRES, drop, recreate
from bench.datagen import INTERACTION_EPOCH, CustomerData
from server import db
from server.migrate import apply_migrations
from server.services import build_services, load_key_provider
from server.settings import Settings, set_settings
from server.vault.envelope import field_ad, seal_field, wrap_ad, wrap_key

DATABASE = "consentry_bench_scoring"
OUT = Path(__file__).resolve().parent / "results" / "scoring"
BATCH = 10_000
TARGET_SECONDS = 60.0
console = Console(stderr=True)


async def load(conn: asyncpg.Connection, keys: Any, data: CustomerData, owners: int = 1) -> float:
    """Customers (subject + key), their deals and interactions, and profiling consent.

    Deals are spread round-robin over ``owners`` staff ids (1..owners), all in team1."""
    kek_id, kek = keys.active_kek()
    started = time.perf_counter()
    at = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
    subjects: list[uuid.UUID] = []
    for start in range(0, data.contacts, BATCH):
        people, wrapped, consents = [], [], []
        for _ in range(start, min(start + BATCH, data.contacts)):
            sid = uuid.uuid4()
            subjects.append(sid)
            key = os.urandom(32)
            people.append((sid, "contact", at))
            wrapped.append((sid, 1, kek_id, wrap_key(kek, key, wrap_ad(str(sid), 1, kek_id)), at))
            consents.append((sid, "profiling", "any", "granted", at, 0))
        await conn.copy_records_to_table(
            "data_subject", records=people, columns=["id", "kind", "created_at"]
        )
        await conn.copy_records_to_table(
            "subject_key",
            records=wrapped,
            columns=["subject_id", "version", "kek_id", "wrapped_key", "created_at"],
        )
        await conn.copy_records_to_table(
            "consent_state",
            records=consents,
            columns=["subject_id", "purpose", "channel", "state", "since", "last_event_id"],
        )
    deals = []
    for index in range(data.deals):
        values = data.deal(index)
        sid = subjects[data.deal_contact(index)]
        rid = uuid.uuid4()
        moment = dt.datetime.fromisoformat(values["expected_close"]).replace(tzinfo=dt.UTC)
        # Sealed under a throwaway key: the scoring job never reads a title.
        title = seal_field(
            os.urandom(32), 1, values["title"], field_ad("deal", "title", str(rid), str(sid), 1)
        )
        owner = 1 + index % owners
        deals.append(
            (rid, sid, owner, "team1", moment, moment, title, values["amount"], values["currency"],
             values["stage"], sid, moment.date())
        )  # fmt: skip
    await conn.copy_records_to_table(
        "deal",
        records=deals,
        columns=[
            "id", "subject_id", "owner_id", "team", "created_at", "updated_at", "title",
            "amount", "currency", "stage", "contact_id", "expected_close",
        ],
    )  # fmt: skip
    for start in range(0, data.interactions, BATCH):
        rows = []
        for index in range(start, min(start + BATCH, data.interactions)):
            values = data.interaction(index)
            sid = subjects[data.interaction_contact(index)]
            moment = dt.datetime.fromisoformat(values["occurred_at"])
            rows.append(
                (uuid.uuid4(), sid, 1, "team1", moment, moment, values["channel"], moment, sid)
            )
        await conn.copy_records_to_table(
            "interaction",
            records=rows,
            columns=[
                "id", "subject_id", "owner_id", "team", "created_at", "updated_at", "channel",
                "occurred_at", "contact_id",
            ],
        )  # fmt: skip
    await conn.execute("ANALYZE")
    return time.perf_counter() - started


async def run(contacts: int, postgres: str) -> dict[str, Any]:
    data = CustomerData(contacts)
    workdir = Path(tempfile.mkdtemp(prefix="consentry-scoring-"))
    url = f"{postgres}/{DATABASE}"
    env = consentry_env(workdir / "home", url)
    init_keys(env, workdir)
    await recreate(postgres, DATABASE)
    settings = set_settings(Settings.from_env(env))
    engine = db.set_engine(db.engine_for_url(settings.resolved_database_url))
    await db.start(engine)
    try:
        await apply_migrations()
        services = build_services(settings)
        conn = await asyncpg.connect(url)
        try:
            load_seconds = await load(conn, load_key_provider(settings), data)
        finally:
            await conn.close()
        # "Now" is the end of the generated history (interactions end at INTERACTION_EPOCH).
        scoring = await services.analytics.score_all(now=INTERACTION_EPOCH)
        stored = await services.analytics.count()
    finally:
        await db.stop(engine)
        await drop(postgres, DATABASE)
    return {
        "customers": contacts,
        "deals": data.deals,
        "interactions": data.interactions,
        "load_seconds": round(load_seconds, 1),
        "scoring_seconds": round(scoring.seconds, 1),
        "target_seconds": TARGET_SECONDS,
        "met": scoring.seconds < TARGET_SECONDS,
        "scored": scoring.scored,
        "stored": stored,
        "trained_on": scoring.trained_on,
        "validation_auc": scoring.validation_auc,
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench scoring", description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000, help="default 100000")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server URL (no database)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"results folder (default {OUT})")
    args = parser.parse_args(argv)
    console.print(f"customer scoring: {args.customers:,} customers")
    result = asyncio.run(run(args.customers, args.postgres))
    result["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    console.print(json.dumps(result, indent=2))
