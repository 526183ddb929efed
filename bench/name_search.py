"""``python -m bench names``: name search by prefix at 100,000 and 1,000,000 contacts.

What it measures (issue 16, docs/search.md): the server-side time of
``Gateway.search_names`` (token lookup, scoped candidate query, decryption of the
candidates' names, ranking, the audit append), its p50/p99 over a fixed set of queries,
the candidates decrypted per query, and the name index's size per contact on disk.

Loading a million contacts through ``Gateway.create_many`` would take most of an hour on a
2-core machine, so the loader writes what the gateway would write, in bulk with
PostgreSQL ``COPY``: a data subject and a wrapped data key per contact, the names sealed
under that key (the vault's own envelope functions), and the tokens from the vault's own
``word_tokens``. The search itself runs the real gateway. Results go to
``bench/results/name-search/`` (``latest.json`` and ``RESULTS.md``).
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
import uuid
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from bench.consentry_target import consentry_env, init_keys
from bench.databases import DEFAULT_POSTGRES, drop, recreate
from bench.datagen import CustomerData
from server import db
from server.datamap import CONTACT
from server.gateway import Actor
from server.migrate import apply_migrations
from server.services import build_services, load_key_provider
from server.settings import Settings, set_settings
from server.vault import Vault
from server.vault.blind_index import index_width
from server.vault.envelope import field_ad, seal_field, wrap_ad, wrap_key
from server.vault.words import normalize_words

DATABASE = "consentry_bench_names"
OUT = Path(__file__).resolve().parent / "results" / "name-search"
SALES_REPS = 200  # contacts are spread over this many owners (a rep sees 1/200th)
TEAMS = 20
BATCH = 5000
QUERIES = 200  # timed searches per kind
console = Console(stderr=True)


def _contacts(data: CustomerData, start: int, stop: int) -> list[tuple[str, str]]:
    return [data._names(i) for i in range(start, stop)]


async def load(conn: asyncpg.Connection, vault: Vault, keys: Any, contacts: int) -> float:
    """Bulk-write ``contacts`` contacts with their subjects, keys, sealed names and tokens."""
    data = CustomerData(contacts)
    kek_id, kek = keys.active_kek()
    base = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    first_spec, last_spec = CONTACT.field("first_name"), CONTACT.field("last_name")
    started = time.perf_counter()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task("Loading contacts", total=contacts)
        for start in range(0, contacts, BATCH):
            subjects, wrapped, rows, tokens = [], [], [], []
            for offset, (first, last) in enumerate(
                _contacts(data, start, min(start + BATCH, contacts))
            ):
                index = start + offset
                sid, rid = uuid.uuid4(), uuid.uuid4()
                key = os.urandom(32)
                at = base + dt.timedelta(seconds=index)
                subjects.append((sid, "contact", at))
                wrapped.append(
                    (sid, 1, kek_id, wrap_key(kek, key, wrap_ad(str(sid), 1, kek_id)), at)
                )
                owner = 1 + index % SALES_REPS
                sealed = [
                    seal_field(key, 1, value, field_ad("contact", name, str(rid), str(sid), 1))
                    for name, value in (("first_name", first), ("last_name", last))
                ]
                rows.append((rid, sid, owner, f"team{owner % TEAMS}", at, at, *sealed))
                for spec, value in ((first_spec, first), (last_spec, last)):
                    for token in vault.word_tokens(CONTACT, spec, value):
                        tokens.append(("contact", rid, spec.name, token))
            await conn.copy_records_to_table(
                "data_subject", records=subjects, columns=["id", "kind", "created_at"]
            )
            await conn.copy_records_to_table(
                "subject_key",
                records=wrapped,
                columns=["subject_id", "version", "kek_id", "wrapped_key", "created_at"],
            )
            await conn.copy_records_to_table(
                "contact",
                records=rows,
                columns=[
                    "id", "subject_id", "owner_id", "team", "created_at", "updated_at",
                    "first_name", "last_name",
                ],
            )  # fmt: skip
            await conn.copy_records_to_table(
                "search_token",
                records=tokens,
                columns=["record_type", "record_id", "field", "token"],
            )
            bar.advance(task, len(rows))
    await conn.execute("ANALYZE")
    return time.perf_counter() - started


def _queries(contacts: int, seed: int = 16) -> dict[str, list[str]]:
    """Terms people type: three-letter prefixes, whole last names, "first last-initial"."""
    data = CustomerData(min(contacts, 50_000))
    rng = random.Random(seed)
    picks = [data._names(rng.randrange(data.contacts)) for _ in range(QUERIES)]
    return {
        "prefix (3 letters)": [normalize_words(last)[0][:3] for _, last in picks],
        "whole last name": [last for _, last in picks],
        "first name + last initial": [f"{first} {last[0]}" for first, last in picks],
        "first + last prefix (4)": [f"{first} {last[:4]}" for first, last in picks],
    }


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def measure(services: Any, actor: Actor, terms: list[str]) -> dict[str, Any]:
    times, candidates, returned, capped = [], [], [], 0
    for term in terms[:5]:  # warm-up: caches, plans
        await services.gateway.search_names(actor, "contact", term)
    for term in terms:
        started = time.perf_counter()
        hits = await services.gateway.search_names(actor, "contact", term)
        times.append((time.perf_counter() - started) * 1000)
        candidates.append(hits.candidates)
        returned.append(hits.total)
        capped += hits.capped
    return {
        "queries": len(terms),
        "p50_ms": round(_percentile(times, 0.5), 2),
        "p99_ms": round(_percentile(times, 0.99), 2),
        "max_ms": round(max(times), 2),
        "candidates_mean": round(statistics.mean(candidates), 1),
        "candidates_p99": _percentile([float(c) for c in candidates], 0.99),
        "matches_mean": round(statistics.mean(returned), 1),
        "capped_share": round(capped / len(terms), 3),
    }


async def run(contacts: int, postgres: str) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="consentry-names-"))
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
        keys = load_key_provider(settings)
        conn = await asyncpg.connect(url)
        try:
            load_seconds = await load(conn, services.gateway.vault, keys, contacts)
            size = await conn.fetchrow(
                "SELECT pg_total_relation_size('search_token') AS total, "
                "pg_relation_size('search_token') AS heap, count(*) AS rows FROM search_token"
            )
        finally:
            await conn.close()
        figures: dict[str, Any] = {}
        admin = Actor.staff(1_000_000, "admin", "hq", "bench-names")
        rep = Actor.staff(1, "sales", "team1", "bench-names")
        for kind, terms in _queries(contacts).items():
            figures[kind] = {
                "admin (all contacts)": await measure(services, admin, terms),
                f"sales rep (own: 1/{SALES_REPS})": await measure(services, rep, terms),
            }
    finally:
        await db.stop(engine)
        await drop(postgres, DATABASE)
    return {
        "contacts": contacts,
        "token_width_bits": index_width(CONTACT.expected_rows),
        "load_seconds": round(load_seconds, 1),
        "token_rows": int(size["rows"]),
        "tokens_per_contact": round(int(size["rows"]) / contacts, 2),
        "index_bytes_per_contact": round(int(size["total"]) / contacts, 1),
        "heap_bytes_per_contact": round(int(size["heap"]) / contacts, 1),
        "searches": figures,
    }


def write(results: list[dict[str, Any]], out: Path = OUT) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": results,
    }
    (out / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    lines = [
        "# Name search benchmark (PostgreSQL)",
        "",
        "`python -m bench names --contacts 100000,1000000`: server-side time of "
        "`Gateway.search_names` (token lookup, scoped candidate query, decryption of the "
        "candidates' names, ranking, audit append) for 200 queries of each kind, in process. "
        f"Contacts are spread over {SALES_REPS} sales reps; the admin searches all of them. "
        "The machine has 2 cores shared with other work, so figures are noisy.",
        "",
        f"- **Date**: {doc['date']}; {os.cpu_count()} CPUs; Python {platform.python_version()}",
        "",
    ]
    for result in results:
        lines += [
            f"## {result['contacts']:,} contacts",
            "",
            f"- token width {result['token_width_bits']} bits; "
            f"{result['tokens_per_contact']} token rows per contact; index (table + indexes) "
            f"**{result['index_bytes_per_contact']:.0f} bytes per contact** "
            f"(heap {result['heap_bytes_per_contact']:.0f}); bulk load {result['load_seconds']} s",
            "",
            "| query | who | p50 ms | p99 ms | candidates decrypted (mean / p99) | matches (mean) "
            "| capped |",
            "|---|---|---|---|---|---|---|",
        ]
        for kind, by_actor in result["searches"].items():
            for who, f in by_actor.items():
                lines.append(
                    f"| {kind} | {who} | {f['p50_ms']} | {f['p99_ms']} | "
                    f"{f['candidates_mean']} / {f['candidates_p99']:.0f} | {f['matches_mean']} "
                    f"| {f['capped_share']:.0%} |"
                )
        lines.append("")
    (out / "RESULTS.md").write_text("\n".join(lines))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench names", description=__doc__)
    parser.add_argument(
        "--contacts",
        default="100000,1000000",
        help="comma-separated contact counts (default: 100000,1000000)",
    )
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server URL (no database)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"results folder (default {OUT})")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.contacts.split(",") if c.strip()]
    results = []
    for count in counts:
        console.print(f"name search: {count:,} contacts")
        results.append(asyncio.run(run(count, args.postgres)))
        write(results, args.out)
    console.print(f"written to {args.out}")
