"""The two run sizes, shared by the command line and the results page (to print the
command that reproduces a run)."""

from __future__ import annotations

from typing import NamedTuple


class Preset(NamedTuple):
    contacts: int
    duration: float  # seconds per load scenario
    warmup: float  # seconds of read traffic before the first measured scenario
    audit_events: int  # events appended per audit figure
    erasures: int  # people erased (each reads the mention index's candidates)
    export_repeats: int  # timed exports of the person with EXPORT_INTERACTIONS interactions


PRESETS: dict[str, Preset] = {
    "quick": Preset(
        contacts=2_000, duration=2.0, warmup=1.0, audit_events=300, erasures=5, export_repeats=2
    ),
    "full": Preset(
        contacts=100_000,
        duration=15.0,
        warmup=3.0,
        audit_events=3_000,
        erasures=3,  # at 100,000 contacts the mention scrub alone takes tens of seconds
        export_repeats=3,
    ),
}
EXPORT_INTERACTIONS = 10_000  # the export target is for a person with this many
DEFAULT_ENGINES = ("sqlite", "postgres")
DEFAULT_WORKERS = 1
DEFAULT_CONNECTIONS = 4
# Issue 15, item 7: reads with 1, 2 and 4 workers per server, on PostgreSQL (SQLite has one
# writer per file whatever the worker count), to show whether audit serialises a deployment.
DEFAULT_SCALING_WORKERS = (1, 2, 4)
DEFAULT_SCALING_ENGINES = ("postgres",)
CONNECTIONS_PER_WORKER = 4  # wrk connections per server worker in the scaling runs
