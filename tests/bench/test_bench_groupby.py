"""The pure parts of ``python -m bench groupby``: the per-definition summary against the
target and the RESULTS.md table. No database, no clock."""

from __future__ import annotations

from bench.groupby import DEFINITIONS, TARGET_P95_MS, render, summary
from server.reports.builder import check_shape


def test_summary_reports_p50_p95_max_and_judges_the_p95_against_the_target() -> None:
    times = [10.0] * 28 + [450.0, 900.0]  # 30 runs: the p95 is the 29th fastest
    figures = summary(times)
    assert figures["runs"] == 30
    assert figures["p50_ms"] == 10.0
    assert figures["p95_ms"] == 450.0
    assert figures["max_ms"] == 900.0
    assert figures["target_p95_ms"] == TARGET_P95_MS
    assert figures["met"] is True
    assert summary([*times[:-2], 600.0, 900.0])["met"] is False


def test_every_benchmarked_definition_is_one_the_builder_accepts() -> None:
    for definition in DEFINITIONS.values():
        check_shape(definition)


def test_results_page_shows_each_definition_and_flags_a_miss() -> None:
    result = {
        "customers": 400_000,
        "deals": 100_000,
        "owners": 50,
        "runs": 30,
        "load_seconds": 80.0,
        "load_average": "1.00, 1.00, 1.00",
        "date": "2026-12-02T17:00:00+00:00",
        "machine": "x86_64, 2 cores",
        "definitions": {
            "count by stage": {"rows": 5, **summary([20.0] * 30)},
            "median amount by owner": {"rows": 50, **summary([700.0] * 30)},
        },
    }
    page = render(result)
    assert "100,000 deals of 400,000 customers" in page
    assert "| count by stage | 5 | 20.0 ms | 20.0 ms | 20.0 ms | < 500 ms | yes |" in page
    assert (
        "| median amount by owner | 50 | 700.0 ms | 700.0 ms | 700.0 ms | < 500 ms | NO |" in page
    )
    assert "load average 1.00, 1.00, 1.00" in page
