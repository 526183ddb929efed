"""``python -m bench mentions``: erasure and subject export with and without the mention index.

What it measures (issue 15 item 5, docs/dsr.md "The mention index"), in process, on one
freshly loaded database per engine:

- **erasure of one person** (``services.erasure.erase``: mention scrub, tombstones, key
  shredding, job bookkeeping, audit) - with the mention index complete, and with it marked
  incomplete (every other free text read: what erasure did before the index), different
  people each time, with the records each scrub read;
- **subject export** (``build_export``, the signed ZIP) of a person with
  ``--export-interactions`` interactions, both ways;
- **the write cost**: ``create_many`` of 1,000 contacts with a note each, with the index's
  token writes and with them switched off; and the back-fill (``rebuild_all``) rate;
- **the index size**: token rows per record with free text.

Contacts are loaded through ``Gateway.create_many`` (the import path, tokens included);
one note in five names another customer ("Met <first> <last> ...") or gives a number, so
people are mentioned as in a real CRM. Results go to ``bench/results/mentions/``
(``latest.json`` and ``RESULTS.md``). The machine is usually shared: compare the two
columns of one run (ratios), not runs with each other.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from audit.tables import AuditRecord
from bench.consentry_target import consentry_env, init_keys
from bench.databases import DEFAULT_POSTGRES, drop, recreate
from bench.datagen import CustomerData
from bench.results_model import summary_ms
from server import db
from server.datamap import RECORD_TYPES
from server.dsr.export import build_export
from server.gateway import Actor, mention_index
from server.migrate import apply_migrations
from server.services import Services, build_services
from server.settings import Settings, set_settings

DATABASE = "consentry_bench_mentions"
OUT = Path(__file__).resolve().parent / "results" / "mentions"
BATCH = 1000
console = Console(stderr=True)
ACTOR = Actor.system("bench")


def _note(data: CustomerData, index: int, rng: random.Random) -> str:
    """A sentence; one in five also names another customer or gives a phone number."""
    sentence = data.contact(index)["notes"]
    roll = rng.random()
    if roll < 0.15 and index:
        first, last = data._names(rng.randrange(data.contacts))
        return f"Met {first} {last} at the fair. {sentence}"
    if roll < 0.2:
        return f"{sentence} Call back on 07700 9{rng.randrange(10**5):05d}."
    return str(sentence)


async def _load(services: Services, data: CustomerData, *, index: bool = True) -> list[str]:
    """Contacts ``data`` describes, through ``create_many``; returns their record ids."""
    ids: list[str] = []
    rng = random.Random(15)
    real = mention_index.write_new

    async def skipped(*args: Any, **kwargs: Any) -> None:
        return None

    if not index:
        mention_index.write_new = skipped
    try:
        for start in range(0, data.contacts, BATCH):
            rows = []
            for i in range(start, min(start + BATCH, data.contacts)):
                values = data.contact(i)
                values["notes"] = _note(data, i, rng)
                rows.append(values)
            result = await services.gateway.create_many(ACTOR, "contact", rows)
            if result.rejected:
                raise RuntimeError(f"rejected rows: {list(result.rejected.items())[:3]}")
            ids += result.created
    finally:
        mention_index.write_new = real
    return ids


async def _scan_detail() -> dict[str, int]:
    row = (
        await AuditRecord.select(AuditRecord.detail)
        .where(AuditRecord.action == "erase_mentions")
        .order_by(AuditRecord.seq, ascending=False)
        .first()
    )
    return json.loads(row["detail"]) if row else {}


async def _erase(services: Services, record_ids: list[str]) -> dict[str, Any]:
    times: list[int] = []
    scanned: list[int] = []
    changed: list[int] = []
    for record_id in record_ids:
        subject = (await services.gateway.read(ACTOR, "contact", record_id)).subject_id
        started = time.perf_counter_ns()
        result = await services.erasure.erase(subject, by="system:bench")
        times.append(time.perf_counter_ns() - started)
        if not result.complete:
            raise RuntimeError(f"erasure ended {result.state}")
        detail = await _scan_detail()
        scanned.append(int(detail.get("scanned", 0)))
        changed.append(int(detail.get("changed", 0)))
    return {
        **summary_ms(times),
        "records_read_median": statistics.median(scanned) if scanned else 0,
        "mentions_scrubbed_median": statistics.median(changed) if changed else 0,
    }


async def _export(services: Services, subject: str, repeats: int) -> dict[str, Any]:
    times: list[int] = []
    for _ in range(repeats):
        started = time.perf_counter_ns()
        await build_export(services, subject, requested_by="system:bench")
        times.append(time.perf_counter_ns() - started)
    return summary_ms(times)


async def _write_cost(services: Services, data: CustomerData) -> dict[str, Any]:
    """create_many of BATCH contacts with and without the token writes (alternating)."""
    with_index: list[int] = []
    without: list[int] = []
    for round_ in range(2):
        for index in (True, False):
            sample = CustomerData(BATCH, seed=1000 + round_ * 2 + index)
            started = time.perf_counter_ns()
            await _load(services, sample, index=index)
            (with_index if index else without).append(time.perf_counter_ns() - started)
    return {"with_index": summary_ms(with_index), "without_index": summary_ms(without)}


async def run(engine: str, contacts: int, args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="consentry-mentions-"))
    if engine == "sqlite":
        url = f"sqlite:///{workdir / 'consentry.sqlite3'}"
    else:
        url = f"{args.postgres}/{DATABASE}"
        await recreate(args.postgres, DATABASE)
    env = consentry_env(workdir / "home", url)
    init_keys(env, workdir)
    settings = set_settings(Settings.from_env(env))
    engine_ = db.set_engine(db.engine_for_url(settings.resolved_database_url))
    await db.start(engine_)
    try:
        await apply_migrations()
        services = build_services(settings)
        data = CustomerData(contacts)
        console.print(f"{engine}: loading {contacts:,} contacts")
        started = time.perf_counter()
        ids = await _load(services, data)
        load_s = time.perf_counter() - started
        rng = random.Random(5)
        victims = rng.sample(ids, args.erasures * 2)
        console.print(f"{engine}: erasures with the index")
        indexed = await _erase(services, victims[: args.erasures])
        console.print(f"{engine}: erasures reading every free text")
        await mention_index.mark_incomplete()
        full = await _erase(services, victims[args.erasures :])
        started = time.perf_counter()
        rebuilt = await mention_index.rebuild_all(services.gateway, ACTOR)
        rebuild_s = time.perf_counter() - started
        console.print(
            f"{engine}: export of a person with {args.export_interactions:,} interactions"
        )
        person = await services.gateway.create(ACTOR, "contact", data.contact(0))
        for start in range(0, args.export_interactions, BATCH):
            batch = [
                {**data.interaction(i), "contact_id": person.id}
                for i in range(start, min(start + BATCH, args.export_interactions))
            ]
            await services.gateway.create_many(ACTOR, "interaction", batch)
        export_indexed = await _export(services, person.subject_id, args.export_repeats)
        await mention_index.mark_incomplete()
        export_full = await _export(services, person.subject_id, args.export_repeats)
        await mention_index.rebuild_all(services.gateway, ACTOR)
        console.print(f"{engine}: write cost")
        writes = await _write_cost(services, data)
        await mention_index.rebuild_all(services.gateway, ACTOR)  # the unindexed batches
        rows, records = await mention_index.size()
    finally:
        await db.stop(engine_)
        if engine == "postgres":
            await drop(args.postgres, DATABASE)
    reindexed = sum(rebuilt.values())
    return {
        "engine": engine,
        "contacts": contacts,
        "load_seconds": round(load_s, 1),
        "token_width_bits": mention_index.width(RECORD_TYPES["contact"]),
        "token_rows_per_record": round(rows / records, 1) if records else 0.0,
        "erasure": {"indexed": indexed, "full_scan": full},
        "export": {
            "interactions": args.export_interactions,
            "indexed": export_indexed,
            "full_scan": export_full,
        },
        "create_many_1000_contacts": writes,
        "backfill": {
            "records": reindexed,
            "seconds": round(rebuild_s, 2),
            "records_per_s": round(reindexed / rebuild_s, 1) if rebuild_s else 0.0,
        },
    }


def _ratio(slow: float, fast: float) -> str:
    return f"{slow / fast:.0f}x" if fast else "n/a"


def write(results: list[dict[str, Any]], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
    }
    (out / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "# Mention index benchmark",
        "",
        "`python -m bench mentions`: erasure of one person and a subject export, with the "
        "mention index and without it (every other free text read, as before the index), "
        "in one run on one database; and what the index costs on writes. The machine has "
        f"{os.cpu_count()} cores shared with other work: compare the columns of one run "
        "(ratios), not runs with each other.",
        "",
        f"- **Date**: {doc['date']}; Python {platform.python_version()}",
        "",
    ]
    for r in results:
        e, x, w = r["erasure"], r["export"], r["create_many_1000_contacts"]
        lines += [
            f"## {r['engine']}, {r['contacts']:,} contacts",
            "",
            f"token width {r['token_width_bits']} bits; {r['token_rows_per_record']} token "
            f"rows per record with free text; load through create_many {r['load_seconds']} s; "
            f"back-fill {r['backfill']['records']:,} records in {r['backfill']['seconds']} s "
            f"({r['backfill']['records_per_s']:,} records/s)",
            "",
            "| figure | with the index | reading everything | ratio |",
            "|---|---|---|---|",
            f"| erasure of one person, median ms | {e['indexed']['median_ms']} | "
            f"{e['full_scan']['median_ms']} | "
            f"{_ratio(e['full_scan']['median_ms'], e['indexed']['median_ms'])} |",
            f"| erasure: other records read (median) | {e['indexed']['records_read_median']} | "
            f"{e['full_scan']['records_read_median']} | |",
            f"| erasure: mentions scrubbed (median) | "
            f"{e['indexed']['mentions_scrubbed_median']} | "
            f"{e['full_scan']['mentions_scrubbed_median']} | |",
            f"| build_export, {x['interactions']:,} interactions, median ms | "
            f"{x['indexed']['median_ms']} | {x['full_scan']['median_ms']} | "
            f"{_ratio(x['full_scan']['median_ms'], x['indexed']['median_ms'])} |",
            "",
            f"create_many of 1,000 contacts with a note each: {w['with_index']['median_ms']} ms "
            f"with the index's tokens, {w['without_index']['median_ms']} ms without "
            f"(+{w['with_index']['median_ms'] / w['without_index']['median_ms'] - 1:.0%}).",
            "",
        ]
    (out / "RESULTS.md").write_text("\n".join(lines))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench mentions", description=__doc__)
    parser.add_argument("--contacts", default="20000", help="comma-separated contact counts")
    parser.add_argument(
        "--engines", default="sqlite,postgres", help="comma-separated: sqlite,postgres"
    )
    parser.add_argument("--erasures", type=int, default=5, help="people erased each way")
    parser.add_argument(
        "--export-interactions", type=int, default=10_000, help="interactions of the exported"
    )
    parser.add_argument("--export-repeats", type=int, default=2, help="timed exports each way")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server URL (no database)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"results folder (default {OUT})")
    args = parser.parse_args(argv)
    results = []
    for engine in [e.strip() for e in args.engines.split(",") if e.strip()]:
        for count in [int(c) for c in args.contacts.split(",") if c.strip()]:
            results.append(asyncio.run(run(engine, count, args)))
            write(results, args.out)
    console.print(f"written to {args.out}")
