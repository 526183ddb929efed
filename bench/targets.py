"""Issue 15's targets (and the earlier benchmark's), judged from one run's figures.

They are goals, not assertions: the run never fails because one is missed; the results
page says where each one stands, by how much a missed one is missed, and says plainly
when something cannot be measured yet.
"""

from __future__ import annotations

from typing import Any

MET, NOT_MET, NOT_YET = "met", "not met", "not measurable yet"
ENGINE_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
SEARCH_TARGET_CONTACTS = 1_000_000


def fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _status(ok: bool) -> str:
    return MET if ok else NOT_MET


def _target(
    target: str,
    goal: str,
    measured: str,
    status: str,
    note: str = "",
    engine: str = "",
    *,
    gap: str = "",
) -> dict[str, str]:
    return {
        "target": target,
        "engine": engine,
        "goal": goal,
        "measured": measured,
        "status": status,
        "note": note,
        "gap": gap if status == NOT_MET else "",
    }


def _over(value: float | None, limit: float) -> str:
    """How far a figure that must stay under ``limit`` is above it, for a missed target."""
    if value is None or value <= limit:
        return ""
    return f"{value / limit - 1:.0%} over"


def _short(value: float, floor: float) -> str:
    """How far a figure that must reach ``floor`` falls short of it."""
    return f"needs {floor / value:,.1f}x" if 0 < value < floor else ""


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    contacts = int(results["config"]["contacts"])
    for engine, figures in results["engines"].items():
        name = ENGINE_NAMES.get(engine, engine)
        scenarios = figures["scenarios"]
        # Issue 15: reads, lists and searches within 25% at p50 and 2x at p99; writes 50%.
        for key, goal, tail_goal in (
            ("read", 1.25, 2.0),
            ("list", 1.25, 2.0),
            ("search", 1.25, 2.0),
            ("create", 1.5, None),
            ("update", 1.5, None),
        ):
            ratio = scenarios[key]["ratio"]["p50"]
            tail = scenarios[key]["ratio"]["p99"]
            flagged = " (scenario flagged: errors)" if scenarios[key]["flagged"] else ""
            out.append(
                _target(
                    f"{scenarios[key]['label']}: Consentry p50 / baseline p50",
                    f"<= {goal}x",
                    f"{fmt(ratio)}x (at p99: {fmt(tail)}x)",
                    _status(ratio is not None and ratio <= goal) if not flagged else NOT_MET,
                    f"client-side (wrk) p50{flagged}",
                    name,
                    gap=_over(ratio, goal),
                )
            )
            if tail_goal is not None:
                out.append(
                    _target(
                        f"{scenarios[key]['label']}: Consentry p99 / baseline p99",
                        f"<= {tail_goal:g}x",
                        f"{fmt(tail)}x",
                        _status(tail is not None and tail <= tail_goal) if not flagged else NOT_MET,
                        f"client-side (wrk) p99{flagged}",
                        name,
                        gap=_over(tail, tail_goal),
                    )
                )
        unloaded = scenarios.get("search_1c", scenarios["search"])
        search = unloaded["consentry"]["server"]["p99_ms"]
        how = f"{unloaded['connections']} connection(s); server-side duration"
        if contacts >= SEARCH_TARGET_CONTACTS:
            status, note = _status(search < 10), f"over {contacts:,} contacts, {how}"
        else:
            status = NOT_YET
            note = (
                f"{how}; this run had {contacts:,} contacts, the target is for "
                f"{SEARCH_TARGET_CONTACTS:,} (run with --contacts {SEARCH_TARGET_CONTACTS})"
            )
        out.append(
            _target(
                "Search by e-mail p99, server-side",
                "< 10 ms over 1,000,000 contacts",
                f"{search:.2f} ms",
                status,
                note,
                name,
            )
        )
        append = figures["audit_append"]
        best = max(
            append["sequential_events_per_s"],
            append["concurrent_events_per_s"],
            append.get("grouped_events_per_s", 0.0),  # runs from before group commit lack it
        )
        if engine == "postgres":
            out.append(
                _target(
                    "Audit append throughput",
                    ">= 10,000 events/s",  # issue 15's target, concurrent writers
                    f"{best:,.0f} events/s",
                    _status(best >= 10_000),
                    "best of one event per transaction and grouped (reads); sealed every 250 ms",
                    name,
                    gap=_short(best, 10_000),
                )
            )
        lag = figures.get("seal_lag")
        if lag and lag.get("samples"):
            out.append(
                _target(
                    "Every event under a signed head within 1 s (p95)",
                    "<= 1 s",
                    f"{lag['p95_ms'] / 1000:.2f} s p95 ({lag['max_ms'] / 1000:.2f} s max)",
                    _status(lag["p95_ms"] <= 1000),
                    f"{lag['events']:,} events, {lag['heads']:,} signed heads during the load",
                    name,
                    gap=_over(lag["p95_ms"], 1000),
                )
            )
        verify = figures["audit_verify"]["events_per_s"]
        out.append(
            _target(
                "Audit verification rate",
                ">= 500,000 events/s",
                f"{verify:,.0f} events/s",
                _status(verify >= 500_000),
                f"chain, Merkle tree and heads of {figures['audit_verify']['events']:,} events",
                name,
                gap=_short(verify, 500_000),
            )
        )
        out += _erasure_targets(figures["erasure"], name)
        out += _export_targets(figures["export"], name)
    if "micro" in results:
        micro = results["micro"]
        crypto = micro["field_crypto"]["encrypt_decrypt_us"]
        out.append(
            _target(
                "Field encrypt+decrypt",
                "<= 5 µs",
                f"{crypto:.2f} µs",
                _status(crypto <= 5),
                gap=_over(crypto, 5),
            )
        )
        large = micro["policy"]["10000_rules"]
        uncached = max(large["uncached_admin_us"], large["uncached_sales_us"])
        cached = max(large["cached_admin_us"], large["cached_sales_us"])
        out.append(
            _target(
                "Policy decision, 10,000 rules, uncached",
                "<= 100 µs median",
                f"{uncached:,.1f} µs",
                _status(uncached <= 100),
                "worst of admin/sales contact-read; a cache miss (first request per "
                "role/resource/action/purpose in a worker)",
                gap=_over(uncached, 100),
            )
        )
        out.append(
            _target(
                "Policy decision, 10,000 rules, cached",
                "<= 100 µs median",
                f"{cached:,.2f} µs",
                _status(cached <= 100),
                "what every request after the first pays for decide()",
            )
        )
    return out


def _erasure_targets(erasure: dict[str, Any], engine: str) -> list[dict[str, str]]:
    total, scrub = erasure["total"], erasure["mention_scrub"]
    rest = erasure["without_mention_scrub"]
    held = ", ".join(f"{r} {n:g}" for r, n in erasure["records_per_subject"].items())
    return [
        _target(
            "Erasure of one person",
            "< 100 ms",
            f"{total['median_ms']:,.1f} ms median",
            _status(total["median_ms"] < 100),
            f"services.erasure.erase, {total['samples']} people ({held} each); includes "
            f"scrubbing mentions from {scrub['rows_scanned']:,} other records "
            f"({scrub['median_ms']:,.1f} ms): the mention index's candidates",
            engine,
            gap=_over(total["median_ms"], 100),
        ),
        _target(
            "Erasure of one person, without the mention scrub",
            "< 100 ms",
            f"{rest['median_ms']:,.1f} ms median",
            _status(rest["median_ms"] < 100),
            "tombstones, key shredding, job bookkeeping and audit: the part that depends "
            "on the person's own records only",
            engine,
            gap=_over(rest["median_ms"], 100),
        ),
    ]


def _export_targets(export: dict[str, Any], engine: str) -> list[dict[str, str]]:
    n = export["interactions"]
    out = []
    for key, label, what in (
        ("build_export", "signed ZIP", "build_export: records, consent, access log, files"),
        ("export_subject", "records only", "Gateway.export_subject: read and decrypt"),
    ):
        median = export[key]["median_ms"]
        out.append(
            _target(
                f"Export of a subject with {n:,} interactions ({label})",
                "< 1 s",
                f"{median / 1000:,.2f} s median",
                _status(median < 1000),
                f"{what}; {export[key]['samples']} run(s)",
                engine,
                gap=_over(median, 1000),
            )
        )
    return out
