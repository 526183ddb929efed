"""The report builder (issue 20, items 4 and 5): definitions run through the gateway's
audited ``aggregate`` under the caller's scope; small groups suppressed so that no
combination of shown cells and totals reveals them; fields the role may not aggregate
refused with a one-line reason; differential-privacy releases spend a per-role budget and
are refused once it is used up; saved and shared reports; scheduled e-mails of counts."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import msgspec

from audit.tables import AuditRecord
from server.reports import saved
from server.reports.builder import ReportDefinition, ReportResult
from server.reports.suppression import Grid, recoverable
from server.services import Services
from tests.admin_ui.test_admin_ui import web_login
from tests.conftest import Staff
from tests.server.crm.test_crm_records import deal_values, sales_contact

API = "/api/v1/reports"
BY_STAGE = {"record_type": "deal", "group_by": ["stage"]}


async def seed(services: Services, staff: Staff) -> dict[str, Any]:
    """Rep A: 5 proposal, 2 lost. Rep B (same team): 2 proposal, 5 won. One customer per
    deal, so over all deals: proposal 7, won 5, lost 2 - the lost group is 2 people."""
    gw = services.gateway
    rep_a, rep_b = await staff.create("sales"), await staff.create("sales")
    admin = await staff.create("admin")
    a, b = staff.actor(rep_a), staff.actor(rep_b)
    plan = [(a, "proposal")] * 5 + [(a, "lost")] * 2 + [(b, "proposal")] * 2 + [(b, "won")] * 5
    for actor, stage in plan:
        person = await gw.create(actor, "contact", sales_contact(first_name="Perpetua"))
        extra = {"lost_reason": "price"} if stage == "lost" else {}
        await gw.create(actor, "deal", deal_values(person.id, amount=1000, stage=stage, **extra))
    return {"rep_a": rep_a, "rep_b": rep_b, "admin": admin}


def cells(result: dict[str, Any]) -> dict[str, float | None]:
    return {row["label"]: row["cells"][0] for row in result["rows"]}


def reconstructable(result: dict[str, Any]) -> set[tuple[int, int]]:
    """Rebuild the grid the reader sees (hidden cells unknown) and ask which hidden cells
    the shown cells and totals determine."""
    rows, cols = result["rows"], result["columns"]
    hidden = {(r, c) for r, row in enumerate(rows) for c, v in enumerate(row["cells"]) if v is None}
    hidden |= {(r, len(cols)) for r, row in enumerate(rows) if row["total"] is None}
    hidden |= {(len(rows), c) for c, v in enumerate(result["column_totals"]) if v is None}
    if result["grand_total"] is None:
        hidden.add((len(rows), len(cols)))
    # Hidden cells get a placeholder count (the reader does not know it); the equations
    # depend only on which positions are hidden.
    counts = {
        (r, c): int(v if v is not None else 1)
        for r, row in enumerate(rows)
        for c, v in enumerate(row["cells"])
    }
    grid = Grid(tuple(r["label"] for r in rows), tuple(cols), counts)
    return recoverable(grid, hidden)


async def test_a_group_of_two_is_suppressed_and_cannot_be_recovered(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    admin = await staff.login(w["admin"])
    answer = await admin.post(f"{API}/builder/run", json=BY_STAGE)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    shown = cells(body)
    assert shown["lost"] is None  # 2 deals: below the minimum of 5
    assert shown["proposal"] == 7
    assert shown["won"] is None  # complementary: else 14 - 7 - 5 gives the 2 away
    assert body["grand_total"] == 14
    assert body["suppressed"] >= 2
    assert not reconstructable(body)
    # The CSV export carries the same suppression.
    exported = await admin.post(f"{API}/builder/csv", json=BY_STAGE)
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    table = {row[0]: row[1:] for row in csv.reader(io.StringIO(exported.text))}
    assert table["lost"] == ["suppressed", "suppressed"]
    assert table["proposal"] == ["7", "7"]
    assert table["Total"] == ["14", "14"]


async def test_a_reps_report_covers_only_their_scope_and_is_audited_by_field_name(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    rep_a = await staff.login(w["rep_a"])
    definition = {**BY_STAGE, "measure": "sum", "measure_field": "amount"}
    mixed = await rep_a.post(f"{API}/builder/run", json=definition)
    assert mixed.status_code == 400
    assert "currencies do not add up" in mixed.json()["detail"]
    definition["filters"] = {"currency": "GBP"}
    body = (await rep_a.post(f"{API}/builder/run", json=definition)).json()
    assert set(cells(body)) == {"proposal", "lost"}  # rep B's won deals are not there
    assert body["grand_total"] == 7 * 1000
    event = (
        await AuditRecord.select()
        .where(AuditRecord.action == "aggregate")
        .order_by(AuditRecord.id, ascending=False)
        .first()
    )
    assert event is not None
    assert event["actor_id"] == f"user:{w['rep_a'].user_id}"
    assert sorted(json.loads(event["fields"])) == ["amount", "currency", "stage"]
    assert "1000" not in json.dumps(event, default=str)  # names, never values
    # Median per stage and month of creation: one month column, the small group hidden.
    by_month = {
        **definition,
        "measure": "median",
        "bucket": "month",
        "bucket_field": "expected_close",
    }
    monthly = (await rep_a.post(f"{API}/builder/run", json=by_month)).json()
    assert monthly["column_dimension"] == "expected_close by month"
    assert monthly["columns"] == ["2027-01"]
    assert len(monthly["columns"]) == 1
    assert cells(monthly) == {"proposal": None, "lost": None}  # 5 and 2: both must go
    assert monthly["grand_total"] == 1000


async def test_a_field_the_role_may_not_aggregate_is_refused_with_one_line(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    rep_a = await staff.login(w["rep_a"])
    encrypted = await rep_a.post(f"{API}/builder/run", json={**BY_STAGE, "group_by": ["title"]})
    assert encrypted.status_code == 403
    assert "title" in encrypted.json()["detail"]
    assert "\n" not in encrypted.json()["detail"]
    options = (await rep_a.get(f"{API}/builder/options", params={"record_type": "deal"})).json()
    assert "stage" in options["group_fields"]
    assert "title" not in options["group_fields"]
    assert "amount" in options["measure_fields"]
    # Saving is checked too, with the same one-line reason.
    saving = await rep_a.post(
        f"{API}/saved", json={"name": "By title", "definition": {**BY_STAGE, "group_by": ["title"]}}
    )
    assert saving.status_code == 403
    assert "title" in saving.json()["detail"]
    bad = await rep_a.post(f"{API}/builder/run", json={**BY_STAGE, "measure": "median"})
    assert bad.status_code == 400
    assert "measure_field" in bad.json()["detail"]


async def test_differential_privacy_spends_the_role_budget_and_refuses_when_used_up(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    admin = await staff.login(w["admin"])
    budget = services.settings.dp_epsilon_per_month
    noisy = {**BY_STAGE, "dp_epsilon": 2.0}
    releases = int(budget // 2.0)
    for n in range(releases):
        answer = await admin.post(f"{API}/builder/run", json=noisy)
        assert answer.status_code == 200, answer.text
        release = answer.json()["dp"]
        assert release["epsilon"] == 2.0
        assert release["spent"] == 2.0 * (n + 1)
    refused = await admin.post(f"{API}/builder/run", json=noisy)
    assert refused.status_code == 409
    assert "privacy budget used up" in refused.json()["detail"]
    options = (await admin.get(f"{API}/builder/options")).json()
    assert options["dp_remaining"] == budget - 2.0 * releases
    epsilons = [
        json.loads(r["detail"]).get("dp_epsilon")
        for r in await AuditRecord.select().where(AuditRecord.action == "aggregate")
    ]
    assert epsilons.count("2.0") == releases
    # Another role's budget is its own.
    rep = await staff.login(w["rep_a"])
    assert (await rep.post(f"{API}/builder/run", json=noisy)).status_code == 200


async def test_saved_reports_are_shared_as_definitions_and_rerun_in_the_readers_scope(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    rep_a, rep_b = await staff.login(w["rep_a"]), await staff.login(w["rep_b"])
    kept = await rep_a.post(
        f"{API}/saved", json={"name": "Mine", "definition": BY_STAGE, "shared_with": "none"}
    )
    team = await rep_a.post(
        f"{API}/saved", json={"name": "Team", "definition": BY_STAGE, "shared_with": "team"}
    )
    assert kept.status_code == team.status_code == 201
    seen_by_b = [r["name"] for r in (await rep_b.get(f"{API}/saved")).json()["items"]]
    assert seen_by_b == ["Team"]
    assert (await rep_b.get(f"{API}/saved/{kept.json()['id']}")).status_code == 404
    run = (await rep_b.post(f"{API}/saved/{team.json()['id']}/run")).json()
    assert set(cells(run)) == {"proposal", "won"}  # rep B's own deals, not rep A's
    assert (await rep_b.delete(f"{API}/saved/{team.json()['id']}")).status_code == 403
    assert (await rep_a.delete(f"{API}/saved/{team.json()['id']}")).status_code == 204


async def test_a_scheduled_report_is_mailed_as_counts_only(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    owner = staff.actor(w["admin"])
    body = saved.SavedReportIn(
        name="Weekly",
        definition=msgspec.convert(
            {
                **BY_STAGE,
                "measure": "sum",
                "measure_field": "amount",
                "filters": {"currency": "GBP"},
            },
            ReportDefinition,
        ),
        schedule="weekly",
    )
    await saved.save(owner, body)
    outbox: list[tuple[str, str, str]] = []

    class Sent:
        sent = True

    async def send(to: str, subject: str, text: str) -> Sent:
        outbox.append((to, subject, text))
        return Sent()

    builder = services.report_builder
    assert await saved.send_due(builder, send) == 1
    assert await saved.send_due(builder, send) == 0  # not due again for a week
    to, subject, text = outbox[0]
    assert to == w["admin"].email
    assert subject == "Report: Weekly"
    assert "proposal | 7 | 7" in text  # counts, not the sum of amounts (7000)
    assert "lost | suppressed" in text
    assert "7000" not in text


def test_definitions_are_validated_by_their_struct() -> None:
    for bad in (
        {"record_type": "deal", "group_by": ["stage"], "surprise": 1},
        {"record_type": "deal", "group_by": ["Robert'); DROP"]},
        {"record_type": "deal", "group_by": ["a", "b", "c"]},
        {"record_type": "deal", "group_by": ["stage"], "dp_epsilon": 0},
    ):
        try:
            msgspec.convert(bad, ReportDefinition)
        except msgspec.ValidationError:
            continue
        raise AssertionError(f"accepted {bad}")
    assert ReportResult.__struct_fields__[0] == "record_type"


async def test_the_page_refuses_bad_reports_with_one_line_and_exports_csv(
    services: Services, staff: Staff
) -> None:
    w = await seed(services, staff)
    rep = await web_login(staff, w["rep_a"])
    refused = await rep.get("/reports/builder", params={"run": "1", "group_1": "title"})
    assert refused.status_code == 400
    assert "deal cannot be aggregated by: title" in refused.text
    unknown = await rep.get("/reports/builder", params={"run": "1", "record_type": "spaceship"})
    assert unknown.status_code == 400
    assert (await rep.get("/reports/builder", params={"saved": "nope"})).status_code == 404
    ok = await rep.get("/reports/builder", params={"run": "1", "group_1": "stage"})
    assert ok.status_code == 200
    assert 'data-report="builder"' in ok.text
    exported = await rep.get("/reports/builder/export.csv", params={"group_1": "stage"})
    assert exported.status_code == 200
    assert "lost,suppressed,suppressed" in exported.text
    support = await web_login(staff, await staff.create("support"))
    assert (await support.get("/reports/builder")).status_code == 403


async def test_many_records_of_few_people_are_still_a_small_group(
    services: Services, staff: Staff
) -> None:
    """Six deals of one customer are one person: the cell is hidden though it counts 6."""
    w = await seed(services, staff)
    rep_a = staff.actor(w["rep_a"])
    loyal = await services.gateway.create(rep_a, "contact", sales_contact(first_name="Loyal"))
    for _ in range(6):
        await services.gateway.create(rep_a, "deal", deal_values(loyal.id, stage="negotiation"))
    admin = await staff.login(w["admin"])
    body = (await admin.post(f"{API}/builder/run", json=BY_STAGE)).json()
    shown = cells(body)
    assert shown["negotiation"] is None
    assert shown["proposal"] == 7
    assert not reconstructable(body)
