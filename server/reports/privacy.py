"""Differential privacy for report releases, through OpenDP, and the per-role budget.

A report that asks for it releases every cell's count (and sum) with Laplace noise from
OpenDP's measurement on a vector of cells: adding or removing one record changes one cell's
count by 1 (L1 sensitivity 1) and, with each value clamped to ``[0, bound]``, one cell's
sum by at most ``bound``. OpenDP checks that the scale gives the epsilon asked for.

Each role has a budget (``CONSENTRY_DP_EPSILON_PER_MONTH``) per calendar month; a release
spends its epsilon first, in one conditional UPDATE, and is refused when the rest of the
budget does not cover it. The spend happens before the query runs: a release that then
fails still counts, which errs on the side of the people in the data.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import uuid
from collections.abc import Sequence
from types import ModuleType

import msgspec

from server.gateway import Conflict
from server.reports.tables import PrivacyBudget

MICRO = 1_000_000  # the budget is kept in millionths of epsilon: exact, and SQL-summable


class DpRelease(msgspec.Struct, frozen=True):
    epsilon: float
    period: str
    spent: float
    budget: float

    @property
    def remaining(self) -> float:
        return max(0.0, round(self.budget - self.spent, 6))


def current_period(now: dt.datetime | None = None) -> str:
    moment = (now or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    return f"{moment.year}-{moment.month:02d}"


@functools.cache
def _opendp() -> ModuleType:
    """OpenDP, loaded at the first release rather than in every worker at start-up."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    return dp


def _laplace(values: Sequence[float], sensitivity: float, epsilon: float) -> list[float]:
    dp = _opendp()
    scale = sensitivity / epsilon
    measurement = dp.m.make_laplace(
        dp.vector_domain(dp.atom_domain(T=float, nan=False)),
        dp.l1_distance(T=float),
        scale=scale,
    )
    spent = measurement.map(float(sensitivity))  # opendp is untyped: dp is a plain module
    if spent > epsilon * (1 + 1e-9):
        raise RuntimeError("the noise scale does not give the requested epsilon")
    return list(measurement([float(v) for v in values]))


def noisy_counts(counts: Sequence[int], epsilon: float) -> list[int]:
    """Counts of disjoint cells with Laplace noise (sensitivity 1), rounded, never negative."""
    if not counts:
        return []
    return [max(0, round(v)) for v in _laplace(counts, 1.0, epsilon)]


def noisy_sums(sums: Sequence[int], bound: int, epsilon: float) -> list[int]:
    """Clamped sums of disjoint cells with Laplace noise (sensitivity ``bound``)."""
    if not sums:
        return []
    return [max(0, round(v)) for v in _laplace(sums, float(bound), epsilon)]


class PrivacyLedger:
    """The epsilon each role spent this month, against ``budget``."""

    def __init__(self, budget: float) -> None:
        self.budget = budget

    async def remaining(self, role: str, now: dt.datetime | None = None) -> DpRelease:
        period = current_period(now)
        row = (
            await PrivacyBudget.select(PrivacyBudget.spent_micro)
            .where((PrivacyBudget.role == role) & (PrivacyBudget.period == period))
            .first()
        )
        spent = int(row["spent_micro"]) / MICRO if row else 0.0
        return DpRelease(epsilon=0.0, period=period, spent=spent, budget=self.budget)

    async def spend(self, role: str, epsilon: float, now: dt.datetime | None = None) -> DpRelease:
        """Take ``epsilon`` from the role's budget for this month, or refuse (409) when
        what is left does not cover it."""
        if not (epsilon > 0 and math.isfinite(epsilon)):
            raise Conflict("epsilon must be a positive number")
        period = current_period(now)
        moment = dt.datetime.now(dt.UTC)
        cost = round(epsilon * MICRO)
        await PrivacyBudget.insert(
            PrivacyBudget(
                id=uuid.uuid4(),
                role=role,
                period=period,
                spent_micro=0,
                releases=0,
                updated_at=moment,
            )
        ).on_conflict(target=(PrivacyBudget.role, PrivacyBudget.period), action="DO NOTHING")
        updated = (
            await PrivacyBudget.update(
                {
                    PrivacyBudget.spent_micro: PrivacyBudget.spent_micro + cost,
                    PrivacyBudget.releases: PrivacyBudget.releases + 1,
                    PrivacyBudget.updated_at: moment,
                }
            )
            .where(
                (PrivacyBudget.role == role)
                & (PrivacyBudget.period == period)
                & (PrivacyBudget.spent_micro <= round(self.budget * MICRO) - cost)
            )
            .returning(PrivacyBudget.spent_micro)
        )
        if not updated:
            left = await self.remaining(role, now)
            raise Conflict(
                f"privacy budget used up: {left.remaining:g} of {self.budget:g} epsilon left "
                f"this month for your role, this release needs {epsilon:g}"
            )
        return DpRelease(
            epsilon=epsilon,
            period=period,
            spent=int(updated[0]["spent_micro"]) / MICRO,
            budget=self.budget,
        )
