"""Pipelines and the deal board: stages as configuration, checked on every deal write.

A deal's stage must belong to its pipeline (400 naming the field otherwise); a lost deal
needs a reason; won and lost set the probability. Admins alone change pipelines, every
change is audited with codes only. The board shows a rep their own deals only, and the
reports count won and lost by the stage's kind, whatever the stage is called.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest

from audit.tables import AuditRecord
from server.gateway import Actor, Conflict, Forbidden, InvalidInput
from server.pipelines.service import CARDS_PER_COLUMN
from server.pipelines.tables import DEFAULT_PIPELINE_ID
from server.reports.service import CrmReports
from server.services import Services
from tests.admin_ui.test_admin_ui import location, submit, web_login
from tests.conftest import Staff
from tests.server.crm.test_crm_records import deal_values, error_fields, sales_contact

API = "/api/v1/deals"


async def rep_with_person(services: Services, staff: Staff) -> tuple[Actor, str]:
    rep = staff.actor(await staff.create("sales"))
    person = await services.gateway.create(rep, "contact", sales_contact())
    return rep, person.id


async def admin_actor(staff: Staff) -> Actor:
    return staff.actor(await staff.create("admin"))


# --- stage validation, won/lost ---------------------------------------------------------------


async def test_new_deals_join_the_default_pipeline_at_its_first_stage(
    services: Services, staff: Staff
) -> None:
    rep, person = await rep_with_person(services, staff)
    values = deal_values(person)
    del values["stage"], values["probability"]
    deal = await services.gateway.create(rep, "deal", values)
    assert deal.values["pipeline_id"] == DEFAULT_PIPELINE_ID
    assert deal.values["stage"] == "qualification"
    assert deal.values["probability"] == 10  # the stage's default


async def test_a_stage_of_another_pipeline_is_refused_naming_the_field(
    services: Services, staff: Staff
) -> None:
    admin = await admin_actor(staff)
    other = await services.pipelines.add_stage(
        admin, DEFAULT_PIPELINE_ID, "Demo booked", "open", 45
    )
    assert other.key == "demo_booked"
    second = await services.pipelines.create_pipeline(admin, "Renewals")
    seller = await staff.login(await staff.create("sales"))
    person = (await seller.post("/api/v1/contacts", json=sales_contact())).json()
    bad = await seller.post(
        API, json=deal_values(person["id"], stage="demo_booked", pipeline_id=second.id)
    )
    assert bad.status_code == 400
    assert error_fields(bad) == {"stage"}
    assert "demo_booked" not in (await seller.post(API, json=deal_values(person["id"]))).text
    unknown = await seller.post(API, json=deal_values(person["id"], pipeline_id=str(uuid.uuid4())))
    assert unknown.status_code == 400
    assert error_fields(unknown) == {"pipeline_id"}
    ok = await seller.post(
        API, json=deal_values(person["id"], stage="demo_booked", probability=None)
    )
    assert ok.status_code == 201, ok.text
    assert ok.json()["probability"] == 45  # the stage's default when none is given
    moved = await seller.post(API, json=deal_values(person["id"], pipeline_id=second.id))
    assert moved.status_code == 400  # "proposal" is not a stage of the new pipeline
    assert error_fields(moved) == {"stage"}
    fresh = await seller.post(
        API, json={"title": "Renewal", "contact_id": person["id"], "pipeline_id": second.id}
    )
    assert fresh.json()["stage"] == "new"


async def test_lost_needs_a_reason_and_won_or_lost_set_the_probability(
    services: Services, staff: Staff
) -> None:
    seller = await staff.login(await staff.create("sales"))
    person = (await seller.post("/api/v1/contacts", json=sales_contact())).json()
    deal = (await seller.post(API, json=deal_values(person["id"], probability=40))).json()
    no_reason = await seller.patch(f"{API}/{deal['id']}", json={"stage": "lost"})
    assert no_reason.status_code == 400
    assert error_fields(no_reason) == {"lost_reason"}
    lost = await seller.patch(f"{API}/{deal['id']}", json={"stage": "lost", "lost_reason": "price"})
    assert lost.status_code == 200, lost.text
    assert (lost.json()["probability"], lost.json()["lost_reason"]) == (0, "price")
    clearing = await seller.patch(f"{API}/{deal['id']}", json={"lost_reason": None})
    assert error_fields(clearing) == {"lost_reason"}
    won = await seller.patch(f"{API}/{deal['id']}", json={"stage": "won"})
    assert (won.json()["stage"], won.json()["probability"]) == ("won", 100)
    assert won.json()["lost_reason"] is None  # a reopened or won deal keeps no lost reason
    forced = await seller.patch(f"{API}/{deal['id']}", json={"probability": 20})
    assert forced.json()["probability"] == 100  # a won deal is certain
    renamed = await seller.patch(f"{API}/{deal['id']}", json={"title": "Renamed"})
    assert renamed.status_code == 200


# --- configuration: admins only, audited -----------------------------------------------------


async def test_only_admins_change_pipelines_and_every_change_is_audited(
    services: Services, staff: Staff
) -> None:
    pipelines = services.pipelines
    rep, _ = await rep_with_person(services, staff)
    with pytest.raises(Forbidden):
        await pipelines.create_pipeline(rep, "Mine")
    admin = await admin_actor(staff)
    created = await pipelines.create_pipeline(admin, "Partners")
    assert [s.kind for s in created.stages] == ["open", "won", "lost"]
    stage = await pipelines.add_stage(admin, created.id, "Signed NDA", "open", 25)
    assert [s.key for s in (await pipelines.get(created.id)).stages] == [
        "new",
        "signed_nda",
        "won",
        "lost",
    ]
    await pipelines.update_stage(admin, stage.id, name="NDA signed", probability=30)
    moved = await pipelines.move_stage(admin, stage.id, -1)
    assert [s.key for s in moved.stages][:2] == ["signed_nda", "new"]
    renamed = await pipelines.get(created.id)
    assert renamed.stages[0].name == "NDA signed"
    assert renamed.stages[0].key == "signed_nda"  # the key deals hold never changes
    rows = (
        await AuditRecord.select()
        .where(AuditRecord.resource_type == "pipeline")
        .order_by(AuditRecord.seq)
    )
    actions = [(r["action"], r["outcome"]) for r in rows]
    assert actions == [
        ("pipeline.create", "denied"),
        ("pipeline.create", "allowed"),
        ("pipeline.stage_add", "allowed"),
        ("pipeline.stage_update", "allowed"),
        ("pipeline.stage_move", "allowed"),
    ]
    text = json.dumps([dict(r) for r in rows], default=str)
    assert "Partners" not in text
    assert "NDA signed" not in text


async def test_a_stage_with_deals_cannot_be_archived(services: Services, staff: Staff) -> None:
    admin = await admin_actor(staff)
    pipelines = services.pipelines
    stage = await pipelines.add_stage(admin, DEFAULT_PIPELINE_ID, "Trial", "open", 50)
    rep, person = await rep_with_person(services, staff)
    deal = await services.gateway.create(rep, "deal", deal_values(person, stage="trial"))
    with pytest.raises(Conflict, match="1 deal"):
        await pipelines.archive_stage(admin, stage.id)  # the rep's deal counts for the admin
    await services.gateway.update(rep, "deal", deal.id, {"stage": "proposal"})
    archived = await pipelines.archive_stage(admin, stage.id)
    assert "trial" not in [s.key for s in archived.active_stages]
    with pytest.raises(InvalidInput) as refused:
        await services.gateway.update(rep, "deal", deal.id, {"stage": "trial"})
    assert set(refused.value.problems) == {"stage"}
    won = next(s for s in archived.stages if s.kind == "won")
    with pytest.raises(Conflict, match="only won stage"):
        await pipelines.archive_stage(admin, won.id)


async def test_settings_pages_are_for_admins_only(services: Services, staff: Staff) -> None:
    seller = await web_login(staff, await staff.create("sales"))
    assert (await seller.get("/admin/pipelines")).status_code == 404
    admin = await web_login(staff, await staff.create("admin"))
    page = await admin.get("/admin/pipelines")
    assert page.status_code == 200
    assert "Qualification" in page.text
    response = await submit(admin, "/admin/pipelines", "/admin/pipelines/new", {"name": "Events"})
    assert location(response) == "/admin/pipelines"
    assert "Events" in (await admin.get("/admin/pipelines")).text
    empty = await submit(admin, "/admin/pipelines", "/admin/pipelines/new", {"name": "  "})
    assert empty.status_code == 400
    assert "must not be empty" in empty.text


# --- the board ---------------------------------------------------------------------------------


async def test_the_board_shows_a_rep_only_their_own_deals(services: Services, staff: Staff) -> None:
    gw = services.gateway
    rep_a_id = await staff.create("sales")
    rep_b = staff.actor(await staff.create("sales"))
    rep_a = staff.actor(rep_a_id)
    mine = await gw.create(rep_a, "contact", sales_contact(first_name="Ottoline"))
    theirs = await gw.create(rep_b, "contact", sales_contact(first_name="Ignatius"))
    await gw.create(rep_a, "deal", deal_values(mine.id, title="Harp strings", amount=1500))
    await gw.create(rep_a, "deal", deal_values(mine.id, title="Lute pegs", amount=500))
    await gw.create(
        rep_a, "deal", deal_values(mine.id, title="Oboe reeds", amount=700, currency="EUR")
    )
    await gw.create(rep_b, "deal", deal_values(theirs.id, title="Secret tuba", amount=99))
    client = await web_login(staff, rep_a_id)
    page = await client.get("/pipeline")
    assert page.status_code == 200
    assert "Harp strings" in page.text
    assert "Lute pegs" in page.text
    assert "Secret tuba" not in page.text
    proposal = page.text.split('data-stage="proposal"')[1].split("</section>")[0]
    assert "20.00 GBP" in proposal
    assert "7.00 EUR" in proposal
    assert "0.99" not in proposal


async def test_moving_a_card_by_its_form_and_asking_why_a_deal_was_lost(
    services: Services, staff: Staff
) -> None:
    identity = await staff.create("sales")
    rep = staff.actor(identity)
    person = await services.gateway.create(rep, "contact", sales_contact())
    deal = await services.gateway.create(rep, "deal", deal_values(person.id, title="Bassoon"))
    client = await web_login(staff, identity)
    board = f"/pipeline/{DEFAULT_PIPELINE_ID}"
    move = f"{board}/deals/{deal.id}/move"
    response = await submit(client, board, move, {"stage": "won"})
    assert location(response) == f"{board}#deal-{deal.id}"
    page = (await client.get(board)).text
    won = page.split('data-stage="won"')[1].split("</section>")[0]
    assert "Bassoon" in won
    asked = await submit(client, board, move, {"stage": "lost"})
    assert asked.status_code == 200
    assert "Why was the deal lost?" in asked.text
    assert (await services.gateway.read(rep, "deal", deal.id)).values["stage"] == "won"
    done = await submit(client, board, move, {"stage": "lost", "lost_reason": "timing"})
    assert location(done).startswith(board)
    after = await services.gateway.read(rep, "deal", deal.id)
    assert (after.values["stage"], after.values["lost_reason"]) == ("lost", "timing")
    bad = await submit(client, board, move, {"stage": "nonsense"})
    assert bad.status_code == 400
    assert "must be a stage of the pipeline" in bad.text


async def test_a_column_shows_at_most_the_cap_and_links_to_the_rest(
    services: Services, staff: Staff
) -> None:
    identity = await staff.create("sales")
    rep = staff.actor(identity)
    person = await services.gateway.create(rep, "contact", sales_contact())
    many = CARDS_PER_COLUMN + 2
    result = await services.gateway.create_many(
        rep, "deal", [deal_values(person.id, title=f"Fife {i}") for i in range(many)]
    )
    assert not result.rejected
    board = await services.pipelines.board(rep, DEFAULT_PIPELINE_ID)
    proposal = next(c for c in board.columns if c.stage.key == "proposal")
    assert (len(proposal.cards), proposal.total, proposal.more) == (CARDS_PER_COLUMN, many, 2)
    client = await web_login(staff, identity)
    page = (await client.get("/pipeline")).text
    assert re.search(r'href="/deals\?pipeline_id=[0-9a-f-]+&amp;stage=proposal">2 more', page)
    column = page.split('data-stage="proposal"')[1].split("</section>")[0]
    assert f'class="column-count">{many}<' in column  # the count is of every deal, not the cards


# --- reports -----------------------------------------------------------------------------------


async def test_reports_count_won_and_lost_by_stage_kind(services: Services, staff: Staff) -> None:
    admin = await admin_actor(staff)
    pipelines = services.pipelines
    second = await pipelines.create_pipeline(admin, "Wholesale")
    signed = await pipelines.add_stage(admin, second.id, "Contract signed", "won")
    rep, person = await rep_with_person(services, staff)
    gw = services.gateway

    async def deal(**values: Any) -> None:
        await gw.create(rep, "deal", deal_values(person, **values))

    await deal(stage="won", amount=100)
    await deal(stage="lost", lost_reason="price", amount=100)
    await deal(pipeline_id=second.id, stage=signed.key, amount=100)
    await deal(pipeline_id=second.id, stage="won", amount=100)
    await deal(pipeline_id=second.id, stage="new", amount=100)
    reports = CrmReports(gw, min_group_size=services.settings.report_min_group_size)
    rate = await reports.win_rate(rep, "all")
    assert (rate.won, rate.lost) == (3, 1)
    pipeline = await reports.pipeline(rep)
    assert sum(s.deals for s in pipeline.stages) == 5
    assert sum(s.amount for s in pipeline.stages) == 500


async def test_retention_anonymises_deals_lost_in_any_pipelines_lost_stage(
    services: Services, staff: Staff
) -> None:
    """The lost-deals retention rule follows the stage kind, not the default stage's key."""
    import datetime as dt

    admin = await admin_actor(staff)
    wholesale = await services.pipelines.create_pipeline(admin, "Wholesale")
    walked = await services.pipelines.add_stage(admin, wholesale.id, "Went elsewhere", "lost")
    rep, person = await rep_with_person(services, staff)
    gw = services.gateway
    lost = await gw.create(
        rep,
        "deal",
        deal_values(person, pipeline_id=wholesale.id, stage=walked.key, lost_reason="price"),
    )
    still_open = await gw.create(
        rep, "deal", deal_values(person, pipeline_id=wholesale.id, stage="new")
    )

    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=4 * 366)
    report = await services.retention.run(now=later)

    (line,) = [r for r in report.rules if r.rule == "lost_deals"]
    assert (line.matched, line.anonymised) == (1, 1)
    gone = await gw.read(admin, "deal", lost.id, purpose="compliance")
    assert gone.values["title"] is None
    assert gone.values["stage"] == walked.key  # the record stays, in the pipeline totals
    kept = await gw.read(admin, "deal", still_open.id, purpose="compliance")
    assert kept.values["title"]
