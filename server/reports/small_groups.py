"""Where the small-group rule applies: one decision for every fixed aggregate.

An aggregate over records the viewer can list one by one *as their own* (scope ``own``: a
rep's own pipeline) is shown exactly: hiding a "2" there protects no one, the viewer can
open the two deals. Every other aggregate (a team's records, everyone's records, team
totals shown to a rep) is suppressed with the report builder's algorithm
(``server.reports.suppression``): cells under the deployment's minimum group size are
hidden, with complementary suppression so no hidden cell follows from the totals.

The rule counts people, not records: a caller passes ``people`` (distinct data subjects
per cell, from ``Gateway.aggregate(..., count_people=True)``), and a cell of ten deals of
two customers is hidden like a cell of two. A total without its own people count is about
at least as many people as its largest cell (a lower bound, so the rule errs towards
hiding).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from policy.enforcer import Scope
from server.reports.suppression import Grid, Position, suppress

TOTAL = "\x00total"  # a label no row or column has: the total of a line


@dataclass(frozen=True)
class SmallGroups:
    """The rule for one viewer and one aggregate: ``exact`` when it covers only the
    viewer's own records."""

    minimum: int
    exact: bool

    @classmethod
    def for_scope(cls, minimum: int, scope: Scope, *, team_totals: bool = False) -> SmallGroups:
        return cls(minimum=minimum, exact=scope is Scope.OWN and not team_totals)

    def hidden(
        self,
        rows: Sequence[str],
        columns: Sequence[str],
        counts: Mapping[tuple[str, str], int],
        people: Mapping[tuple[str, str], int] | None = None,
        force: Iterable[tuple[str, str]] = (),
    ) -> set[tuple[str, str]]:
        """The (row, column) labels to hide; ``TOTAL`` as a label is that line's total.
        ``people``: how many different people each cell (or total) is about, where known;
        a cell about fewer than the minimum is hidden however many records it counts.
        ``force``: labels hidden for another reason (the same total hidden in another
        table), with complements found around them too."""
        if self.exact:
            return set()
        grid = Grid(
            rows=tuple(rows),
            columns=tuple(columns),
            counts={(rows.index(r), columns.index(c)): n for (r, c), n in counts.items() if n},
        )
        few: set[Position] = set()
        if people is not None:
            few = _few_people(grid, rows, columns, people, self.minimum)
        few |= {
            _position(label, rows, columns)
            for label in force
            if label[0] in {*rows, TOTAL} and label[1] in {*columns, TOTAL}
        }

        def label(at: Position) -> tuple[str, str]:
            r, c = at
            return (
                TOTAL if r == len(rows) else rows[r],
                TOTAL if c == len(columns) else columns[c],
            )

        return {label(p) for p in suppress(grid, self.minimum, few)}


def _position(label: tuple[str, str], rows: Sequence[str], columns: Sequence[str]) -> Position:
    r, c = label
    return (
        len(rows) if r == TOTAL else list(rows).index(r),
        len(columns) if c == TOTAL else list(columns).index(c),
    )


def _few_people(
    grid: Grid,
    rows: Sequence[str],
    columns: Sequence[str],
    people: Mapping[tuple[str, str], int],
    minimum: int,
) -> set[Position]:
    """The positions about fewer than ``minimum`` people. A cell without a people count is
    not judged here (its record count still is); a total without one is about at least as
    many people as its largest cell."""

    known_rows, known_columns = {*rows, TOTAL}, {*columns, TOTAL}
    bound = {
        _position((r, c), rows, columns): n
        for (r, c), n in people.items()
        if r in known_rows and c in known_columns  # a label the grid lacks: nothing shown
    }
    width, height = len(columns), len(rows)
    for r in range(height):
        bound.setdefault((r, width), max((bound.get((r, c), 0) for c in range(width)), default=0))
    for c in range(width + 1):
        bound.setdefault((height, c), max((bound.get((r, c), 0) for r in range(height)), default=0))
    # A position holding records is about one person at least, whatever the bound says.
    return {p for p, n in bound.items() if grid.count(p) > 0 and max(n, 1) < minimum}
