"""The before/after tables issue 15 asks for: this run's ratios beside an earlier run's."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from bench.__main__ import parse_args
from bench.report import markdown, reproduce_command, write_results

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
