"""``python -m bench groupby``: report-builder group-bys over 100,000 deals.

Issue 20, item 8: target p95 < 500 ms per report run. The deployment is generated with
bench/datagen.py's proportions (one deal per four customers, so 400,000 customers for
100,000 deals; no interactions, which no deal report reads) and loaded with PostgreSQL
``COPY`` by the scoring bench's loader, the deals spread over ``--owners`` sales reps.
Each definition then runs ``--runs`` times through ``ReportBuilder.run``, the service the
API's report builder calls, as an admin (scope: all deals), audited as normal: the
gateway compiles scope and consent into the SQL, groups, counts people for small-group
suppression and appends its audit event on every run.

Results go to ``bench/results/groupby/`` (``latest.json`` and ``RESULTS.md``).
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg
from rich.console import Console

from bench.consentry_target import consentry_env, init_keys
from bench.databases import DEFAULT_POSTGRES, drop, recreate
from bench.datagen import CONTACTS_PER_DEAL, CustomerData
from bench.results_model import percentile
from bench.scoring import load
from server import db
from server.gateway import Actor
from server.migrate import apply_migrations
from server.reports.builder import ReportDefinition
from server.services import build_services, load_key_provider
from server.settings import Settings, set_settings

DATABASE = "consentry_bench_groupby"
OUT = Path(__file__).resolve().parent / "results" / "groupby"
TARGET_P95_MS = 500.0
DEFINITIONS: dict[str, ReportDefinition] = {
    "count by stage": ReportDefinition(record_type="deal", group_by=["stage"]),
    "sum of amount by stage and currency": ReportDefinition(
        record_type="deal", group_by=["stage", "currency"], measure="sum", measure_field="amount"
    ),
    "count by month of expected_close": ReportDefinition(
        record_type="deal", bucket="month", bucket_field="expected_close"
    ),
    "median amount by owner": ReportDefinition(
        record_type="deal",
        group_by=["owner_id"],
        measure="median",
        measure_field="amount",
        filters={"currency": "EUR"},
    ),
}
console = Console(stderr=True)


def summary(times_ms: Sequence[float], target_ms: float = TARGET_P95_MS) -> dict[str, Any]:
    """p50 / p95 / max of one definition's runs, and whether its p95 meets the target."""
    values = list(times_ms)
    p95 = round(percentile(values, 95), 1)
    return {
        "runs": len(values),
        "p50_ms": round(percentile(values, 50), 1),
        "p95_ms": p95,
        "max_ms": round(max(values), 1),
        "target_p95_ms": target_ms,
        "met": p95 < target_ms,
    }


def render(result: dict[str, Any]) -> str:
    """RESULTS.md for one run."""
    lines = [
        "# Report-builder group-by benchmark (PostgreSQL)",
        "",
        "`python -m bench groupby` (issue 20, item 8): `ReportBuilder.run` (the API's report",
        "service: gateway aggregate with scope, consent and people counts for small-group",
        "suppression, one audit event per run) as an admin over generated deals loaded with",
        "`COPY` (bench/datagen.py proportions).",
        "",
        f"{result['deals']:,} deals of {result['customers']:,} customers, "
        f"{result['owners']} owners; {result['runs']} runs per definition after one warm-up.",
        "",
        "| definition | groups | p50 | p95 | max | target (p95) | met |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, row in result["definitions"].items():
        lines.append(
            f"| {name} | {row['rows']} | {row['p50_ms']} ms | {row['p95_ms']} ms | "
            f"{row['max_ms']} ms | < {row['target_p95_ms']:.0f} ms | "
            f"{'yes' if row['met'] else 'NO'} |"
        )
    lines += [
        "",
        f"{result['date'][:10]}, {result['machine']}, shared with other work "
        f"(load average {result['load_average']} at the start of the timed runs); "
        f"loading took {result['load_seconds']} s.",
        "",
    ]
    return "\n".join(lines)


async def run(customers: int, owners: int, runs: int, postgres: str) -> dict[str, Any]:
    data = CustomerData(customers, interactions_per_contact=0)
    workdir = Path(tempfile.mkdtemp(prefix="consentry-groupby-"))
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
            load_seconds = await load(conn, load_key_provider(settings), data, owners=owners)
        finally:
            await conn.close()
        builder = services.report_builder
        admin = Actor.staff(1_000_000, "admin", "hq", "bench-groupby")
        load_average = ", ".join(f"{x:.2f}" for x in os.getloadavg())
        figures: dict[str, Any] = {}
        for name, definition in DEFINITIONS.items():
            table = await builder.run(admin, definition)  # warm-up
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                table = await builder.run(admin, definition)
                times.append((time.perf_counter() - started) * 1000)
            figures[name] = {"rows": len(table.rows), **summary(times)}
            console.print(f"  {name}: {figures[name]}")
    finally:
        await db.stop(engine)
        await drop(postgres, DATABASE)
    return {
        "customers": customers,
        "deals": data.deals,
        "owners": owners,
        "runs": runs,
        "load_seconds": round(load_seconds, 1),
        "load_average": load_average,
        "definitions": figures,
        "met": all(f["met"] for f in figures.values()),
    }


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench groupby", description=__doc__)
    parser.add_argument("--deals", type=int, default=100_000, help="default 100000")
    parser.add_argument("--owners", type=int, default=50, help="sales reps owning deals (50)")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per definition (30)")
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server URL (no database)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"results folder (default {OUT})")
    args = parser.parse_args(argv)
    customers = args.deals * CONTACTS_PER_DEAL
    console.print(f"report group-by: {args.deals:,} deals of {customers:,} customers")
    result = asyncio.run(run(customers, args.owners, args.runs, args.postgres))
    result["date"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} cores"
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "RESULTS.md").write_text(render(result))
    console.print(render(result))
    if not result["met"]:
        console.print("[red]target missed: group-by p95 >= 500 ms[/red]")
