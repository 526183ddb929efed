"""Small typed records passed between the phases of a run (and dumped into the JSON)."""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class LoadFigures:
    organizations: int
    organization_seconds: float
    contacts: int
    contact_seconds: float

    @classmethod
    def of(cls, orgs: int, org_s: float, contacts: int, contact_s: float) -> LoadFigures:
        return cls(orgs, round(org_s, 3), contacts, round(contact_s, 3))

    def as_dict(self) -> dict[str, Any]:
        rows = self.organizations + self.contacts
        seconds = self.organization_seconds + self.contact_seconds
        return {
            **asdict(self),
            "organization_rows_per_s": _rate(self.organizations, self.organization_seconds),
            "contact_rows_per_s": _rate(self.contacts, self.contact_seconds),
            "rows_per_s": _rate(rows, seconds),
        }


@dataclass
class LoadedIds:
    """Record ids a loader created, so scenarios can read and update real records."""

    organizations: list[str] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)


def _rate(count: int, seconds: float) -> float:
    return round(count / seconds, 1) if seconds > 0 else 0.0


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (what load generators report); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(samples_ns: list[int]) -> dict[str, float]:
    """Median and p95 of timings in nanoseconds, as milliseconds."""
    ms = [s / 1e6 for s in samples_ns]
    return {
        "median_ms": round(statistics.median(ms), 3) if ms else 0.0,
        "p95_ms": round(percentile(ms, 95), 3),
        "samples": len(ms),
    }
