"""Small typed records passed between the phases of a run (and dumped into the JSON)."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any


@dataclass
class LoadFigures:
    """Rows and seconds per table, in the order the tables were loaded."""

    tables: dict[str, tuple[int, float]] = field(default_factory=dict)

    def add(self, table: str, rows: int, seconds: float) -> None:
        self.tables[table] = (rows, round(seconds, 3))

    def as_dict(self) -> dict[str, Any]:
        rows = sum(n for n, _ in self.tables.values())
        seconds = round(sum(s for _, s in self.tables.values()), 3)
        return {
            "tables": {
                name: {"rows": n, "seconds": s, "rows_per_s": _rate(n, s)}
                for name, (n, s) in self.tables.items()
            },
            "rows": rows,
            "seconds": seconds,
            "rows_per_s": _rate(rows, seconds),
        }


@dataclass
class LoadedIds:
    """Record ids a loader created, so scenarios can read and update real records.

    Interactions are only counted: nothing refers to them, and at three per contact
    their ids would be most of the memory a large run holds.
    """

    organizations: list[str] = field(default_factory=list)
    contacts: list[str] = field(default_factory=list)
    deals: list[str] = field(default_factory=list)
    interactions: int = 0


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
