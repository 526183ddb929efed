"""Where the small-group rule applies: one decision for every fixed aggregate.

An aggregate over records the viewer can list one by one *as their own* (scope ``own``: a
rep's own pipeline) is shown exactly: hiding a "2" there protects no one, the viewer can
open the two deals. Every other aggregate (a team's records, everyone's records, team
totals shown to a rep) is suppressed with the report builder's algorithm
(``server.reports.suppression``): cells under the deployment's minimum group size are
hidden, with complementary suppression so no hidden cell follows from the totals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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
    ) -> set[tuple[str, str]]:
        """The (row, column) labels to hide; ``TOTAL`` as a label is that line's total."""
        if self.exact:
            return set()
        grid = Grid(
            rows=tuple(rows),
            columns=tuple(columns),
            counts={(rows.index(r), columns.index(c)): n for (r, c), n in counts.items() if n},
        )

        def label(at: Position) -> tuple[str, str]:
            r, c = at
            return (
                TOTAL if r == len(rows) else rows[r],
                TOTAL if c == len(columns) else columns[c],
            )

        return {label(p) for p in suppress(grid, self.minimum)}
