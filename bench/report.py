"""Results as JSON (for machines and diffs) and Markdown (for people).

The page shows each target as :mod:`bench.targets` judged it, and, given an earlier run,
this run's ratios beside that run's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import soak_report
from bench.datagen import CONTACTS_PER_DEAL, INTERACTIONS_PER_CONTACT
from bench.presets import (
    CONNECTIONS_PER_WORKER,
    DEFAULT_CONNECTIONS,
    DEFAULT_ENGINES,
    DEFAULT_SCALING_ENGINES,
    DEFAULT_SCALING_WORKERS,
    DEFAULT_WORKERS,
    PRESETS,
)
from bench.targets import ENGINE_NAMES, MET, NOT_MET, NOT_YET, fmt

# --- Markdown ---------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def reproduce_command(results: dict[str, Any]) -> str:
    """The command line that repeats this run (options left at their defaults omitted)."""
    config = results["config"]
    preset = PRESETS[results["mode"]]
    parts = ["python -m bench"]
    if results["mode"] == "quick":
        parts.append("--quick")
    if tuple(config["engines"]) != DEFAULT_ENGINES:
        parts.append("--engines " + ",".join(config["engines"]))
    if config["contacts"] != preset.contacts:
        parts.append(f"--contacts {config['contacts']}")
    if config["duration"] != preset.duration:
        parts.append(f"--duration {config['duration']:g}")
    if config["workers"] != DEFAULT_WORKERS:
        parts.append(f"--workers {config['workers']}")
    if config["connections"] != DEFAULT_CONNECTIONS:
        parts.append(f"--connections {config['connections']}")
    default_scaling = DEFAULT_SCALING_WORKERS if results["mode"] == "full" else (1, 2)
    scaling = tuple(config.get("scaling_workers", default_scaling))
    if scaling != default_scaling:
        parts.append("--scaling " + (",".join(map(str, scaling)) or "none"))
    scaling_engines = tuple(config.get("scaling_engines", DEFAULT_SCALING_ENGINES))
    if scaling_engines != DEFAULT_SCALING_ENGINES:
        parts.append("--scaling-engines " + ",".join(scaling_engines))
    if config.get("contacts_per_deal", CONTACTS_PER_DEAL) != CONTACTS_PER_DEAL:
        parts.append(f"--contacts-per-deal {config['contacts_per_deal']}")
    per_contact = config.get("interactions_per_contact", INTERACTIONS_PER_CONTACT)
    if per_contact != INTERACTIONS_PER_CONTACT:
        parts.append(f"--interactions-per-contact {per_contact}")
    if config.get("before"):
        parts.append(f"--before {config['before']}")
    return " ".join(parts)


def markdown(
    results: dict[str, Any],
    other_runs: list[str] | None = None,
    soak_runs: list[str] | None = None,
    before: dict[str, Any] | None = None,
) -> str:
    config, machine = results["config"], results["machine"]
    engines = ", ".join(ENGINE_NAMES.get(e, e) for e in results["engines"])
    dataset = results["dataset"]
    lines = [
        "# Consentry benchmark results",
        "",
        "What Consentry's protection (policy decision, field encryption, audit event on "
        "every access) costs, measured side by side against a baseline: the same "
        "Litestar + Piccolo + uvicorn stack, the same columns, queries and session check, "
        "with no policy, encryption or audit (`bench/baseline/`). Reproduce with "
        f"`{reproduce_command(results)}` (see `python -m bench --help`).",
        "",
        f"- **Date**: {machine['measured_at']}",
        f"- **Mode**: {results['mode']} — per system {dataset['contacts']:,} contacts, "
        f"{dataset['organizations']:,} organizations, {dataset['deals']:,} deals (one per "
        f"{dataset['contacts_per_deal']} contacts) and {dataset['interactions']:,} "
        f"interactions ({dataset['interactions_per_contact']} per contact); engines: {engines}",
        f"- **Load**: `wrk` 1 thread, {config['connections']} connections, "
        f"{config['duration']:g} s per scenario (after a {config['warmup']:g} s warm-up), "
        f"{config['workers']} uvicorn worker(s) per server; "
        f"whole run {results['wall_seconds']:,} s",
        "",
        f"> The machine has {machine['cores']} cores, shared by the server under test, the "
        "other (idle) server, `wrk` and PostgreSQL — and by other engineers' test suites "
        f"running at the same time ({_load_averages(machine)}). Absolute figures are "
        "therefore modest and somewhat noisy; the ratios, measured minutes apart on the "
        "same machine, are the point.",
        "",
        "## Machine",
        "",
    ]
    lines += _table(
        ["", ""],
        [
            ["CPU", str(machine["cpu"])],
            ["cores", str(machine["cores"])],
            ["memory", f"{machine['memory_gib']} GiB"],
            ["OS", f"{machine['os']} (kernel {machine['kernel']})"],
            ["Python", machine["python"]],
            ["PostgreSQL", machine["postgresql"]],
            ["SQLite", machine["sqlite"]],
            ["load generator", machine["wrk"]],
            ["packages", ", ".join(f"{k} {v}" for k, v in machine["packages"].items())],
        ],
    )
    lines += ["", "## How to read the tables", ""]
    lines += [
        "- Each scenario runs against the baseline, then against Consentry, while both "
        "servers are up; Consentry is driven through its real API after a real login.",
        "- **rps**: requests per second; **p50 / p99**: client-side latency from `wrk` "
        "(loopback included); **server p50 / p99**: durations the servers log for each "
        "request (both write one JSON access-log line per request, as Consentry ships).",
        "- **ratio** = Consentry / baseline: above 1 means Consentry is slower (latency) "
        "or faster (rps).",
        "- Read, update: random contacts from a fixed sample; list: a random page among "
        f"the first {config['list_pages']} (25 per page, with the total count); search: "
        "random known e-mail addresses; create: a unique e-mail each time, linked to a "
        "random organization. The staff user is an admin (record scope: all).",
        "- With several connections on one worker, server-side durations include waiting "
        "for the other requests' turns on the event loop; the extra 'search by e-mail, "
        "1 connection' run (half the duration) measures the service time itself, which the "
        "search latency target uses.",
        "- A scenario with socket errors or any non-2xx response is **flagged**.",
    ]
    for engine, figures in results["engines"].items():
        lines += _engine_section(engine, figures)
    if "micro" in results:
        lines += _micro_section(results["micro"])
    if before is not None:
        lines += before_after_section(results, before)
    lines += ["", "## Targets", ""]
    lines += _table(
        ["target", "engine", "goal", "measured", "status", "missed by", "note"],
        [
            [
                t["target"],
                t["engine"] or "-",
                t["goal"],
                t["measured"],
                _badge(t),
                t.get("gap") or "-",
                t["note"],
            ]
            for t in results["targets"]
        ],
    )
    if other_runs:
        lines += ["", "## Other runs kept here", "", *other_runs]
    lines += ["", *soak_section(soak_runs or [])]
    lines += [
        "",
        "## Notes",
        "",
        "- **Erasure** is the whole `services.erasure.erase` of one person who has a "
        "contact, a deal and their interactions, on the load-tested database. Its first "
        "step scrubs the person's names, e-mail addresses and phone numbers from the free "
        "text of everybody else's records: the mention index (keyed, truncated tokens of "
        "the words, addresses and numbers in free text, docs/dsr.md) names the "
        "candidate records, and only those are decrypted and checked, so the step costs "
        "in proportion to the person's mentions, not to the database. The generated "
        "notes here mention nobody, so the scrub reads few records; `python -m bench "
        "mentions` measures it with planted mentions. The rest (tombstones, key "
        "shredding, bookkeeping) depends only on the person's own records; both are shown.",
        "- **Export** is timed for one extra person given 10,000 interactions after the load "
        "run: `build_export` is the signed ZIP the portal and `consentry dsr export` "
        "produce (its access log query scans the audit log, so it too grows with the "
        "database); `Gateway.export_subject` is reading and decrypting the records alone.",
        "- **Audit sealing**: append figures include a sealer signing a tree head every "
        "250 ms in the same process; 'event to signed head' is measured over the events "
        "written while the server ran, sealed by the one worker holding the sealer lease "
        "(the data load's own events, written before any sealer existed, are left out).",
        "- **Audit append**: a write carries its event in its own transaction (one event "
        "per transaction: the 1-writer and concurrent-writers rows); reads, lists, searches "
        "and denials commit theirs in groups (the concurrent-reads row: every event waiting "
        "in a worker goes into one transaction), which is what the read scenarios pay.",
        "",
        "Raw figures: [`latest.json`](latest.json).",
        "",
    ]
    return "\n".join(lines)


def _load_averages(machine: dict[str, Any]) -> str:
    text = f"1-minute load average {machine['load_average_at_start'][0]} at the start"
    if "load_average_at_end" in machine:
        text += f", {machine['load_average_at_end'][0]} at the end"
    return text


def _badge(target: dict[str, str]) -> str:
    return {MET: "met", NOT_MET: "**not met**", NOT_YET: "not measurable yet"}[target["status"]]


def _engine_section(engine: str, figures: dict[str, Any]) -> list[str]:
    name = ENGINE_NAMES.get(engine, engine)
    load = figures["load"]
    lines = ["", f"## {name}", "", "### Data load", ""]
    tables = list(load["consentry"]["tables"])
    lines += _table(
        ["system", "path", *(f"{t}s/s" for t in tables), "all rows/s", "seconds"],
        [
            [
                system,
                load[system]["path"],
                *(fmt(load[system]["tables"][t]["rows_per_s"], 0) for t in tables),
                fmt(load[system]["rows_per_s"], 0),
                fmt(load[system]["seconds"], 1),
            ]
            for system in ("baseline", "consentry")
        ],
    )
    lines += [
        "",
        f"Batches of {load['batch_size']:,} rows. Consentry's figure includes validation, "
        "a look-up of every referenced record (it must exist and be visible to the loader; "
        "deals and interactions take their contact's subject and key from it), a fresh data "
        "key per contact and organization (wrapped under the master key), field "
        "encryption, blind indexes and one audit event per batch. Each `create_many` call "
        "runs in one write transaction, so its look-ups share the transaction's connection."
        + (
            " After loading, both databases are analysed (`ANALYZE`; `VACUUM ANALYZE` on "
            "PostgreSQL), as autovacuum would soon do: the scenarios run with planner "
            "statistics, not with the plans for empty tables."
            if load.get("analyzed")
            else ""
        ),
        "",
        "### Load scenarios",
        "",
    ]
    rows = []
    for scenario in figures["scenarios"].values():
        b, c, r = scenario["baseline"], scenario["consentry"], scenario["ratio"]
        rows.append(
            [
                scenario["label"] + (" ⚠" if scenario["flagged"] else ""),
                str(scenario["connections"]),
                fmt(b["rps"], 0),
                fmt(c["rps"], 0),
                fmt(r["rps"]),
                fmt(b["p50_ms"]),
                fmt(c["p50_ms"]),
                fmt(r["p50"]),
                fmt(b["p99_ms"]),
                fmt(c["p99_ms"]),
                fmt(r["p99"]),
                f"{fmt(b['server']['p50_ms'])} / {fmt(b['server']['p99_ms'])}",
                f"{fmt(c['server']['p50_ms'])} / {fmt(c['server']['p99_ms'])}",
                str(b["non2xx"] + c["non2xx"]),
            ]
        )
    lines += _table(
        [
            "scenario",
            "connections",
            "baseline rps",
            "Consentry rps",
            "rps ratio",
            "baseline p50 ms",
            "Consentry p50 ms",
            "p50 ratio",
            "baseline p99 ms",
            "Consentry p99 ms",
            "p99 ratio",
            "baseline server p50 / p99 ms",
            "Consentry server p50 / p99 ms",
            "non-2xx",
        ],
        rows,
    )
    flagged = [p for s in figures["scenarios"].values() for p in s["problems"]]
    if flagged:
        lines += ["", "Flagged: " + "; ".join(flagged)]
    append, verify = figures["audit_append"], figures["audit_verify"]
    lines += ["", "### Audit, erasure and export", ""]
    lines += _table(
        ["figure", "value", "what"],
        [
            [
                "audit append, 1 writer",
                f"{append['sequential_events_per_s']:,.0f} events/s",
                append["what"],
            ],
            [
                f"audit append, {append['concurrent_writers']} concurrent writers",
                f"{append['concurrent_events_per_s']:,.0f} events/s",
                "same, from one process",
            ],
            *(
                [
                    [
                        f"audit append, {append['grouped_readers']} concurrent reads",
                        f"{append['grouped_events_per_s']:,.0f} events/s",
                        f"{append['what_grouped']}; "
                        f"{append['grouped_events_per_commit']:,.1f} events per commit",
                    ]
                ]
                if "grouped_events_per_s" in append
                else []
            ),
            [
                "audit verification",
                f"{verify['events_per_s']:,.0f} events/s",
                f"{verify['what']} ({verify['events']:,} events, intact: {verify['ok']})",
            ],
            *_seal_lag_rows(figures.get("seal_lag")),
            *_erasure_rows(figures["erasure"]),
            *_export_rows(figures["export"]),
        ],
    )
    if figures.get("scaling"):
        lines += _scaling_section(figures["scaling"])
    return lines


def _scaling_section(scaling: dict[str, Any]) -> list[str]:
    """Issue 15, item 7: requests/s against worker count, both systems at each count."""
    runs = scaling["runs"]
    first = {system: runs[0][system]["rps"] for system in ("baseline", "consentry")}
    lines = [
        "",
        "### Scaling: reads by id with more workers",
        "",
        f"Both servers restarted with each worker count; {scaling['seconds']:g} s of "
        f"{scaling['scenario']} each, {CONNECTIONS_PER_WORKER} `wrk` connections per worker. "
        "'x of 1 worker' is each system's requests/s over its own one-worker figure: if "
        "audit serialised the deployment, Consentry's would stay near 1 while the "
        "baseline's rose. The machine's core count caps both curves.",
        "",
    ]
    rows = []
    for run in runs:
        b, c, r = run["baseline"], run["consentry"], run["ratio"]
        rows.append(
            [
                str(run["workers"]) + (" ⚠" if run["flagged"] else ""),
                str(run["connections"]),
                fmt(b["rps"], 0),
                fmt(b["rps"] / first["baseline"] if first["baseline"] else None),
                fmt(c["rps"], 0),
                fmt(c["rps"] / first["consentry"] if first["consentry"] else None),
                fmt(r["rps"]),
                fmt(r["p50"]),
                fmt(r["p99"]),
            ]
        )
    lines += _table(
        [
            "workers",
            "connections",
            "baseline rps",
            "baseline x of 1 worker",
            "Consentry rps",
            "Consentry x of 1 worker",
            "rps ratio",
            "p50 ratio",
            "p99 ratio",
        ],
        rows,
    )
    flagged = [p for run in runs for p in run["problems"]]
    if flagged:
        lines += ["", "Flagged: " + "; ".join(flagged)]
    return lines


def _ms(summary: dict[str, Any]) -> str:
    return f"{summary['median_ms']:,.1f} ms median, {summary['p95_ms']:,.1f} ms p95"


def _erasure_rows(erasure: dict[str, Any]) -> list[list[str]]:
    scrub = erasure["mention_scrub"]
    held = ", ".join(f"{r} {n:g}" for r, n in erasure["records_per_subject"].items())
    return [
        [
            "erasure of one person",
            _ms(erasure["total"]),
            f"{erasure['what']} ({erasure['total']['samples']} people; erased each: {held})",
        ],
        [
            "- of which mention scrub",
            _ms(scrub),
            f"decrypts and checks the free text of {scrub['rows_scanned']:,} other records "
            f"({scrub['rows_per_s']:,.0f} rows/s): the mention index's candidates",
        ],
        [
            "- without mention scrub",
            _ms(erasure["without_mention_scrub"]),
            "tombstones, key shredding, job state, audit events",
        ],
    ]


def _export_rows(export: dict[str, Any]) -> list[list[str]]:
    n = export["interactions"]
    return [
        [
            f"subject export, {n:,} interactions",
            _ms(export["build_export"]),
            f"build_export: the signed ZIP ({export['records']:,} records, "
            f"{export['zip_bytes'] / 1e6:,.1f} MB)",
        ],
        [
            f"Gateway.export_subject, {n:,} interactions",
            _ms(export["export_subject"]),
            "reading and decrypting the person's records only",
        ],
    ]


def _seal_lag_rows(lag: dict[str, Any] | None) -> list[list[str]]:
    if not lag or not lag.get("samples"):
        return []
    return [
        [
            "event to signed head",
            f"{lag['median_ms']:.0f} ms median, {lag['p95_ms']:.0f} ms p95, "
            f"{lag['max_ms']:.0f} ms max",
            f"{lag['what']} ({lag['events']:,} events, {lag['heads']:,} heads, "
            f"{lag['unsealed_at_stop']} unsealed at stop)",
        ]
    ]


def _micro_section(micro: dict[str, Any]) -> list[str]:
    crypto, index, policy = micro["field_crypto"], micro["blind_index"], micro["policy"]
    lines = ["", "## Micro-figures (in-process, median)", ""]
    rows = [
        ["field encrypt + decrypt", f"{crypto['encrypt_decrypt_us']:.2f} µs", crypto["what"]],
        ["field encrypt", f"{crypto['encrypt_us']:.2f} µs", ""],
        ["field decrypt", f"{crypto['decrypt_us']:.2f} µs", ""],
        *(
            [
                [
                    "field encrypt + decrypt, a cipher per field",
                    f"{crypto['encrypt_decrypt_new_cipher_us']:.2f} µs",
                    "the same with the AES key schedule run for every field (before)",
                ],
                [
                    "AES-GCM alone (encrypt + decrypt)",
                    f"{crypto['aead_only_us']:.2f} µs",
                    "nonce, encrypt and decrypt only: what the envelope (text form, "
                    "base64, version) adds is the rest",
                ],
            ]
            if "aead_only_us" in crypto
            else []
        ),
        [
            "blind index (HMAC)",
            f"{index['blind_index_us']:.2f} µs",
            f"{index['width_bits']}-bit token",
        ],
        [
            "e-mail normalisation",
            f"{index['normalize_email_us']:.2f} µs",
            "email-validator, before every index token",
        ],
    ]
    for label in ("shipped", "10000_rules"):
        p = policy[label]
        title = f"{p['rules']:,} rules" + (" (shipped policy)" if label == "shipped" else "")
        rows += [
            [
                f"policy decision, uncached, {title}",
                f"admin {p['uncached_admin_us']:,.1f} µs, sales {p['uncached_sales_us']:,.1f} µs",
                "PolicyEngine._decide_uncached",
            ],
            [
                f"policy decision, cached, {title}",
                f"admin {p['cached_admin_us']:.2f} µs, sales {p['cached_sales_us']:.2f} µs",
                "PolicyEngine.decide (lru_cache hit)",
            ],
            [
                f"one Casbin enforce, {title}",
                f"{p.get('allows_uncached_us', p['allows_us']):,.1f} µs uncached, "
                f"{p['allows_us']:,.2f} µs cached",
                "PolicyEngine.allows (cached per role/object/action since the rules are fixed); "
                "Gateway.default_purpose calls it on every request",
            ],
        ]
    lines += _table(["figure", "value", "what"], rows)
    return lines


def soak_section(runs: list[str]) -> list[str]:
    """The 'Soak' section: what ``python -m bench soak`` is for, and the runs kept here."""
    return [
        "## Soak",
        "",
        "`python -m bench soak` drives a realistic staff mix (sales reps signed in once: "
        "reads, filtered lists, e-mail searches, creates, updates, 360 pages) against "
        "Consentry for minutes on end and samples each worker's memory, the database "
        "connections and audit sealing every 10 seconds; it then runs `consentry audit "
        "verify`. Its targets (memory growth, p99 drift, no non-2xx, sealing within 1 s, "
        "verification) are explained in [SOAK.md](SOAK.md).",
        "",
        *(
            runs
            or [
                "No soak run is kept here yet: the documented run is `python -m bench soak "
                "--minutes 60` (see [SOAK.md](SOAK.md))."
            ]
        ),
    ]


def other_runs(out: Path) -> list[str]:
    """One line per earlier run kept in a subdirectory of ``out`` (e.g. a 1,000,000 run)."""
    lines = []
    for path in sorted(out.glob("*/latest.json")):
        try:
            run = json.loads(path.read_text())
            engines = ", ".join(ENGINE_NAMES.get(e, e) for e in run["engines"])
            lines.append(
                f"- [{path.parent.name}]({path.parent.name}/RESULTS.md): {run['mode']} mode, "
                f"{run['config']['contacts']:,} contacts, {engines}, "
                f"{run['machine']['measured_at']}"
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a run of this benchmark: ignore it
    return lines


def before_after_section(results: dict[str, Any], before: dict[str, Any]) -> list[str]:
    """This run beside an earlier one: the issue asks for ratios, so ratios are compared.

    Each run's ratios come from that run alone (Consentry and the baseline minutes apart on
    the same machine); comparing absolute figures across runs would compare machine load.
    """
    lines = [
        "",
        "## Before and after",
        "",
        f"Compared with the run of {before['machine']['measured_at']} "
        f"(`{results['config']['before']}`; {before['mode']} mode, "
        f"{before['config']['contacts']:,} contacts). Each ratio is Consentry / baseline "
        "within one run; lower is better.",
        "",
    ]
    rows = []
    for engine, figures in results["engines"].items():
        earlier = before.get("engines", {}).get(engine, {}).get("scenarios", {})
        for key, now in figures.get("scenarios", {}).items():
            then = earlier.get(key)
            rows.append(
                [
                    now["label"],
                    ENGINE_NAMES.get(engine, engine),
                    _ratio(then, "p50"),
                    _ratio(now, "p50"),
                    _ratio(then, "p99"),
                    _ratio(now, "p99"),
                    _ratio(then, "server_p99"),
                    _ratio(now, "server_p99"),
                ]
            )
    lines += _table(
        [
            "scenario",
            "engine",
            "p50 before",
            "p50 after",
            "p99 before",
            "p99 after",
            "server p99 before",
            "server p99 after",
        ],
        rows,
    )
    earlier_targets = {(t["target"], t["engine"]): t for t in before.get("targets", [])}
    target_rows = []
    for target in results["targets"]:
        then = earlier_targets.get((target["target"], target["engine"]))
        target_rows.append(
            [
                target["target"],
                target["engine"] or "-",
                then["measured"] if then else "(not measured)",
                target["measured"],
                target["goal"],
                _badge(target),
            ]
        )
    lines += ["", *_table(["target", "engine", "before", "after", "goal", "now"], target_rows)]
    return lines


def _ratio(scenario: dict[str, Any] | None, which: str) -> str:
    if not scenario or scenario.get("ratio", {}).get(which) is None:
        return "-"
    return f"{scenario['ratio'][which]:.2f}x"


def _earlier_run(results: dict[str, Any]) -> dict[str, Any] | None:
    path = results["config"].get("before")
    if not path:
        return None
    try:
        run: dict[str, Any] = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None  # checked when the run started; a file gone since only loses the table
    return run


def write_results(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "latest.json", out / "RESULTS.md"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")
    md_path.write_text(
        markdown(results, other_runs(out), soak_report.soak_runs(out), _earlier_run(results))
    )
    return json_path, md_path
