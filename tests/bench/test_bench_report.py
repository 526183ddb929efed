"""The before/after tables issue 15 asks for: this run's ratios beside an earlier run's."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import parse_args
from bench.report import markdown, reproduce_command, write_results
from bench.targets import evaluate_targets

EARLIER = Path(__file__).parents[2] / "bench" / "results" / "latest.json"


def _run() -> dict[str, Any]:
    run: dict[str, Any] = json.loads(EARLIER.read_text())
    return run


def test_results_compare_each_scenario_ratio_and_target_with_the_earlier_run(
    tmp_path: Path,
) -> None:
    before = _run()
    before_path = tmp_path / "before.json"
    before_path.write_text(json.dumps(before))
    after = copy.deepcopy(before)
    after["config"]["before"] = str(before_path)
    read = after["engines"]["postgres"]["scenarios"]["read"]
    read["ratio"]["p50"], read["ratio"]["p99"] = 1.1, 1.9
    after["targets"].append(
        {
            "target": "a target the earlier run did not have",
            "engine": "PostgreSQL",
            "goal": "<= 1x",
            "measured": "0.5x",
            "status": "met",
            "note": "",
        }
    )
    then = before["engines"]["postgres"]["scenarios"]["read"]["ratio"]

    _, md_path = write_results(after, tmp_path / "out")
    page = md_path.read_text()

    assert "## Before and after" in page
    assert (
        f"| read contact by id | PostgreSQL | {then['p50']:.2f}x | 1.10x | "
        f"{then['p99']:.2f}x | 1.90x |" in page
    )
    assert "| a target the earlier run did not have | PostgreSQL | (not measured) | 0.5x |" in page
    assert f"--before {before_path}" in reproduce_command(after)


def test_without_an_earlier_run_there_is_no_comparison() -> None:
    assert "Before and after" not in markdown(_run())


def test_a_missing_earlier_run_is_refused_before_anything_is_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--before", str(tmp_path / "nope.json")])
    assert exit_.value.code == 2
    assert "no such file" in capsys.readouterr().err


def test_a_missed_target_says_by_how_much_and_a_met_one_does_not() -> None:
    run = _run()
    scenarios = run["engines"]["postgres"]["scenarios"]
    scenarios["read"]["ratio"]["p50"] = 2.5
    scenarios["search"]["ratio"]["p99"] = 1.5
    append_figures = run["engines"]["postgres"]["audit_append"]
    for figure in ("sequential_events_per_s", "concurrent_events_per_s", "grouped_events_per_s"):
        append_figures[figure] = 2_500.0  # the best of them is judged

    judged = {(t["target"], t["engine"]): t for t in evaluate_targets(run)}

    read = judged[("read contact by id: Consentry p50 / baseline p50", "PostgreSQL")]
    assert (read["status"], read["gap"]) == ("not met", "100% over")
    search_tail = judged[("search by e-mail: Consentry p99 / baseline p99", "PostgreSQL")]
    assert (search_tail["status"], search_tail["gap"]) == ("met", "")
    append = judged[("Audit append throughput", "PostgreSQL")]
    assert (append["status"], append["gap"]) == ("not met", "needs 4.0x")
    page = markdown({**run, "targets": list(judged.values())})
    assert "| **not met** | 100% over |" in page
