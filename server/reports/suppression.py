"""Small groups never identify anyone: cell suppression for every aggregate shown or exported.

A report is a grid of cells (rows x columns) with row totals, column totals and a grand
total. A cell or total counting fewer than ``minimum`` records (but not none) is hidden
(primary suppression). Totals are sums, so one hidden cell in a row could be recovered as
"row total minus the shown cells": complementary suppression hides more until no hidden
value can be worked out from what is shown:

1. in every row and column (totals included as the line's last element) that has exactly
   one hidden element, the next-smallest non-zero shown element is hidden too;
2. then a linear-algebra check: with the shown numbers as constants and each line's
   "cells add up to the total" as an equation, a hidden element is recoverable exactly
   when its unit vector lies in the equations' row space (exact rational arithmetic); while
   any is, another element on one of its lines is hidden.

The same pattern hides every measure of a hidden cell (sum, average, median): a sum of two
people's amounts says as much about them as their count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

# Position in the extended grid: (row index, column index); index == len(rows/cols) is the
# total row / total column.
Position = tuple[int, int]


@dataclass(frozen=True)
class Grid:
    """Counts per (row, column) cell; missing cells count zero (and zero is shown: it names
    nobody)."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    counts: dict[Position, int]

    @property
    def total_row(self) -> int:
        return len(self.rows)

    @property
    def total_column(self) -> int:
        return len(self.columns)

    def count(self, at: Position) -> int:
        r, c = at
        if r == self.total_row and c == self.total_column:
            return sum(self.counts.values())
        if r == self.total_row:
            return sum(n for (_, cc), n in self.counts.items() if cc == c)
        if c == self.total_column:
            return sum(n for (rr, _), n in self.counts.items() if rr == r)
        return self.counts.get(at, 0)

    def lines(self) -> list[list[Position]]:
        """Every row and column of the extended grid, its total last: the equations a
        reader can use (cells of the line add up to its last element)."""
        width, height = self.total_column, self.total_row
        found = [[(r, c) for c in range(width + 1)] for r in range(height + 1)]
        found += [[(r, c) for r in range(height + 1)] for c in range(width + 1)]
        return found

    def positions(self) -> list[Position]:
        return [(r, c) for r in range(self.total_row + 1) for c in range(self.total_column + 1)]


def _rref_pivots(matrix: list[list[Fraction]]) -> list[list[Fraction]]:
    """The matrix in reduced row echelon form (rows without a pivot dropped)."""
    rows = [row[:] for row in matrix]
    width = len(rows[0]) if rows else 0
    pivot_row = 0
    for col in range(width):
        found = next((i for i in range(pivot_row, len(rows)) if rows[i][col] != 0), None)
        if found is None:
            continue
        rows[pivot_row], rows[found] = rows[found], rows[pivot_row]
        lead = rows[pivot_row][col]
        rows[pivot_row] = [v / lead for v in rows[pivot_row]]
        for i in range(len(rows)):
            if i != pivot_row and rows[i][col] != 0:
                factor = rows[i][col]
                rows[i] = [a - factor * b for a, b in zip(rows[i], rows[pivot_row], strict=True)]
        pivot_row += 1
        if pivot_row == len(rows):
            break
    return rows[:pivot_row]


def recoverable(grid: Grid, hidden: Iterable[Position]) -> set[Position]:
    """The hidden positions whose value follows exactly from the shown numbers and the
    row/column equations (each hidden value is an unknown; shown values are constants)."""
    unknowns = sorted(set(hidden))
    if not unknowns:
        return set()
    index = {p: i for i, p in enumerate(unknowns)}
    matrix: list[list[Fraction]] = []
    for line in grid.lines():
        *cells, total = line
        row = [Fraction(0)] * len(unknowns)
        for p in cells:
            if p in index:
                row[index[p]] += 1
        if total in index:
            row[index[total]] -= 1
        if any(row):
            matrix.append(row)
    if not matrix:
        return set()
    reduced = _rref_pivots(matrix)
    found: set[Position] = set()
    for row in reduced:
        nonzero = [i for i, v in enumerate(row) if v != 0]
        if len(nonzero) == 1:
            found.add(unknowns[nonzero[0]])
    return found


def suppress(grid: Grid, minimum: int, also_small: Iterable[Position] = ()) -> set[Position]:
    """The positions (cells and totals) to hide so that no group under ``minimum`` is
    shown or recoverable from what is shown. ``also_small``: positions that are small for
    another reason (fewer than ``minimum`` different people behind many records)."""
    counts = {p: grid.count(p) for p in grid.positions()}
    hidden = {p for p, n in counts.items() if 0 < n < minimum}
    hidden |= {p for p in also_small if counts.get(p, 0) > 0}
    if not hidden:
        return hidden

    def hide_next_smallest(line: Sequence[Position]) -> bool:
        *cells, total = line
        candidates = sorted((counts[p], p) for p in cells if p not in hidden and counts[p] > 0)
        if not candidates and total not in hidden and counts[total] > 0:
            candidates = [(counts[total], total)]
        if not candidates:
            return False
        hidden.add(candidates[0][1])
        return True

    changed = True
    while changed:
        changed = False
        for line in grid.lines():
            if sum(1 for p in line if p in hidden) == 1 and hide_next_smallest(line):
                changed = True
        if not changed:
            for p in sorted(recoverable(grid, hidden)):
                lines = [line for line in grid.lines() if p in line]
                if any(hide_next_smallest(line) for line in lines):
                    changed = True
                    break
            else:
                if recoverable(grid, hidden):  # nothing left to hide beside it: hide all
                    hidden |= {p for p, n in counts.items() if n > 0}
    return hidden
