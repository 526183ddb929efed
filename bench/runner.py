"""One benchmark run: for each engine, load both systems, serve both, drive both.

The two servers of an engine run at the same time and scenarios alternate between them
(baseline, then Consentry, for each scenario), so that a burst of activity from whatever
else shares the machine lands on both sides of a ratio rather than on one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from bench import consentry_target, databases, micro
from bench.baseline import load as baseline_load
from bench.baseline.app import SESSION_COOKIE as BASELINE_COOKIE
from bench.datagen import CustomerData
from bench.loadgen import SCENARIOS, ensure_wrk, run_wrk, server_side, wrk_version
from bench.machine import machine_info
from bench.presets import CONNECTIONS_PER_WORKER
from bench.report import write_results
from bench.servers import Server, free_port, get_status, login_cookie, start_server
from bench.targets import evaluate_targets

REPO_ROOT = Path(__file__).resolve().parent.parent
LIST_PAGES_MAX = 100  # list scenario asks for a random page among the first 100


@dataclass(frozen=True)
class BenchConfig:
    mode: str  # quick | full
    engines: tuple[str, ...]
    contacts: int
    workers: int
    duration: float
    connections: int
    warmup: float
    batch_size: int
    audit_events: int
    erasures: int
    export_interactions: int
    export_repeats: int
    contacts_per_deal: int
    interactions_per_contact: int
    sample_size: int
    out: Path
    postgres: str
    seed: int
    install_wrk: bool
    scaling_workers: tuple[int, ...] = ()
    scaling_engines: tuple[str, ...] = ()
    before: str | None = None  # an earlier run's latest.json, for the before/after tables


class RateColumn(ProgressColumn):
    """Rows per second of a loading task (rich's speed column is for bytes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} rows/s" if speed else "", style="cyan")


class Runner:
    def __init__(self, config: BenchConfig, console: Console) -> None:
        self.config = config
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            console=console,
        )
        self.wrk = ""

    def say(self, message: str) -> None:
        self.progress.console.print(message)

    # --- the whole run -------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        config = self.config
        self.wrk = ensure_wrk(install=config.install_wrk)
        data = CustomerData(
            config.contacts,
            seed=config.seed,
            contacts_per_deal=config.contacts_per_deal,
            interactions_per_contact=config.interactions_per_contact,
        )
        pg_version = None
        if "postgres" in config.engines:
            try:
                pg_version = asyncio.run(databases.server_version(config.postgres))
            except Exception as exc:  # any connection failure: say where and stop
                raise SystemExit(
                    f"PostgreSQL is not reachable at {config.postgres} ({type(exc).__name__}); "
                    "start it or run with --engines sqlite"
                ) from None
        results: dict[str, Any] = {
            "schema_version": 1,
            "mode": config.mode,
            "config": {
                **{k: v for k, v in asdict(config).items() if k not in {"out", "install_wrk"}},
                "engines": list(config.engines),
                "list_pages": self._list_pages(),
            },
            "machine": machine_info(postgres_version=pg_version, wrk_version=wrk_version(self.wrk)),
            "dataset": {
                "contacts": data.contacts,
                "organizations": data.organizations,
                "deals": data.deals,
                "interactions": data.interactions,
                "contacts_per_deal": data.contacts_per_deal,
                "interactions_per_contact": data.interactions_per_contact,
            },
            "engines": {},
        }
        workdir = Path(tempfile.mkdtemp(prefix="consentry-bench-"))
        started = time.monotonic()
        try:
            with self.progress:
                for engine in config.engines:
                    results["engines"][engine] = self.run_engine(engine, data, workdir)
                self.say("[bold]Micro-figures[/bold] (in-process)")
                results["micro"] = {
                    "field_crypto": micro.field_crypto(),
                    "blind_index": micro.blind_index_cost(),
                    "policy": micro.policy_decisions(workdir),
                }
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            if "postgres" in config.engines:
                for name in (databases.CONSENTRY_DB, databases.BASELINE_DB, databases.AUDIT_DB):
                    try:
                        asyncio.run(databases.drop(config.postgres, name))
                    except Exception as exc:  # cleanup must not hide the real error
                        self.console.print(f"could not drop {name}: {type(exc).__name__}")
        results["wall_seconds"] = round(time.monotonic() - started, 1)
        results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()[:2]]
        results["targets"] = evaluate_targets(results)
        write_results(results, config.out)
        return results

    def _list_pages(self) -> int:
        return max(1, min(LIST_PAGES_MAX, math.ceil(self.config.contacts / 25)))

    # --- one engine ----------------------------------------------------------------------

    def run_engine(self, engine: str, data: CustomerData, workdir: Path) -> dict[str, Any]:
        config = self.config
        self.say(
            f"[bold]{engine}[/bold]: {data.contacts:,} contacts, {data.organizations:,} "
            f"organizations, {data.deals:,} deals, {data.interactions:,} interactions"
        )
        urls = databases.urls_for(engine, workdir, config.postgres)
        if engine == "postgres":
            for name in (databases.CONSENTRY_DB, databases.BASELINE_DB, databases.AUDIT_DB):
                asyncio.run(databases.recreate(config.postgres, name))
        root = workdir / engine
        root.mkdir(parents=True)
        out: dict[str, Any] = {"database": "SQLite file" if engine == "sqlite" else "PostgreSQL"}

        # Consentry: keys, migrations, admin, data through create_many.
        env = consentry_target.consentry_env(root / "home", urls.consentry)
        consentry_target.init_keys(env, REPO_ROOT)
        rows = data.rows
        with self._bar(f"{engine} Consentry load (create_many)", rows) as advance:
            prepared = asyncio.run(
                consentry_target.prepare(env, data, batch_size=config.batch_size, progress=advance)
            )
        # Baseline: plaintext multi-row inserts into its own database.
        secret = secrets.token_urlsafe(32)  # text: it travels to the server in the environment
        with self._bar(f"{engine} baseline load (insert)", rows) as advance:
            base_figures, base_ids, base_token = asyncio.run(
                baseline_load.prepare(
                    urls.baseline,
                    secret.encode(),
                    data,
                    batch_size=config.batch_size,
                    progress=advance,
                )
            )
        for url in (urls.consentry, urls.baseline):  # both, the same way (databases.analyze)
            asyncio.run(databases.analyze(url))
        out["load"] = {
            "analyzed": True,
            "consentry": {
                **prepared.figures.as_dict(),
                "path": "Gateway.create_many (validate, check references, encrypt, data keys, "
                "audit), one write transaction per call",
            },
            "baseline": {**base_figures.as_dict(), "path": "Piccolo multi-row insert"},
            "batch_size": config.batch_size,
        }
        self.say(
            f"  loaded: Consentry {out['load']['consentry']['rows_per_s']:,.0f} rows/s, "
            f"baseline {out['load']['baseline']['rows_per_s']:,.0f} rows/s"
        )

        files = self._sample_files(root, data, prepared.ids.contacts, base_ids.contacts)
        files["consentry"]["organizations"] = self._write(
            root / "consentry-orgs.txt", prepared.ids.organizations
        )
        files["baseline"]["organizations"] = self._write(
            root / "baseline-orgs.txt", base_ids.organizations
        )

        servers: dict[str, Server] = {}
        try:
            servers["baseline"] = self._start_baseline(root, urls.baseline, secret)
            consentry_started = dt.datetime.now(dt.UTC)
            servers["consentry"] = self._start_consentry(root, env)
            cookies = {
                "baseline": f"{BASELINE_COOKIE}={base_token}",
                "consentry": login_cookie(
                    servers["consentry"].port,
                    consentry_target.ADMIN_EMAIL,
                    prepared.admin_password,
                    consentry_target.SESSION_COOKIE,
                    totp_code=consentry_target.login_code(prepared.totp_secret),
                ),
            }
            for system, server in servers.items():
                first = files[system]["first_id"]
                status = get_status(server.port, f"/api/v1/contacts/{first}", cookies[system])
                if status != 200:
                    raise RuntimeError(
                        f"{system} answered {status} to a read before the run:\n{server.tail()}"
                    )
                self._drive(server, cookies[system], "read", files[system], config.warmup, None)
            out["scenarios"] = self._scenarios(engine, servers, cookies, files)
        finally:
            for server in servers.values():
                server.stop()
        if engine in config.scaling_engines and config.scaling_workers:
            out["scaling"] = self._scaling(engine, root, urls.baseline, secret, env, cookies, files)

        # After the servers stop, in-process: chain verification, erasure, subject export.
        victims = [prepared.ids.contacts[i] for i in erasure_victims(data, config.erasures)]
        self.say(
            f"  verification, {len(victims)} erasure(s), export of "
            f"{config.export_interactions:,} interactions"
        )
        out.update(
            asyncio.run(
                consentry_target.after_run(
                    env,
                    prepared.admin_user_id,
                    data,
                    victims,
                    export_interactions=config.export_interactions,
                    export_repeats=config.export_repeats,
                    server_started=consentry_started,
                )
            )
        )
        e, x, scrub = out["erasure"], out["export"], out["erasure"]["mention_scrub"]
        self.say(
            f"  erasure {e['total']['median_ms']:,.1f} ms median (mention scrub "
            f"{scrub['median_ms']:,.1f} ms over {scrub['rows_scanned']:,} rows); "
            f"export {x['build_export']['median_ms']:,.1f} ms "
            f"(export_subject {x['export_subject']['median_ms']:,.1f} ms)"
        )
        self.say(f"  audit append ({config.audit_events:,} + concurrent) in a throwaway database")
        out["audit_append"] = asyncio.run(micro.audit_append(urls.audit, config.audit_events))
        return out

    def _bar(self, description: str, total: int) -> _Bar:
        return _Bar(self.progress, description, total)

    def _write(self, path: Path, lines: list[str]) -> Path:
        path.write_text("\n".join(lines) + "\n")
        return path

    def _sample_files(
        self, root: Path, data: CustomerData, consentry_ids: list[str], baseline_ids: list[str]
    ) -> dict[str, dict[str, Any]]:
        """The same random contacts (by generator index) for both systems."""
        rng = random.Random(self.config.seed)
        picks = rng.sample(range(data.contacts), min(self.config.sample_size, data.contacts))
        emails = self._write(root / "emails.txt", [data.email(i) for i in picks])
        out: dict[str, dict[str, Any]] = {}
        for system, ids in (("consentry", consentry_ids), ("baseline", baseline_ids)):
            chosen = [ids[i] for i in picks]
            out[system] = {
                "contacts": self._write(root / f"{system}-contacts.txt", chosen),
                "emails": emails,
                "first_id": chosen[0],
            }
        return out

    def _start_baseline(
        self, root: Path, database_url: str, secret: str, workers: int | None = None
    ) -> Server:
        port = free_port()
        env = dict(os.environ)
        env["BENCH_BASELINE_DATABASE_URL"] = database_url
        env["BENCH_BASELINE_SESSION_SECRET"] = secret
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        argv = [sys.executable, "-m", "bench.baseline", "--port", str(port)]
        argv += ["--workers", str(workers or self.config.workers)]
        return start_server(
            "baseline", argv, env=env, cwd=REPO_ROOT, log_path=root / "baseline.log", port=port
        )

    def _start_consentry(
        self, root: Path, env: dict[str, str], workers: int | None = None
    ) -> Server:
        port = free_port()
        argv = [*consentry_target.consentry_cli(), "serve", "--port", str(port)]
        argv += ["--workers", str(workers or self.config.workers)]
        return start_server(
            "consentry", argv, env=env, cwd=REPO_ROOT, log_path=root / "consentry.log", port=port
        )

    def _scaling(
        self,
        engine: str,
        root: Path,
        baseline_url: str,
        secret: str,
        env: dict[str, str],
        cookies: dict[str, str],
        files: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        """Reads by id with 1, 2, 4... workers per server, side by side with the baseline at
        the same worker count and the same connections (CONNECTIONS_PER_WORKER each).

        Both servers restart for each count; the sessions live in their databases, so the
        cookies of the main run stay valid and nobody logs in again (a second sign-in within
        the same TOTP step would be refused as a replay). If audit serialised the
        deployment, Consentry's requests/s would stay flat while the baseline's rise.
        """
        config = self.config
        duration = max(1.0, config.duration)
        self.say(
            f"  scaling: reads by id with {', '.join(map(str, config.scaling_workers))} workers"
        )
        runs: list[dict[str, Any]] = []
        for workers in config.scaling_workers:
            connections = CONNECTIONS_PER_WORKER * workers
            entry: dict[str, Any] = {"workers": workers, "connections": connections}
            servers: dict[str, Server] = {}
            try:
                servers["baseline"] = self._start_baseline(root, baseline_url, secret, workers)
                servers["consentry"] = self._start_consentry(root, env, workers)
                for system, server in servers.items():
                    self._drive(
                        server,
                        cookies[system],
                        "read",
                        files[system],
                        config.warmup,
                        None,
                        connections=connections,
                    )
                for system in ("baseline", "consentry"):
                    task = self.progress.add_task(
                        f"{engine} read x{workers} workers {system}", total=round(duration)
                    )

                    def tick(elapsed: float, task: TaskID = task) -> None:
                        self.progress.update(task, completed=min(elapsed, duration))

                    server = servers[system]
                    start = server.log_size()
                    result = self._drive(
                        server,
                        cookies[system],
                        "read",
                        files[system],
                        duration,
                        tick,
                        runtag=f"{int(time.time())}{system[0]}{workers}",
                        connections=connections,
                    )
                    time.sleep(0.5)  # let the last in-flight requests reach the log
                    result["server"] = server_side(server.log_path, start, server.log_size())
                    self.progress.update(task, completed=round(duration), visible=False)
                    entry[system] = result
            finally:
                for server in servers.values():
                    server.stop()
            entry["ratio"] = _ratios(entry["baseline"], entry["consentry"])
            problems = [
                f"{system}: {_problem(entry[system])}"
                for system in ("baseline", "consentry")
                if _problem(entry[system])
            ]
            entry["flagged"] = bool(problems)
            entry["problems"] = problems
            b, c = entry["baseline"], entry["consentry"]
            self.say(
                f"  {workers} worker(s), {connections} connections: baseline {b['rps']:>8.1f} rps"
                f" | Consentry {c['rps']:>8.1f} rps | rps x{entry['ratio']['rps']:.2f}"
                + ("  [red]FLAGGED: " + "; ".join(problems) + "[/red]" if problems else "")
            )
            runs.append(entry)
        return {"scenario": "read contact by id", "seconds": duration, "runs": runs}

    def _drive(
        self,
        server: Server,
        cookie: str,
        scenario: str,
        files: dict[str, Any],
        duration: float,
        tick: Callable[[float], None] | None,
        *,
        datafile_key: str = "contacts",
        runtag: str = "0",
        connections: int | None = None,
    ) -> dict[str, Any]:
        return run_wrk(
            self.wrk,
            port=server.port,
            cookie=cookie,
            scenario=scenario,
            datafile=files[datafile_key],
            duration=duration,
            connections=connections or self.config.connections,
            pages=self._list_pages(),
            runtag=runtag,
            tick=tick,
        )

    def _scenarios(
        self,
        engine: str,
        servers: dict[str, Server],
        cookies: dict[str, str],
        files: dict[str, dict[str, Any]],
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for scenario in SCENARIOS:
            duration = max(1.0, self.config.duration * scenario.duration_share)
            entry: dict[str, Any] = {
                "label": scenario.label,
                "connections": scenario.connections or self.config.connections,
                "seconds": duration,
            }
            for system in ("baseline", "consentry"):
                server = servers[system]
                task = self.progress.add_task(
                    f"{engine} {scenario.key:<9} {system}", total=round(duration)
                )

                def tick(elapsed: float, task: TaskID = task, duration: float = duration) -> None:
                    self.progress.update(task, completed=min(elapsed, duration))

                start = server.log_size()
                result = self._drive(
                    server,
                    cookies[system],
                    scenario.script,
                    files[system],
                    duration,
                    tick,
                    datafile_key=scenario.datafile_key,
                    runtag=f"{int(time.time())}{system[0]}",
                    connections=scenario.connections,
                )
                time.sleep(0.5)  # let the last in-flight requests reach the log
                result["server"] = server_side(server.log_path, start, server.log_size())
                self.progress.update(task, completed=round(duration), visible=False)
                entry[system] = result
            entry["ratio"] = _ratios(entry["baseline"], entry["consentry"])
            problems = [
                f"{system}: {_problem(entry[system])}"
                for system in ("baseline", "consentry")
                if _problem(entry[system])
            ]
            entry["flagged"] = bool(problems)
            entry["problems"] = problems
            out[scenario.key] = entry
            b, c = entry["baseline"], entry["consentry"]
            self.say(
                f"  {scenario.label:<31} baseline {b['rps']:>8.1f} rps p50 {b['p50_ms']:>7.2f} ms"
                f" | Consentry {c['rps']:>8.1f} rps p50 {c['p50_ms']:>7.2f} ms"
                f" | p50 x{entry['ratio']['p50']:.2f}"
                + ("  [red]FLAGGED: " + "; ".join(problems) + "[/red]" if problems else "")
            )
        return out


def erasure_victims(data: CustomerData, count: int) -> list[int]:
    """The last ``count`` contacts (generator indices) that have a deal: a typical person
    to erase holds a contact, a deal and a few interactions."""
    with_deal = (i for i in range(data.contacts - 1, -1, -1) if data.deal_of(i) is not None)
    chosen = [i for _, i in zip(range(count), with_deal, strict=False)]
    if len(chosen) < count:  # no deals generated: any contacts will do
        chosen = list(range(data.contacts - 1, max(-1, data.contacts - 1 - count), -1))
    return chosen


class _Bar:
    """A progress task usable as ``with ... as advance: advance(n)``."""

    def __init__(self, progress: Progress, description: str, total: int) -> None:
        self.progress = progress
        self.task = progress.add_task(description, total=total)

    def __enter__(self) -> Callable[[int], None]:
        return lambda n: self.progress.advance(self.task, n)

    def __exit__(self, *exc: object) -> None:
        self.progress.stop_task(self.task)


def _ratio(consentry: float, baseline: float) -> float | None:
    return round(consentry / baseline, 3) if baseline else None


def _ratios(baseline: dict[str, Any], consentry: dict[str, Any]) -> dict[str, float | None]:
    """Consentry / baseline: above 1 means Consentry is slower for latency, faster for rps."""
    return {
        "rps": _ratio(consentry["rps"], baseline["rps"]),
        "p50": _ratio(consentry["p50_ms"], baseline["p50_ms"]),
        "p99": _ratio(consentry["p99_ms"], baseline["p99_ms"]),
        "server_p50": _ratio(consentry["server"]["p50_ms"], baseline["server"]["p50_ms"]),
        "server_p99": _ratio(consentry["server"]["p99_ms"], baseline["server"]["p99_ms"]),
    }


def _problem(result: dict[str, Any]) -> str:
    socket_errors = sum(result["socket_errors"].values())
    parts = []
    if result["non2xx"]:
        parts.append(f"{result['non2xx']} non-2xx (first: {result['first_bad_status']})")
    if socket_errors:
        parts.append(f"{socket_errors} socket errors")
    if not result["requests"]:
        parts.append("no requests completed")
    return ", ".join(parts)
