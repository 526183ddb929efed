"""Writing a soak run: ``soak.json``, two charts and ``SOAK.md``; and the list of soak
runs that ``bench/results/RESULTS.md`` links to."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.soak_stats import MET, WARMUP_S

ENGINE_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
OPERATIONS = {
    "read": "read contact by id",
    "list": "filtered list (lifecycle stage, 25 a page)",
    "search": "search by e-mail",
    "create": "create contact",
    "update": "update contact",
    "page360": "customer 360 page (admin UI)",
}


def write(result: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "soak.json"
    json_path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    rss_png, latency_png = out / "rss.png", out / "latency.png"
    rss_chart(result, rss_png)
    latency_chart(result, latency_png)
    md_path = out / "SOAK.md"
    md_path.write_text(markdown(result))
    return [json_path, rss_png, latency_png, md_path]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    return plt


def rss_chart(result: dict[str, Any], path: Path) -> None:
    plt = _pyplot()
    samples = result["samples"]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    workers = sorted({w for s in samples for w in s["rss_kb"]})
    for n, worker in enumerate(workers, 1):
        points = [
            (s["at_s"] / 60, s["rss_kb"][worker] / 1024) for s in samples if worker in s["rss_kb"]
        ]
        ax.plot(*zip(*points, strict=True), marker=".", label=f"worker {n} ({worker})")
    ax.axvspan(0, min(WARMUP_S / 60, result["minutes"]), color="0.9", label="warm-up")
    ax.set_xlabel("minutes into the run")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(_title(result, "RSS per uvicorn worker, sampled every 10 s"))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def latency_chart(result: dict[str, Any], path: Path) -> None:
    """p50/p95/p99 of each minute (drawn mid-minute) and, faintly, the p99 of each
    10-second sample, against minutes into the run (the RSS chart's axis)."""
    plt = _pyplot()
    rows = [m for m in result["per_minute"] if m["requests"]]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    windows = [s for s in result["samples"] if s["last_10s"]["requests"]]
    ax.plot(
        [(s["at_s"] - 5) / 60 for s in windows],
        [s["last_10s"]["p99_ms"] for s in windows],
        color="0.6",
        linewidth=0.8,
        label="p99 of each 10 s",
    )
    middle = [m["minute"] - 0.5 for m in rows]
    for key, label in (("p50_ms", "p50"), ("p95_ms", "p95"), ("p99_ms", "p99")):
        ax.plot(middle, [m[key] for m in rows], marker="o", label=f"{label} per minute")
    bad = [m for m in rows if m["non2xx"]]
    if bad:
        ax.scatter(
            [m["minute"] - 0.5 for m in bad],
            [m["p99_ms"] for m in bad],
            marker="x",
            color="red",
            s=80,
            zorder=3,
            label="minute with non-2xx",
        )
    ax.set_xlabel("minutes into the run (requests by the time they were sent)")
    ax.set_ylabel("client-side latency (ms)")
    ax.set_xlim(0, result["minutes"])
    ax.set_ylim(bottom=0)
    ax.set_title(_title(result, "latency, all operations"))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _title(result: dict[str, Any], what: str) -> str:
    c = result["config"]
    return (
        f"Consentry soak, {ENGINE_NAMES[c['engine']]}, {c['workers']} workers, "
        f"{c['users']} users: {what}"
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _badge(status: str) -> str:
    return status if status == MET else f"**{status}**"


def command(result: dict[str, Any]) -> str:
    c = result["config"]
    return (
        f"python -m bench soak --minutes {c['minutes']} --engine {c['engine']} "
        f"--workers {c['workers']} --users {c['users']} --contacts {c['contacts']} "
        f"--think-ms {c['think_ms']:g}"
    )


def markdown(result: dict[str, Any]) -> str:
    c, m, t = result["config"], result["machine"], result["totals"]
    d = result["dataset"]
    version = m["postgresql"] if c["engine"] == "postgres" else m["sqlite"]
    lines = [
        f"# Consentry soak: {ENGINE_NAMES[c['engine']]}, {result['minutes']} "
        + ("minute" if result["minutes"] == 1 else "minutes"),
        "",
        f"- **Date**: {m['measured_at']}; whole run {result['wall_seconds']:,.0f} s "
        f"(load average {m['load_average_at_start'][0]} at the start, "
        f"{m['load_average_at_end'][0]} at the end; {m['cores']} cores shared with others)",
        f"- **Command**: `{command(result)}`",
        f"- **Server**: `consentry serve --workers {c['workers']}` on 127.0.0.1, "
        f"{ENGINE_NAMES[c['engine']]} {version}".rstrip(),
        f"- **Data**: {d['contacts']:,} contacts, {d['organizations']:,} organizations, "
        f"{d['deals']:,} deals, {d['interactions']:,} interactions, shared out among "
        f"{c['users']} sales reps by organization (loaded in {d.get('load_seconds', 0):,.0f} s)",
        f"- **Load**: {c['users']} simulated sales reps, each signed in once, one connection "
        f"each, a pause of 0-{2 * c['think_ms']:g} ms between requests; mix "
        + ", ".join(f"{p} % {OPERATIONS[op]}" for op, p in c["mix_percent"].items()),
        f"- **Served**: {t['requests']:,} requests ({t['rps']:,.1f}/s), p50 {t['p50_ms']:.1f} ms,"
        f" p95 {t['p95_ms']:.1f} ms, p99 {t['p99_ms']:.1f} ms, {t['non2xx']:,} non-2xx",
        "",
        "Only Consentry is driven: the baseline server of `python -m bench` has no sign-in "
        "endpoint, no roles and no 360 page to share this mix with.",
        "",
        "## Targets",
        "",
    ]
    lines += _table(
        ["target", "goal", "measured", "status", "note"],
        [
            [x["target"], x["goal"], x["measured"], _badge(x["status"]), x["note"]]
            for x in result["targets"]
        ],
    )
    lines += ["", "## Resident memory per worker", "", "![RSS per worker](rss.png)", ""]
    rss = result["rss"]
    lines += _table(
        ["worker", "start MiB", "end MiB", "max MiB", "growth"],
        [
            [
                name,
                f"{w['start_kb'] / 1024:.1f}",
                f"{w['end_kb'] / 1024:.1f}",
                f"{w['max_kb'] / 1024:.1f}",
                "-" if w["growth_pct"] is None else f"{w['growth_pct']:+.1f} %",
            ]
            for name, w in rss["workers"].items()
        ],
    )
    lines += [
        "",
        f"Start: median of the worker's samples in the first minute from {rss['from_s']} s; "
        "end: median of its samples in the run's last minute (a quarter of the measured "
        "span instead of a minute when it is shorter than four minutes).",
        "",
        "## Latency per minute",
        "",
        "![p50/p95/p99 per minute](latency.png)",
        "",
    ]
    lines += _table(
        ["minute", "requests", "p50 ms", "p95 ms", "p99 ms", "non-2xx"],
        [
            [
                str(x["minute"]),
                f"{x['requests']:,}",
                f"{x['p50_ms']:.1f}",
                f"{x['p95_ms']:.1f}",
                f"{x['p99_ms']:.1f}",
                str(x["non2xx"]),
            ]
            for x in result["per_minute"]
        ],
    )
    lines += ["", "## By operation", ""]
    lines += _table(
        ["operation", "requests", "p50 ms", "p95 ms", "p99 ms", "non-2xx"],
        [
            [
                OPERATIONS[op],
                f"{x['requests']:,}",
                f"{x['p50_ms']:.1f}",
                f"{x['p95_ms']:.1f}",
                f"{x['p99_ms']:.1f}",
                str(x["non2xx"]),
            ]
            for op, x in result["by_operation"].items()
        ],
    )
    lines += by_operation_per_minute(result)
    conns = [s["pg_connections"] for s in result["samples"] if s["pg_connections"] is not None]
    lag = result["seal_lag"]
    lines += [
        "",
        "## Database and audit",
        "",
        "- PostgreSQL connections to Consentry's database (10-second samples): "
        + (f"min {min(conns)}, max {max(conns)}, last {conns[-1]}" if conns else "not sampled"),
        f"- Unsealed audit events (newest sequence number minus newest signed tree size, "
        f"10-second samples): median {result['unsealed']['median']}, "
        f"max {result['unsealed']['max']}",
        f"- Event to signed head over the {lag.get('events', 0):,} events written while the "
        f"server ran: median {lag.get('median_ms', 0):.0f} ms, p95 {lag.get('p95_ms', 0):.0f} "
        f"ms, max {lag.get('max_ms', 0):.0f} ms, {lag.get('heads', 0):,} signed heads, "
        f"{lag.get('unsealed_at_stop', 0)} unsealed when the server stopped",
        f"- `consentry audit verify` after the run: exit {result['audit_verify']['exit_code']} "
        f"in {result['audit_verify']['seconds']} s ({result['audit_verify']['summary']})",
        "",
        "Raw samples: [`soak.json`](soak.json).",
        "",
    ]
    lines[-2:-2] = table_events(result)
    return "\n".join(lines)


def by_operation_per_minute(result: dict[str, Any]) -> list[str]:
    """p50 / p99 of each operation, minute by minute: which operations a step came from."""
    per_op = result.get("per_minute_by_operation")
    if not per_op:
        return []  # a run recorded before this table existed
    ops = list(per_op)
    rows = []
    for i, whole in enumerate(result["per_minute"]):
        cells = [str(whole["minute"])]
        for op in ops:
            x = per_op[op][i]
            cells.append(f"{x['p50_ms']:.0f} / {x['p99_ms']:.0f}" if x["requests"] else "-")
        rows.append(cells)
    return [
        "",
        "## Per minute by operation (p50 / p99 ms)",
        "",
        *_table(["minute", *(OPERATIONS.get(op, op) for op in ops)], rows),
    ]


def table_events(result: dict[str, Any]) -> list[str]:
    """Autovacuum and autoanalyze runs during the soak, to set beside the latency steps."""
    events = result.get("table_events")
    if events is None:
        return []
    if not events:
        return ["- Autovacuum / autoanalyze during the run: none seen", ""]
    lines = ["- Autovacuum / autoanalyze during the run (10-second samples):", ""]
    lines += _table(
        ["at", "table", "what", "live rows", "dead rows before"],
        [
            [
                f"{e['at_s']:.0f} s (minute {int(e['at_s'] // 60) + 1})",
                e["table"],
                e["kind"],
                f"{e['live']:,}",
                f"{e['dead_before']:,}",
            ]
            for e in events
        ],
    )
    return [*lines, ""]


def soak_runs(out: Path) -> list[str]:
    """One line per soak run kept in a subdirectory of ``out``."""
    lines = []
    for path in sorted(out.glob("*/soak.json")):
        try:
            run = json.loads(path.read_text())
            c = run["config"]
            met = sum(1 for x in run["targets"] if x["status"] == MET)
            lines.append(
                f"- [{path.parent.name}]({path.parent.name}/SOAK.md): "
                f"{ENGINE_NAMES.get(c['engine'], c['engine'])}, {run['minutes']} min, "
                f"{c['workers']} workers, {c['users']} users, {run['machine']['measured_at']}: "
                f"{met} of {len(run['targets'])} targets met"
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # not a soak run: ignore it
    return lines
