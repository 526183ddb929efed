"""The pure arithmetic of ``python -m bench soak``: no server, no database, no clock."""

from __future__ import annotations

from typing import Any

from bench.soak_stats import (
    MET,
    NOT_MET,
    TOO_SHORT,
    Request,
    evaluate,
    p99_drift,
    per_minute,
    per_minute_by_operation,
    rss_growth,
    span_label,
    table_events,
    window,
)


def _steady(minutes: int, ms: float = 10.0, *, per_second: int = 1) -> list[Request]:
    return [
        Request(second + k / per_second, "read", ms, 200)
        for second in range(minutes * 60)
        for k in range(per_second)
    ]


def test_per_minute_buckets_by_send_time_and_counts_non_2xx() -> None:
    requests = [
        Request(0.5, "read", 10.0, 200),
        Request(59.9, "read", 30.0, 201),
        Request(60.0, "create", 100.0, 500),
        Request(61.0, "read", 5.0, 0),  # no answer counts as non-2xx
        Request(125.0, "read", 1.0, 200),  # sent after a 2-minute deadline: ignored
    ]
    rows = per_minute(requests, 2)
    assert [r["minute"] for r in rows] == [1, 2]
    assert rows[0] == {
        "minute": 1,
        "requests": 2,
        "non2xx": 0,
        "p50_ms": 10.0,
        "p95_ms": 30.0,
        "p99_ms": 30.0,
    }
    assert rows[1]["requests"] == 2
    assert rows[1]["non2xx"] == 2
    assert rows[1]["p99_ms"] == 100.0


def test_per_minute_keeps_empty_minutes_and_nearest_rank_percentiles() -> None:
    requests = [Request(float(i) / 100, "read", float(i + 1), 200) for i in range(100)]
    first, empty = per_minute(requests, 2)
    assert (first["p50_ms"], first["p95_ms"], first["p99_ms"]) == (50.0, 95.0, 99.0)
    assert empty == {
        "minute": 2,
        "requests": 0,
        "non2xx": 0,
        "p50_ms": 0.0,
        "p95_ms": 0.0,
        "p99_ms": 0.0,
    }


def test_window_is_half_open() -> None:
    requests = [Request(t, "read", t, 200 if t < 15 else 404) for t in (0.0, 10.0, 15.0, 20.0)]
    w = window(requests, 10.0, 20.0)
    assert w["requests"] == 2
    assert w["non2xx"] == 1


def test_p99_drift_compares_minutes_3_to_8_with_the_last_five() -> None:
    requests = [r._replace(ms=100.0) if r.at_s >= 15 * 60 else r for r in _steady(20)]
    drift = p99_drift(requests, 20)
    assert drift["reference_s"] == [120.0, 480.0]
    assert drift["late_s"] == [900.0, 1200.0]
    assert (drift["reference_p99_ms"], drift["late_p99_ms"]) == (10.0, 100.0)
    assert drift["ratio"] == 10.0
    assert drift["status"] == NOT_MET
    assert p99_drift(_steady(13), 13)["status"] == MET


def test_p99_drift_of_a_short_run_compares_halves_and_asks_for_more() -> None:
    drift = p99_drift(_steady(2), 2)  # no two minutes after the warm-up: the whole run
    assert drift["reference_s"] == [0.0, 60.0]
    assert drift["late_s"] == [60.0, 120.0]
    assert drift["ratio"] == 1.0
    assert drift["status"] == TOO_SHORT
    drift = p99_drift(_steady(10), 10)  # after the warm-up, halved
    assert drift["reference_s"] == [120.0, 360.0]
    assert drift["late_s"] == [360.0, 600.0]
    assert span_label(drift["reference_s"]) == "minutes 3-6"
    assert span_label([0.0, 30.0]) == "0:00-0:30"
    assert span_label([60.0, 120.0]) == "minute 2"


def _samples(rss: dict[str, list[int]], every: float = 10.0) -> list[dict[str, Any]]:
    count = max(len(v) for v in rss.values())
    return [
        {"at_s": i * every, "rss_kb": {w: v[i] for w, v in rss.items() if i < len(v)}}
        for i in range(count)
    ]


def test_rss_growth_uses_medians_after_the_warm_up() -> None:
    # 5 minutes of samples: the warm-up (0-110 s) doubles memory and does not count; one
    # spike right after it is outvoted by the median; worker b grows 20 % by the end.
    a = [50_000] * 12 + [100_000, 180_000] + [100_000] * 17
    b = [50_000] * 12 + [100_000] * 13 + [120_000] * 6
    growth = rss_growth(_samples({"a": a, "b": b}))
    assert growth["from_s"] == 120.0
    assert growth["workers"]["a"] == {
        "start_kb": 100_000,
        "end_kb": 100_000,
        "max_kb": 180_000,
        "growth_pct": 0.0,
    }
    assert growth["workers"]["b"]["growth_pct"] == 20.0
    assert growth["worst_pct"] == 20.0
    assert growth["status"] == NOT_MET
    assert rss_growth(_samples({"a": a}))["status"] == MET


def test_rss_growth_of_a_short_run_is_measured_from_the_start() -> None:
    growth = rss_growth(_samples({"a": [100_000] * 7 + [105_000] * 6}))  # 2 minutes
    assert growth["from_s"] == 0.0
    assert growth["workers"]["a"]["growth_pct"] == 5.0
    assert growth["status"] == TOO_SHORT
    assert rss_growth([])["status"] == TOO_SHORT


def _run(**changes: Any) -> dict[str, Any]:
    run: dict[str, Any] = {
        "minutes": 15,
        "rss": {"workers": {}, "worst_pct": 3.0, "from_s": 120.0, "status": MET},
        "p99_drift": p99_drift(_steady(15), 15),
        "totals": {"requests": 900, "non2xx": 0, "bad_statuses": {}},
        "seal_lag": {"events": 900, "p95_ms": 300.0, "max_ms": 600.0, "unsealed_at_stop": 0},
        "unsealed": {"median": 1, "max": 4},
        "audit_verify": {"exit_code": 0, "summary": "ok"},
    }
    run.update(changes)
    return run


def test_evaluate_all_targets_met() -> None:
    targets = evaluate(_run())
    assert [t["status"] for t in targets] == [MET] * 5
    assert targets[1]["measured"].startswith("1.00x (10.0 ms in minutes 11-15")


def test_evaluate_names_each_failure() -> None:
    targets = evaluate(
        _run(
            totals={"requests": 900, "non2xx": 2, "bad_statuses": {"read 500": 2}},
            seal_lag={"events": 9, "p95_ms": 1500.0, "max_ms": 2000.0, "unsealed_at_stop": 0},
            audit_verify={"exit_code": 1, "summary": "entry 7 was modified"},
        )
    )
    status = {t["target"].split()[0]: t["status"] for t in targets}
    assert status == {
        "RSS": MET,
        "p99": MET,
        "No": NOT_MET,
        "Every": NOT_MET,
        "`consentry": NOT_MET,
    }
    assert targets[2]["note"] == "read 500: 2"
    assert targets[4]["note"] == "entry 7 was modified"


def test_evaluate_an_event_left_unsealed_for_over_a_second_fails() -> None:
    lag = {"events": 9, "p95_ms": 100.0, "max_ms": 200.0, "unsealed_at_stop": 3}
    fresh = evaluate(_run(seal_lag={**lag, "unsealed_at_stop_oldest_s": 0.2}))[3]
    assert fresh["status"] == MET  # written in the server's last second: fair to leave
    assert fresh["note"].startswith("9 events written during the run, 3 unsealed when")
    overdue = {**lag, "unsealed_at_stop_oldest_s": 4.0, "unsealed_at_stop_overdue": 1}
    assert evaluate(_run(seal_lag=overdue))[3]["status"] == NOT_MET
    assert evaluate(_run(seal_lag={"events": 0}))[3]["status"] == NOT_MET


def test_rss_growth_ends_do_not_overlap_in_a_one_minute_run() -> None:
    growth = rss_growth(_samples({"a": [100_000] * 3 + [110_000] * 4}))  # 0-60 s
    assert growth["workers"]["a"]["start_kb"] == 100_000
    assert growth["workers"]["a"]["end_kb"] == 110_000
    assert growth["workers"]["a"]["growth_pct"] == 10.0


def test_per_minute_by_operation_shows_which_operation_stepped() -> None:
    requests = [Request(1.0, "read", 10.0, 200), Request(2.0, "list", 20.0, 200)]
    requests += [Request(61.0, "read", 11.0, 200), Request(62.0, "list", 90.0, 200)]
    rows = per_minute_by_operation(requests, 2, ["read", "list", "create"])
    assert [m["p99_ms"] for m in rows["read"]] == [10.0, 11.0]
    assert [m["p99_ms"] for m in rows["list"]] == [20.0, 90.0]
    assert [m["requests"] for m in rows["create"]] == [0, 0]  # in the mix, never sent


def test_table_events_report_each_autovacuum_and_autoanalyze_once() -> None:
    def sample(at: float, dead: int, vacuums: int, analyzes: int) -> dict[str, Any]:
        counts = {"live": 100, "dead": dead, "autovacuum": vacuums, "autoanalyze": analyzes}
        return {"at_s": at, "tables": {"contact": counts}}

    samples = [sample(0, 0, 3, 3), sample(10, 50, 3, 3), sample(20, 0, 4, 4), sample(30, 5, 4, 4)]
    events = table_events(samples)
    assert [(e["at_s"], e["kind"], e["dead_before"]) for e in events] == [
        (20, "autovacuum", 50),
        (20, "autoanalyze", 50),
    ]
    assert table_events([{"at_s": 0, "tables": None}]) == []  # SQLite: not sampled
