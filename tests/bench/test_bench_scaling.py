"""The scaling curve's options and its table (issue 15, item 7): reads by id with 1, 2 and 4
workers on PostgreSQL, both systems at each count, by default in a full run."""

from __future__ import annotations

from typing import Any

import pytest

from bench.__main__ import parse_args
from bench.report import _scaling_section, reproduce_command


def test_a_full_run_draws_the_curve_on_postgresql_with_1_2_and_4_workers() -> None:
    config = parse_args([])
    assert config.scaling_workers == (1, 2, 4)
    assert config.scaling_engines == ("postgres",)
    assert parse_args(["--quick"]).scaling_workers == (1, 2)
    assert parse_args(["--scaling", "none"]).scaling_workers == ()
    assert parse_args(["--scaling", "2,1,2"]).scaling_workers == (2, 1)


@pytest.mark.parametrize("bad", ["0", "1,-2", "two", ""])
def test_a_bad_worker_count_is_refused_with_the_rule(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_args(["--scaling", bad])
    assert exit_.value.code == 2
    assert "comma-separated list of whole numbers" in capsys.readouterr().err


def _run(workers: int, baseline_rps: float, consentry_rps: float) -> dict[str, Any]:
    def side(rps: float) -> dict[str, Any]:
        return {"rps": rps, "p50_ms": 1.0, "p99_ms": 2.0}

    return {
        "workers": workers,
        "connections": 4 * workers,
        "baseline": side(baseline_rps),
        "consentry": side(consentry_rps),
        "ratio": {"rps": consentry_rps / baseline_rps, "p50": 1.1, "p99": 1.2},
        "flagged": False,
        "problems": [],
    }


def test_the_table_shows_each_system_against_its_own_one_worker_figure() -> None:
    """A Consentry that does not scale (audit serialising every worker) must show as a flat
    'x of 1 worker' column beside a rising baseline."""
    scaling = {
        "scenario": "read contact by id",
        "seconds": 15.0,
        "runs": [_run(1, 200, 180), _run(2, 400, 180), _run(4, 420, 190)],
    }
    rows = [line for line in _scaling_section(scaling) if line.startswith("| ")]
    assert rows[0].startswith("| workers | connections | baseline rps | baseline x of 1 worker")
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows[1:]]
    assert [(c[0], c[3], c[5]) for c in cells] == [
        ("1", "1.00", "1.00"),
        ("2", "2.00", "1.00"),
        ("4", "2.10", "1.06"),
    ]


def test_the_reproduce_command_names_a_non_default_curve() -> None:
    results: dict[str, Any] = {
        "mode": "full",
        "config": {
            "engines": ["sqlite", "postgres"],
            "contacts": 100_000,
            "duration": 15.0,
            "workers": 1,
            "connections": 4,
            "scaling_workers": [1, 2],
            "scaling_engines": ["postgres"],
        },
    }
    assert reproduce_command(results) == "python -m bench --scaling 1,2"
    results["config"]["scaling_workers"] = [1, 2, 4]
    assert reproduce_command(results) == "python -m bench"
