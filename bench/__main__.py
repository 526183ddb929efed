"""``python -m bench``: Consentry vs a plain Litestar + Piccolo baseline, side by side.

For each engine the run (1) loads N contacts with their organizations, deals and
interactions into both systems (Consentry through ``Gateway.create_many``, the baseline
by plain inserts), (2) starts both as real uvicorn servers on 127.0.0.1 with the same
worker count, (3) drives five scenarios (read by id, list page, search by e-mail,
create, update) with ``wrk`` for a bounded time each, then reads by id again with 1, 2 and
4 workers per server on PostgreSQL (the scaling curve), and (4) takes in-process
micro-figures (field crypto, blind index, policy decisions, audit append and
verification, erasure of a person, export of a person with 10,000 interactions).
Results go to ``OUT/latest.json`` and ``OUT/RESULTS.md``.

``python -m bench names`` measures name search (server-side p99, candidates decrypted,
index size per contact) at 100,000 and 1,000,000 contacts on PostgreSQL (``python -m
bench names --help``).

``python -m bench scoring`` runs the customer-scoring job (issue 20: churn model, RFM,
sealed scores) over 100,000 generated customers on PostgreSQL (``--help``).

``python -m bench groupby`` times report-builder group-bys over 100,000 deals on
PostgreSQL (issue 20: target p95 < 500 ms; ``--help``).

``python -m bench mentions`` times erasure of one person and a subject export with the
mention index and reading every free text, and the index's write cost (``--help``).

``python -m bench soak`` is the other mode: a realistic staff mix against Consentry for
minutes on end, sampling memory, connections and audit sealing (``python -m bench soak
--help``).

Needs ``wrk`` (``apt-get update && apt-get install -y wrk``; installed automatically when
running as root) and, for the PostgreSQL engine, a server where the user may create
databases (``consentry_bench_*`` are created and dropped).
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from rich.console import Console

from bench.databases import DEFAULT_POSTGRES
from bench.datagen import CONTACTS_PER_DEAL, INTERACTIONS_PER_CONTACT
from bench.presets import (
    CONNECTIONS_PER_WORKER,
    DEFAULT_CONNECTIONS,
    DEFAULT_ENGINES,
    DEFAULT_SCALING_ENGINES,
    DEFAULT_SCALING_WORKERS,
    DEFAULT_WORKERS,
    EXPORT_INTERACTIONS,
    PRESETS,
)
from bench.runner import BenchConfig, Runner
from bench.targets import ENGINE_NAMES

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _engines(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [n for n in names if n not in ENGINE_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"engines are a comma-separated list of: {', '.join(ENGINE_NAMES)}"
        )
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _not_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _worker_counts(text: str) -> tuple[int, ...]:
    if text.strip().lower() == "none":
        return ()
    try:
        counts = tuple(dict.fromkeys(int(part) for part in text.split(",") if part.strip()))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(
            "worker counts are a comma-separated list of whole numbers of at least 1, or 'none'"
        )
    return counts


def parse_args(argv: list[str] | None = None) -> BenchConfig:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke-test size: 2,000 contacts, 2 s per scenario, both engines; about "
        "three minutes in all (full mode: 100,000 contacts, 15 s per scenario)",
    )
    parser.add_argument(
        "--engines",
        type=_engines,
        default=DEFAULT_ENGINES,
        help="comma-separated: sqlite,postgres (default: both)",
    )
    parser.add_argument(
        "--contacts",
        type=_positive,
        help="contacts to generate and load per system (default 100,000; 2,000 with "
        "--quick; 1,000,000 is supported on PostgreSQL); one organization per 25 contacts",
    )
    parser.add_argument(
        "--contacts-per-deal",
        type=_not_negative,
        default=CONTACTS_PER_DEAL,
        help=f"one deal for every N-th contact (default {CONTACTS_PER_DEAL}; 0: no deals)",
    )
    parser.add_argument(
        "--interactions-per-contact",
        type=_not_negative,
        default=INTERACTIONS_PER_CONTACT,
        help=f"interactions per contact (default {INTERACTIONS_PER_CONTACT}); with "
        "1,000,000 contacts consider 0 or 1 to keep the load time reasonable",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=DEFAULT_WORKERS,
        help=f"uvicorn worker processes for each server (default {DEFAULT_WORKERS})",
    )
    parser.add_argument(
        "--scaling",
        type=_worker_counts,
        help="worker counts for the scaling curve (reads by id, both servers at each count, "
        f"{CONNECTIONS_PER_WORKER} wrk connections per worker); default "
        f"{','.join(map(str, DEFAULT_SCALING_WORKERS))} in full mode, 1,2 with --quick; "
        "'none' skips it",
    )
    parser.add_argument(
        "--scaling-engines",
        type=_engines,
        default=DEFAULT_SCALING_ENGINES,
        help="engines that get the scaling curve (default: postgres; it runs only for "
        "engines the run includes)",
    )
    parser.add_argument(
        "--duration", type=float, help="seconds per load scenario (default 15; 2 with --quick)"
    )
    parser.add_argument(
        "--connections",
        type=_positive,
        default=DEFAULT_CONNECTIONS,
        help=f"concurrent wrk connections (default {DEFAULT_CONNECTIONS})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS_DIR,
        help="directory for latest.json and RESULTS.md (default: bench/results; a --quick "
        "run overwrites the committed figures unless you point it elsewhere)",
    )
    parser.add_argument(
        "--postgres",
        default=DEFAULT_POSTGRES,
        help=f"PostgreSQL server URL without database (default {DEFAULT_POSTGRES})",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive,
        default=1000,
        help="rows per create_many call / per insert when loading (default 1000)",
    )
    parser.add_argument("--seed", type=int, default=2026, help="data generator seed")
    parser.add_argument(
        "--before",
        metavar="LATEST_JSON",
        help="an earlier run's latest.json: RESULTS.md then compares this run with it "
        "(ratios and targets, before and after)",
    )
    parser.add_argument(
        "--no-install",
        action="store_true",
        help="never try to apt-get install wrk; fail with instructions instead",
    )
    args = parser.parse_args(argv)
    if args.before and not Path(args.before).is_file():
        parser.error(f"--before {args.before}: no such file (an earlier run's latest.json)")
    mode = "quick" if args.quick else "full"
    preset = PRESETS[mode]
    return BenchConfig(
        mode=mode,
        engines=args.engines,
        contacts=args.contacts or preset.contacts,
        workers=args.workers,
        duration=args.duration or preset.duration,
        connections=args.connections,
        warmup=preset.warmup,
        batch_size=args.batch_size,
        audit_events=preset.audit_events,
        erasures=preset.erasures,
        export_interactions=EXPORT_INTERACTIONS,
        export_repeats=preset.export_repeats,
        contacts_per_deal=args.contacts_per_deal,
        interactions_per_contact=args.interactions_per_contact,
        sample_size=20_000,
        out=args.out,
        postgres=args.postgres.rstrip("/"),
        seed=args.seed,
        install_wrk=not args.no_install,
        scaling_workers=(
            args.scaling
            if args.scaling is not None
            else (DEFAULT_SCALING_WORKERS if mode == "full" else (1, 2))
        ),
        scaling_engines=args.scaling_engines,
        before=args.before,
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    sys.exit(128 + signum)  # unwinds like Ctrl-C, so the servers under test are stopped


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["names"]:
        from bench import name_search

        name_search.main(args[1:])
        return
    if args[:1] == ["scoring"]:
        from bench import scoring

        scoring.main(args[1:])
        return
    if args[:1] == ["groupby"]:
        from bench import groupby

        groupby.main(args[1:])
        return
    if args[:1] == ["mentions"]:
        from bench import mentions

        mentions.main(args[1:])
        return
    if args[:1] == ["soak"]:
        from bench import soak

        soak.main(args[1:])
        return
    config = parse_args(argv)
    # The servers run in their own sessions (a Ctrl-C in the terminal must not reach them
    # mid-scenario); only the runner's cleanup stops them, so a `kill` must unwind too.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    console = Console()
    results = Runner(config, console).run()
    console.print(f"\nResults: {config.out / 'RESULTS.md'} and {config.out / 'latest.json'}")
    for target in results["targets"]:
        engine = f" [{target['engine']}]" if target["engine"] else ""
        console.print(
            f"  {target['status']:<19} {target['target']}{engine}: {target['measured']} "
            f"(goal {target['goal']})"
        )


if __name__ == "__main__":
    main()
