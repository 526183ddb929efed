"""The pure arithmetic of a soak run: latencies per minute, RSS growth, the targets.

Nothing here touches a server, a database or the clock, so it is unit-tested directly
(``tests/bench/test_bench_soak.py``). Percentiles are nearest-rank (``bench.results_model``), as
everywhere else in the bench. The targets are the issue's; they are evaluated here, in
the bench report, and never asserted in a timed test.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from bench.results_model import percentile

WARMUP_S = 120.0  # RSS growth and p99 stability are judged after a 2-minute warm-up
RSS_GROWTH_MAX_PCT = 10.0
P99_DRIFT_MAX = 1.25
REFERENCE_MINUTES = (2, 8)  # minutes 3-8 of the run (0-based, end exclusive)
LAST_MINUTES = 5
MIN_MINUTES_FOR_DRIFT = 13  # minutes 3-8 and the last 5 do not overlap from here on
SEAL_LAG_P95_MAX_MS = 1000.0

MET, NOT_MET, TOO_SHORT = "met", "not met", "needs a longer run"


class Request(NamedTuple):
    at_s: float  # seconds since the measured run started, when the request was sent
    op: str
    ms: float
    status: int  # 0: no answer (connection error or timeout)


def is_2xx(status: int) -> bool:
    return 200 <= status <= 299


def latency_summary(latencies: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(list(latencies), 50), 3),
        "p95_ms": round(percentile(list(latencies), 95), 3),
        "p99_ms": round(percentile(list(latencies), 99), 3),
    }


def per_minute(requests: Iterable[Request], minutes: int) -> list[dict[str, Any]]:
    """One row per minute of the run (``minutes`` rows, empty ones included):
    requests, non-2xx answers, p50/p95/p99 of the requests *sent* in that minute."""
    buckets: list[list[float]] = [[] for _ in range(minutes)]
    bad = [0] * minutes
    for request in requests:
        minute = int(request.at_s // 60)
        if not 0 <= minute < minutes:
            continue  # sent after the deadline (the last in-flight requests): ignored
        buckets[minute].append(request.ms)
        if not is_2xx(request.status):
            bad[minute] += 1
    return [
        {"minute": i + 1, "requests": len(b), "non2xx": bad[i], **latency_summary(b)}
        for i, b in enumerate(buckets)
    ]


def per_minute_by_operation(
    requests: Iterable[Request], minutes: int, operations: Sequence[str]
) -> dict[str, list[dict[str, Any]]]:
    """``per_minute`` for each operation on its own: a step in the whole run's latency is
    only explained once it is known which operations stepped, and when."""
    mine: dict[str, list[Request]] = {op: [] for op in operations}
    for request in requests:
        mine.setdefault(request.op, []).append(request)
    return {op: per_minute(rows, minutes) for op, rows in mine.items()}


def table_events(samples: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """When PostgreSQL's autovacuum or autoanalyze ran on a table during the run, from the
    cumulative counters in the 10-second samples: a plan change after an autoanalyze, or
    dead tuples piling up before an autovacuum, shows as a latency step at that time."""
    events: list[dict[str, Any]] = []
    before: dict[str, dict[str, int]] = {}
    for sample in samples:
        for table, now in (sample.get("tables") or {}).items():
            was = before.get(table)
            if was is not None:
                for kind in ("autovacuum", "autoanalyze"):
                    if now[kind] > was[kind]:
                        events.append(
                            {
                                "at_s": sample["at_s"],
                                "table": table,
                                "kind": kind,
                                "live": now["live"],
                                "dead_before": was["dead"],
                            }
                        )
            before[table] = now
    return events


def window(requests: Sequence[Request], start_s: float, end_s: float) -> dict[str, Any]:
    """Requests sent in ``[start_s, end_s)``: count, non-2xx and percentiles."""
    inside = [r for r in requests if start_s <= r.at_s < end_s]
    return {
        "requests": len(inside),
        "non2xx": sum(1 for r in inside if not is_2xx(r.status)),
        **latency_summary([r.ms for r in inside]),
    }


def p99_between(requests: Sequence[Request], start_s: float, end_s: float) -> float:
    """p99 over every request sent in ``[start_s, end_s)``, pooled."""
    return percentile([r.ms for r in requests if start_s <= r.at_s < end_s], 99)


def p99_drift(requests: Sequence[Request], minutes: int) -> dict[str, Any]:
    """p99 of the last 5 minutes over p99 of minutes 3-8.

    From 13 minutes on the two spans do not overlap and the target can be judged. A
    shorter run is compared as well as it can be (the time after the warm-up, or the
    whole run if less than two minutes follow the warm-up, split into an early and a
    late half) and marked as needing a longer run.
    """
    end = minutes * 60.0
    if minutes >= MIN_MINUTES_FOR_DRIFT:
        reference = (REFERENCE_MINUTES[0] * 60.0, REFERENCE_MINUTES[1] * 60.0)
        late = (end - LAST_MINUTES * 60.0, end)
        judged = True
    else:
        start = WARMUP_S if end - WARMUP_S >= 120 else 0.0
        middle = (start + end) / 2
        reference, late = (start, middle), (middle, end)
        judged = False
    ref_p99 = p99_between(requests, *reference)
    late_p99 = p99_between(requests, *late)
    ratio = late_p99 / ref_p99 if ref_p99 > 0 else None
    if not judged:
        status = TOO_SHORT
    elif ratio is None:
        status = NOT_MET  # no requests in minutes 3-8: nothing was served
    else:
        status = MET if ratio <= P99_DRIFT_MAX else NOT_MET
    return {
        "reference_s": list(reference),
        "late_s": list(late),
        "reference_p99_ms": round(ref_p99, 3),
        "late_p99_ms": round(late_p99, 3),
        "ratio": round(ratio, 3) if ratio is not None else None,
        "status": status,
    }


def span_label(span: Sequence[float]) -> str:
    """``[120, 480]`` seconds as 'minutes 3-8' (whole minutes), else as 'm:ss-m:ss'."""
    first, last = span
    if first % 60 == 0 and last % 60 == 0:
        if last - first == 60:
            return f"minute {int(last // 60)}"
        return f"minutes {int(first // 60) + 1}-{int(last // 60)}"
    return f"{_clock(first)}-{_clock(last)}"


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def rss_growth(samples: Sequence[dict[str, Any]], warmup_s: float = WARMUP_S) -> dict[str, Any]:
    """Growth of each worker's resident memory after the warm-up.

    ``samples`` are the 10-second samples (``at_s`` and ``rss_kb``: worker label to KiB).
    A worker's start is the median of its samples in the first minute after the warm-up,
    its end the median of its samples in the run's last minute (medians, so that one
    sample taken mid-request does not decide; a quarter of the span instead of a minute
    when less than four minutes are measured, so that start and end never overlap). A run
    ending less than a minute after the warm-up is measured from its first sample and
    marked as needing a longer run.
    """
    if not samples:
        return {"workers": {}, "worst_pct": None, "from_s": None, "status": TOO_SHORT}
    last_at = max(s["at_s"] for s in samples)
    after = [s for s in samples if s["at_s"] >= warmup_s]
    judged = bool(after) and last_at - warmup_s >= 60
    usable = after if judged else list(samples)
    from_s = usable[0]["at_s"]
    workers: dict[str, dict[str, Any]] = {}
    names = sorted({w for s in usable for w in s["rss_kb"]})
    for name in names:
        points = [(s["at_s"], s["rss_kb"][name]) for s in usable if name in s["rss_kb"]]
        if not points:
            continue
        first_at, last = points[0][0], points[-1][0]
        span = min(60.0, (last - first_at) / 4)  # short runs: ends must not overlap
        head = [kb for at, kb in points if at <= first_at + span]
        tail = [kb for at, kb in points if at >= last - span]
        start_kb, end_kb = statistics.median(head), statistics.median(tail)
        workers[name] = {
            "start_kb": round(start_kb),
            "end_kb": round(end_kb),
            "max_kb": max(kb for _, kb in points),
            "growth_pct": round(100 * (end_kb - start_kb) / start_kb, 2) if start_kb else None,
        }
    growths = [w["growth_pct"] for w in workers.values() if w["growth_pct"] is not None]
    worst = max(growths) if growths else None
    if not judged:
        status = TOO_SHORT
    elif worst is None:
        status = NOT_MET
    else:
        status = MET if worst < RSS_GROWTH_MAX_PCT else NOT_MET
    return {"workers": workers, "worst_pct": worst, "from_s": from_s, "status": status}


def _target(name: str, goal: str, measured: str, status: str, note: str = "") -> dict[str, str]:
    return {"target": name, "goal": goal, "measured": measured, "status": status, "note": note}


def evaluate(run: dict[str, Any]) -> list[dict[str, str]]:
    """The soak targets from a run's figures (the ``soak.json`` document, or a part of it
    with ``minutes``, ``rss``, ``p99_drift``, ``totals``, ``seal_lag``, ``unsealed`` and
    ``audit_verify``)."""
    targets = []
    rss = run["rss"]
    worst = rss["worst_pct"]
    note = ""
    if rss["from_s"] is None:
        note = "no samples"
    elif rss["status"] == TOO_SHORT:
        note = (
            "the run ends less than a minute after the warm-up; measured from "
            f"{rss['from_s']:.0f} s instead"
        )
    targets.append(
        _target(
            "RSS per worker grows less than 10 % after a 2-minute warm-up",
            f"< {RSS_GROWTH_MAX_PCT:.0f} %",
            "-" if worst is None else f"{worst:+.1f} % (worst worker)",
            rss["status"],
            note,
        )
    )
    drift = run["p99_drift"]
    ratio = drift["ratio"]
    targets.append(
        _target(
            "p99 of the last 5 minutes within 1.25x of p99 in minutes 3-8",
            f"<= {P99_DRIFT_MAX}x",
            ("-" if ratio is None else f"{ratio:.2f}x")
            + f" ({drift['late_p99_ms']:.1f} ms in {span_label(drift['late_s'])} vs "
            f"{drift['reference_p99_ms']:.1f} ms in {span_label(drift['reference_s'])})",
            drift["status"],
            ""
            if drift["status"] != TOO_SHORT
            else f"needs at least {MIN_MINUTES_FOR_DRIFT} minutes; this {run['minutes']}-minute "
            "run compares the early and late halves of what it has (m:ss into the run)",
        )
    )
    totals = run["totals"]
    targets.append(
        _target(
            "No non-2xx answers",
            "0",
            f"{totals['non2xx']:,} of {totals['requests']:,}",
            MET if totals["non2xx"] == 0 and totals["requests"] > 0 else NOT_MET,
            ", ".join(f"{k}: {v}" for k, v in sorted(totals.get("bad_statuses", {}).items())),
        )
    )
    lag = run["seal_lag"]
    unsealed = run["unsealed"]
    overdue = lag.get("unsealed_at_stop_overdue", 0)
    if lag.get("events"):
        p95 = lag["p95_ms"]
        status = MET if p95 <= SEAL_LAG_P95_MAX_MS and not overdue else NOT_MET
        measured = f"{p95 / 1000:.2f} s p95 ({lag['max_ms'] / 1000:.2f} s max)"
    else:
        status, measured = NOT_MET, "no events"
    at_stop = lag.get("unsealed_at_stop", 0)
    stop_note = (
        f"{at_stop} unsealed when the server stopped (oldest written "
        f"{lag.get('unsealed_at_stop_oldest_s', 0):.2f} s before; {overdue} older than 1 s)"
        if at_stop
        else "none unsealed when the server stopped"
    )
    targets.append(
        _target(
            "Every event under a signed head within 1 s (p95)",
            "<= 1 s",
            measured,
            status,
            f"{lag.get('events', 0):,} events written during the run, {stop_note}; unsealed "
            f"events in the 10-second samples: median {unsealed['median']}, "
            f"max {unsealed['max']}",
        )
    )
    verify = run["audit_verify"]
    targets.append(
        _target(
            "`consentry audit verify` passes after the run",
            "exit 0",
            f"exit {verify['exit_code']}",
            MET if verify["exit_code"] == 0 else NOT_MET,
            verify.get("summary", ""),
        )
    )
    return targets


def unsealed_summary(samples: Sequence[dict[str, Any]]) -> dict[str, int | None]:
    values = [s["unsealed_events"] for s in samples if s.get("unsealed_events") is not None]
    if not values:
        return {"median": None, "max": None}
    return {"median": round(statistics.median(values)), "max": max(values)}
