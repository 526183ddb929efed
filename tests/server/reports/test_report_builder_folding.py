"""How the report builder folds the gateway's SQL groups into table cells and totals
(medians split by value, time buckets folded from dates), with a stand-in gateway."""

from __future__ import annotations

from typing import cast

from server.gateway import Actor, Gateway, Group
from server.reports.builder import ReportBuilder, ReportDefinition
from server.reports.privacy import PrivacyLedger


class _Groups:
    """A stand-in gateway answering ``aggregate`` with fixed SQL groups (the builder's
    folding of groups into cells is under test here, not the SQL)."""

    def __init__(self, groups: list[Group]) -> None:
        self.groups = groups

    async def aggregate(self, actor: object, resource: str, **kw: object) -> list[Group]:
        if kw["group_by"] == ("owner_id", "expected_close", "amount"):
            return self.groups
        # the people count over the cells' own groups (no value column)
        return [Group(key=g.key[:2], count=g.count, people=10) for g in self.groups]


async def test_a_median_folds_value_groups_into_their_cells_and_totals() -> None:
    # Owner 1: 100 x3 and 300 x1 in January, 200 x2 in February; owner 2: 50 x1 in January.
    groups = [
        Group(key=(1, "2027-01-03", 100), count=3),
        Group(key=(1, "2027-01-20", 300), count=1),
        Group(key=(1, "2027-02-02", 200), count=2),
        Group(key=(2, "2027-01-09", 50), count=1),
    ]
    builder = ReportBuilder(cast(Gateway, _Groups(groups)), PrivacyLedger(1.0), min_group_size=1)
    definition = ReportDefinition(
        record_type="deal",
        group_by=["owner_id"],
        measure="median",
        measure_field="amount",
        bucket="month",
        bucket_field="expected_close",
        filters={"currency": "EUR"},
    )
    result = await builder.run(Actor(id="user:1", role="admin"), definition)
    assert result.columns == ["2027-01", "2027-02"]
    assert [(r.label, r.cells, r.total) for r in result.rows] == [
        ("1", [100.0, 200.0], 150.0),  # 100 100 100 200 200 300
        ("2", [50.0, 0.0], 50.0),
    ]
    assert result.column_totals == [100.0, 200.0]  # 50 100 100 100 300 | 200 200
    assert result.grand_total == 100.0  # 50 100 100 100 200 200 300
