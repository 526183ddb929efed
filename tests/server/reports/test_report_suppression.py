"""Small groups never identify anyone: primary and complementary suppression, checked by
exhaustive linear algebra (no hidden cell is determined by shown cells and totals)."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest

from server.reports.suppression import Grid, recoverable, suppress
from server.settings import ConfigurationError, Settings


def grid(table: list[list[int]]) -> Grid:
    counts = {(r, c): n for r, row in enumerate(table) for c, n in enumerate(row) if n}
    return Grid(
        rows=tuple(f"r{i}" for i in range(len(table))),
        columns=tuple(f"c{i}" for i in range(len(table[0]))),
        counts=counts,
    )


def test_a_group_of_two_is_hidden_and_cannot_be_recovered_from_totals() -> None:
    g = grid([[2, 9, 12], [7, 8, 20], [11, 6, 30]])
    hidden = suppress(g, 5)
    assert (0, 0) in hidden  # the cell of 2 people
    assert len([p for p in hidden if p[0] == 0]) >= 2  # its row hides a complement
    assert len([p for p in hidden if p[1] == 0]) >= 2  # and so does its column
    assert not recoverable(g, hidden)


def test_one_dimension_hides_a_second_cell_so_the_total_gives_nothing_away() -> None:
    g = grid([[3], [40], [12], [25]])  # one column: the column total is the grand total
    hidden = suppress(g, 5)
    assert (0, 0) in hidden
    assert (2, 0) in hidden
    assert (1, 0) not in hidden
    assert (3, 0) not in hidden
    assert not recoverable(g, hidden)


def test_totals_under_the_minimum_are_hidden_too() -> None:
    g = grid([[1, 1, 0], [9, 10, 11]])
    hidden = suppress(g, 5)
    assert (0, 3) in hidden  # the first row's total (2 people)
    assert not recoverable(g, hidden)


def test_no_small_group_no_suppression() -> None:
    assert suppress(grid([[5, 6], [7, 8]]), 5) == set()


def test_random_tables_never_reveal_a_hidden_cell() -> None:
    # Every 3x3 table with values drawn from a small set that mixes small and large groups.
    values = (0, 2, 6, 9)
    checked = 0
    for combo in itertools.islice(itertools.product(values, repeat=6), 0, None, 7):
        table = [list(combo[0:3]), list(combo[3:6]), [4, 15, 1]]
        g = grid(table)
        hidden = suppress(g, 5)
        shown_small = [p for p in g.positions() if p not in hidden and 0 < g.count(p) < 5]
        assert not shown_small, (table, shown_small)
        assert not recoverable(g, hidden), table
        checked += 1
    assert checked > 100


def test_recoverable_detects_a_lone_hidden_cell() -> None:
    g = grid([[2, 9], [7, 8]])
    assert recoverable(g, {(0, 0)}) == {(0, 0)}


@pytest.mark.parametrize("value", ["2", "0"])
def test_a_minimum_group_size_below_three_is_refused_at_startup(value: str) -> None:
    with pytest.raises(ConfigurationError, match="REPORT_MIN_GROUP_SIZE"):
        Settings.from_env({"CONSENTRY_REPORT_MIN_GROUP_SIZE": value})


def test_the_minimum_group_size_is_configurable() -> None:
    assert Settings.from_env({}).report_min_group_size == 5
    assert Settings.from_env({"CONSENTRY_REPORT_MIN_GROUP_SIZE": "10"}).report_min_group_size == 10


def test_time_buckets_and_medians() -> None:
    from server.reports.builder import _median, bucket_label

    moment = dt.datetime(2026, 12, 31, 23, 0, tzinfo=dt.UTC)
    assert [bucket_label(moment, unit) for unit in ("day", "week", "month", "quarter")] == [
        "2026-12-31",
        "2026-W53",
        "2026-12",
        "2026-Q4",
    ]
    assert bucket_label("2027-01-04", "week") == "2027-W01"
    assert bucket_label(None, "month") == "(none)"
    assert _median({1: 1, 5: 2, 9: 1}) == 5
    assert _median({1: 1, 3: 1}) == 2
    assert _median({}) is None
