"""``python -m bench soak``: a realistic staff mix against Consentry for minutes on end.

Simulated sales reps (``--users``), each signed in once through the real login and
keeping their session, work on their own customers with the mix an outside tester used:
50 % reads by id, 20 % filtered lists, 10 % e-mail searches, 10 % creates, 5 % updates
and 5 % customer 360 pages (an admin UI page, behind the same session cookie), with a
short random pause between requests. The load runs for ``--minutes`` against a real
``consentry serve`` with ``--workers`` uvicorn workers, loopback only.

Every 10 seconds a sample records each worker's resident memory (from /proc, the
server's process group), the PostgreSQL connections to Consentry's database, the audit
events not yet under a signed head, and the requests of those 10 seconds. After the run
the server is stopped, the time from each event to its signed head is measured and
``consentry audit verify`` is run against the database. On PostgreSQL each sample also
keeps the live and dead rows of the busiest tables and their autovacuum and autoanalyze
counts, so that a latency step can be set beside a vacuum or a plan change; the report
shows p50/p99 per minute for each operation. The samples go to
``soak.json``, two charts to ``rss.png`` and ``latency.png``, and the targets (see
``bench/soak_stats.py``) to ``SOAK.md``, all in ``--out``.

Consentry only: the bench's baseline server has no sign-in endpoint, no roles and no 360
page to share the mix with, and the 2 cores of the bench machine would be split between
the two servers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from rich.console import Console

from bench import consentry_target, databases, soak_load, soak_report, soak_stats
from bench.datagen import STAGES, CustomerData
from bench.machine import machine_info
from bench.servers import Server, free_port, start_server
from bench.soak_stats import Request

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"
SOAK_DB = "consentry_bench_soak"  # its own database: a full bench run may be going on too
SAMPLE_EVERY_S = 10.0
REQUEST_TIMEOUT_S = 30.0
OVERDUE_S = 1.0  # an event still unsealed at stop this long after it was written is late
MIX: tuple[tuple[str, int], ...] = (
    ("read", 50),
    ("list", 20),
    ("search", 10),
    ("create", 10),
    ("update", 5),
    ("page360", 5),
)
JOBS = ("Account manager", "Buyer", "Engineer", "Analyst", "Director", "Consultant")
CITIES = ("Leeds", "Bristol", "Glasgow", "Cardiff", "Belfast", "York", "Bath")


@dataclass(frozen=True)
class SoakConfig:
    minutes: int
    engine: str  # sqlite | postgres
    workers: int
    users: int
    contacts: int
    think_ms: float
    out: Path
    postgres: str
    seed: int
    batch_size: int = 1000


# --- the simulated staff -------------------------------------------------------------------


@dataclass
class StaffUser:
    """One sales rep at work: their own book, their own session, their own connection."""

    number: int
    rep: soak_load.Rep
    rng: random.Random
    runtag: str
    created: int = 0
    own: list[str] = field(default_factory=list)  # contact ids, those created included

    def request(self, op: str) -> tuple[str, str, dict[str, Any] | None]:
        rng = self.rng
        if op == "read":
            return "GET", f"/api/v1/contacts/{rng.choice(self.own)}", None
        if op == "list":
            stage = rng.choice(STAGES)
            return "GET", f"/api/v1/contacts?lifecycle_stage={stage}&page=1&page_size=25", None
        if op == "search":
            return "POST", "/api/v1/contacts/search", {"email": rng.choice(self.rep.emails)}
        if op == "create":
            self.created += 1
            n = self.created
            body = {
                "first_name": "Soak",
                "last_name": f"Contact {n}",
                "email": f"soak.{self.runtag}.{self.number}.{n}@example.org",
                "phone": f"+442079460{n % 1000:03d}",
                "job_title": rng.choice(JOBS),
                "city": rng.choice(CITIES),
                "country": "GB",
                "lifecycle_stage": "lead",
                "source": "web",
                "notes": "Created by the soak run",
                "organization_id": rng.choice(self.rep.organizations),
            }
            return "POST", "/api/v1/contacts", body
        if op == "update":
            body = {"job_title": rng.choice(JOBS), "city": rng.choice(CITIES)}
            return "PATCH", f"/api/v1/contacts/{rng.choice(self.own)}", body
        if op == "page360":
            return "GET", f"/contacts/{rng.choice(self.own)}/360", None
        raise ValueError(f"unknown operation {op!r}")


async def sign_in(client: httpx.AsyncClient, rep: soak_load.Rep) -> None:
    """The real login; the client's cookie jar keeps the session from then on."""
    answer = await client.post(
        "/api/v1/auth/login", json={"email": rep.email, "password": rep.password}
    )
    if answer.status_code != 200 or consentry_target.SESSION_COOKIE not in client.cookies:
        raise RuntimeError(f"{rep.email} could not sign in: {answer.status_code}")


async def work(
    user: StaffUser,
    client: httpx.AsyncClient,
    *,
    started: float,
    deadline: float,
    think_s: float,
    record: Callable[[Request], None],
) -> None:
    """Requests until the deadline (bounded: no request starts after it)."""
    ops, weights = zip(*MIX, strict=True)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(user.rng.uniform(0, 2 * think_s))  # do not start in lockstep
    while (sent := loop.time()) < deadline:
        op = user.rng.choices(ops, weights)[0]
        method, path, body = user.request(op)
        headers = {"Accept": "text/html"} if op == "page360" else None
        t0 = time.perf_counter()
        try:
            answer = await client.request(method, path, json=body, headers=headers)
            status = answer.status_code
        except httpx.HTTPError:
            status = 0
        record(Request(sent - started, op, (time.perf_counter() - t0) * 1000, status))
        if op == "create" and status == 201:
            with contextlib.suppress(ValueError, KeyError):
                user.own.append(str(answer.json()["id"]))
        await asyncio.sleep(user.rng.uniform(0, 2 * think_s))


# --- what the server looks like from outside --------------------------------------------


def _proc_stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, process group) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the name may contain spaces
    return int(fields[1]), int(fields[2])


def _rss_kb(pid: int) -> int | None:
    try:
        resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE") // 1024


def worker_rss_kb(group: int) -> tuple[dict[str, int], int | None]:
    """Resident memory of the uvicorn workers of the server whose process group is
    ``group`` (its leader is ``consentry serve``, the workers its children), and of the
    leader itself. With one worker uvicorn serves from the leader."""
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == group:
            continue
        stat = _proc_stat(int(entry.name))
        if stat and stat[1] == group and stat[0] == group:
            try:
                cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes()
            except OSError:
                continue
            if b"resource_tracker" not in cmdline:
                children.append(int(entry.name))
    leader = _rss_kb(group)
    workers = {f"pid {pid}": kb for pid in sorted(children) if (kb := _rss_kb(pid)) is not None}
    if not children and leader is not None:
        workers = {f"pid {group}": leader}
    return workers, leader


class DatabaseProbe:
    """Connections to Consentry's database and unsealed audit events, from outside."""

    UNSEALED = (
        "SELECT (SELECT coalesce(max(seq), 0) FROM audit) "
        "- (SELECT coalesce(max(tree_size), 0) FROM audit_checkpoint)"
    )

    def __init__(self, engine: str, url: str) -> None:
        self.engine = engine
        self.url = url
        self.conn: asyncpg.Connection | None = None

    async def __aenter__(self) -> DatabaseProbe:
        if self.engine == "postgres":
            self.conn = await asyncpg.connect(self.url)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.conn is not None:
            await self.conn.close()

    # The tables whose size or churn changes during a soak: contacts grow by the creates,
    # the audit log by every request, sessions and sealer state are updated all the time.
    TABLE_STATS = (
        "SELECT relname, n_live_tup, n_dead_tup, autovacuum_count, autoanalyze_count "
        "FROM pg_stat_user_tables WHERE n_live_tup + n_dead_tup > 0 "
        "ORDER BY n_dead_tup + n_live_tup DESC LIMIT 12"
    )

    async def tables(self) -> dict[str, dict[str, int]] | None:
        """Live and dead rows and autovacuum/autoanalyze counts of the busiest tables."""
        if self.conn is None:
            return None
        rows = await self.conn.fetch(self.TABLE_STATS)
        return {
            str(r["relname"]): {
                "live": int(r["n_live_tup"]),
                "dead": int(r["n_dead_tup"]),
                "autovacuum": int(r["autovacuum_count"]),
                "autoanalyze": int(r["autoanalyze_count"]),
            }
            for r in rows
        }

    async def sample(self) -> tuple[int | None, int | None]:
        if self.conn is not None:
            connections = await self.conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return int(connections), int(await self.conn.fetchval(self.UNSEALED))
        path = self.url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return None, int(conn.execute(self.UNSEALED).fetchone()[0])


async def sampler(
    server: Server,
    probe: DatabaseProbe,
    requests: list[Request],
    samples: list[dict[str, Any]],
    *,
    started: float,
    deadline: float,
    say: Callable[[str], None],
) -> None:
    loop = asyncio.get_running_loop()
    tick = 0
    while True:
        at = loop.time() - started
        workers, leader = worker_rss_kb(server.process.pid)
        connections, unsealed = await probe.sample()
        window = soak_stats.window(requests, at - SAMPLE_EVERY_S, at)
        sample = {
            "at_s": round(at, 1),
            "rss_kb": workers,
            "supervisor_rss_kb": leader,
            "pg_connections": connections,
            "unsealed_events": unsealed,
            "tables": await probe.tables(),
            "last_10s": window,
        }
        samples.append(sample)
        w = window
        rss = ", ".join(f"{kb / 1024:.0f}" for kb in workers.values())
        say(
            f"  {at:6.0f} s  {w['requests'] / SAMPLE_EVERY_S:6.1f} req/s  p99 {w['p99_ms']:7.1f}"
            f" ms  non-2xx {w['non2xx']}  RSS MiB [{rss}]"
            + (f"  pg conns {connections}" if connections is not None else "")
            + f"  unsealed {unsealed}"
        )
        if loop.time() >= deadline:
            return
        tick += 1  # on a fixed grid (0, 10, 20 s, ...): sampling time does not accumulate
        await asyncio.sleep(max(0.0, min(started + tick * SAMPLE_EVERY_S, deadline) - loop.time()))


async def drive(
    config: SoakConfig,
    server: Server,
    reps: list[soak_load.Rep],
    database_url: str,
    say: Callable[[str], None],
) -> tuple[list[Request], list[dict[str, Any]]]:
    requests: list[Request] = []
    samples: list[dict[str, Any]] = []
    runtag = str(int(time.time()))
    clients = [
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{server.port}",
            timeout=REQUEST_TIMEOUT_S,
            limits=httpx.Limits(max_connections=1),
            headers={"Accept": "application/json", "User-Agent": "consentry-bench-soak"},
        )
        for _ in reps
    ]
    try:
        for client, rep in zip(clients, reps, strict=True):
            await sign_in(client, rep)  # one after the other: each is an Argon2 check
        users = [
            StaffUser(k, rep, random.Random(config.seed + k), runtag, own=list(rep.contacts))
            for k, rep in enumerate(reps)
        ]
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + config.minutes * 60
        async with DatabaseProbe(config.engine, database_url) as probe:
            await asyncio.gather(
                sampler(
                    server, probe, requests, samples, started=started, deadline=deadline, say=say
                ),
                *(
                    work(
                        user,
                        client,
                        started=started,
                        deadline=deadline,
                        think_s=config.think_ms / 1000,
                        record=requests.append,
                    )
                    for user, client in zip(users, clients, strict=True)
                ),
            )
    finally:
        for client in clients:
            await client.aclose()
    return requests, samples


# --- after the run -------------------------------------------------------------------------


async def seal_lag(env: dict[str, str], since: dt.datetime, stopped: dt.datetime) -> dict[str, Any]:
    """Event to signed head (``bench.consentry_target.seal_lag``) over the events written
    while the server ran, plus how long the events no head covered had waited when the
    server was told to stop: one written in its last second may fairly be left for the
    next start, an older one was overdue."""
    from audit.tables import AuditCheckpoint, AuditRecord
    from server import db
    from server.settings import Settings, set_settings

    settings = set_settings(Settings.from_env(env))
    engine = db.set_engine(db.engine_for_url(settings.resolved_database_url))
    await db.start(engine)
    try:
        lag = await consentry_target.seal_lag(since)
        newest = (
            await AuditCheckpoint.select(AuditCheckpoint.tree_size)
            .order_by(AuditCheckpoint.tree_size, ascending=False)
            .first()
        )
        covered = newest["tree_size"] if newest else 0
        rows = await AuditRecord.select(AuditRecord.ts, AuditRecord.action).where(
            AuditRecord.seq > covered
        )
    finally:
        await db.stop(engine)
    waited = [(stopped - row["ts"]).total_seconds() for row in rows]
    actions: dict[str, int] = {}
    for row in rows:
        actions[row["action"]] = actions.get(row["action"], 0) + 1
    lag["unsealed_at_stop_actions"] = actions  # what they were: action names and counts
    lag["unsealed_at_stop_oldest_s"] = round(max(waited), 3) if waited else 0.0
    lag["unsealed_at_stop_overdue"] = sum(1 for w in waited if w > OVERDUE_S)
    lag.pop("what", None)
    return lag


def audit_verify(env: dict[str, str]) -> dict[str, Any]:
    """``consentry audit verify`` against the run's database, with the server's home
    (its signing key) and settings; a full pass, no witness file configured."""
    argv = [*consentry_target.consentry_cli(), "audit", "verify"]
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - our own console script
        argv, env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False
    )
    output = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    # The verdict is the first line ("audit log intact ..." or "audit log is NOT intact
    # ..."); a note on unsealed entries, if any, comes last.
    summary = [output[0]] if output else []
    summary += [line for line in output[1:] if line.startswith(("note:", "warning:"))]
    return {
        "command": "consentry audit verify",
        "exit_code": done.returncode,
        "seconds": round(time.monotonic() - started, 2),
        "summary": "; ".join(summary)[:600],
        "output": output[:20],
    }


# --- the whole run -------------------------------------------------------------------------


def run(config: SoakConfig, console: Console) -> dict[str, Any]:
    say = console.print
    data = CustomerData(config.contacts, seed=config.seed)
    workdir = Path(tempfile.mkdtemp(prefix="consentry-soak-"))
    if config.engine == "postgres":
        try:
            pg_version = asyncio.run(databases.server_version(config.postgres))
        except Exception as exc:  # any connection failure: say where and stop
            raise SystemExit(
                f"PostgreSQL is not reachable at {config.postgres} ({type(exc).__name__}); "
                "start it or run with --engine sqlite"
            ) from None
        database_url = f"{config.postgres}/{SOAK_DB}"
    else:
        pg_version = None
        (workdir / "sqlite").mkdir()
        database_url = f"sqlite:///{workdir / 'sqlite' / 'consentry.sqlite3'}"
    env = consentry_target.consentry_env(workdir / "home", database_url)
    # The servers and the CLI must import this checkout, not another editable install.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    result: dict[str, Any] = {
        "schema_version": 1,
        "kind": "soak",
        "config": {
            **{k: v for k, v in asdict(config).items() if k != "out"},
            "mix_percent": dict(MIX),
            "sample_every_s": SAMPLE_EVERY_S,
        },
        "machine": machine_info(postgres_version=pg_version, wrk_version="not used (httpx)"),
        "dataset": {
            "contacts": data.contacts,
            "organizations": data.organizations,
            "deals": data.deals,
            "interactions": data.interactions,
        },
    }
    wall = time.monotonic()
    server: Server | None = None
    try:
        if config.engine == "postgres":
            asyncio.run(databases.recreate(config.postgres, SOAK_DB))
        consentry_target.init_keys(env, REPO_ROOT)
        say(
            f"Loading {data.rows:,} rows for {config.users} sales reps "
            f"({data.contacts:,} contacts) on {config.engine}"
        )
        load_started = time.monotonic()
        reps = asyncio.run(
            soak_load.prepare(
                env, data, config.users, batch_size=config.batch_size, progress=lambda n: None
            )
        )
        result["dataset"]["load_seconds"] = round(time.monotonic() - load_started, 1)
        port = free_port()
        argv = [*consentry_target.consentry_cli(), "serve", "--port", str(port)]
        argv += ["--workers", str(config.workers)]
        server_started = dt.datetime.now(dt.UTC)
        server = start_server(
            "consentry", argv, env=env, cwd=REPO_ROOT, log_path=workdir / "consentry.log", port=port
        )
        say(f"Consentry is up ({config.workers} workers); {config.minutes} min of staff load")
        requests, samples = asyncio.run(drive(config, server, reps, database_url, say))
        stopped = dt.datetime.now(dt.UTC)
        server.stop()
        server = None
        say("Server stopped; measuring event-to-signed-head and running `consentry audit verify`")
        result["seal_lag"] = asyncio.run(seal_lag(env, server_started, stopped))
        result["audit_verify"] = audit_verify(env)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        if config.engine == "postgres":
            try:
                asyncio.run(databases.drop(config.postgres, SOAK_DB))
            except Exception as exc:  # cleanup must not hide the real error
                console.print(f"could not drop {SOAK_DB}: {type(exc).__name__}")
    result["wall_seconds"] = round(time.monotonic() - wall, 1)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()[:2]]
    result.update(summarise(requests, samples, config.minutes))
    result["targets"] = soak_stats.evaluate(result)
    return result


def summarise(
    requests: list[Request], samples: list[dict[str, Any]], minutes: int
) -> dict[str, Any]:
    """The figures the report and the targets need, from the raw requests and samples."""
    in_run = [r for r in requests if r.at_s < minutes * 60]
    bad: dict[str, int] = {}
    for r in in_run:
        if not soak_stats.is_2xx(r.status):
            key = f"{r.op} {r.status or 'no answer'}"
            bad[key] = bad.get(key, 0) + 1
    by_op = {
        op: {
            "requests": len(mine := [r for r in in_run if r.op == op]),
            "non2xx": sum(1 for r in mine if not soak_stats.is_2xx(r.status)),
            **soak_stats.latency_summary([r.ms for r in mine]),
        }
        for op, _ in MIX
    }
    return {
        "minutes": minutes,
        "totals": {
            "requests": len(in_run),
            "non2xx": sum(bad.values()),
            "bad_statuses": bad,
            "rps": round(len(in_run) / (minutes * 60), 1),
            **soak_stats.latency_summary([r.ms for r in in_run]),
        },
        "by_operation": by_op,
        "per_minute": soak_stats.per_minute(in_run, minutes),
        "per_minute_by_operation": soak_stats.per_minute_by_operation(
            in_run, minutes, [op for op, _ in MIX]
        ),
        "table_events": soak_stats.table_events(samples),
        "samples": samples,
        "rss": soak_stats.rss_growth(samples),
        "p99_drift": soak_stats.p99_drift(in_run, minutes),
        "unsealed": soak_stats.unsealed_summary(samples),
    }


# --- command line --------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: list[str] | None = None) -> SoakConfig:
    parser = argparse.ArgumentParser(
        prog="python -m bench soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--minutes",
        type=_positive,
        default=10,
        help="minutes of load (default 10; the targets are judged fully from 13 minutes "
        "on, and the documented long run is --minutes 60)",
    )
    parser.add_argument(
        "--engine",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="database engine (default postgres)",
    )
    parser.add_argument(
        "--workers", type=_positive, default=2, help="uvicorn worker processes (default 2)"
    )
    parser.add_argument(
        "--users", type=_positive, default=20, help="simulated sales reps (default 20)"
    )
    parser.add_argument(
        "--contacts",
        type=_positive,
        default=2000,
        help="contacts loaded before the run, shared out among the reps by organization "
        "(default 2,000; at least 25 per user), with their deals and interactions",
    )
    parser.add_argument(
        "--think-ms",
        type=float,
        default=250.0,
        help="mean pause of a user between two requests, uniformly 0 to twice this "
        "(default 250 ms)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="directory for soak.json, rss.png, latency.png and SOAK.md (default "
        "bench/results/soak-ENGINE-MINUTESmin; point a smoke run elsewhere)",
    )
    parser.add_argument(
        "--postgres",
        default=databases.DEFAULT_POSTGRES,
        help=f"PostgreSQL server URL without database (default {databases.DEFAULT_POSTGRES}); "
        f"the run uses its own database {SOAK_DB}, created and dropped",
    )
    parser.add_argument("--seed", type=int, default=2026, help="data and user seed")
    args = parser.parse_args(argv)
    if args.contacts < soak_load.contacts_needed(args.users):
        parser.error(
            f"--contacts must be at least {soak_load.contacts_needed(args.users):,} for "
            f"{args.users} users (one organization of 25 contacts each)"
        )
    if not math.isfinite(args.think_ms) or args.think_ms < 0:
        parser.error("--think-ms must be 0 or more")
    out = args.out or RESULTS_DIR / f"soak-{args.engine}-{args.minutes}min"
    return SoakConfig(
        minutes=args.minutes,
        engine=args.engine,
        workers=args.workers,
        users=args.users,
        contacts=args.contacts,
        think_ms=args.think_ms,
        out=out,
        postgres=args.postgres.rstrip("/"),
        seed=args.seed,
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)  # unwinds like Ctrl-C, so the server under test is stopped


def main(argv: list[str] | None = None) -> None:
    config = parse_args(argv)
    if importlib.util.find_spec("matplotlib") is None:  # fail now, not after the run
        raise SystemExit(
            "the soak charts need matplotlib: pip install -c constraints.txt -e '.[bench]'"
        )
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    console = Console()
    result = run(config, console)
    paths = soak_report.write(result, config.out)
    console.print("\nResults: " + ", ".join(str(p) for p in paths))
    for target in result["targets"]:
        console.print(
            f"  {target['status']:<19} {target['target']}: {target['measured']} "
            f"(goal {target['goal']})"
        )
