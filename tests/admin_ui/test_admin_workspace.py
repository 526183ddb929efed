"""The admin's daily workspace: the sidebar menu, the role dashboards and the deal board.

What a user notices: the menu offers each role its groups of work (and never a page that
answers 404), Tasks is one click away; the dashboard's figures are the user's own (scope
applied, never someone else's deals or another team's cases); the board shows counts and
totals per stage, and a role that may not move deals gets no move controls and a clear
403 page, not a 404, when it posts a move anyway.
"""

from __future__ import annotations

import datetime as dt
import html
import re
import uuid

import pytest

from audit.tables import AuditRecord
from server.gateway import InvalidInput
from server.gateway.tables import Deal
from server.pipelines.tables import DEFAULT_PIPELINE_ID
from server.services import Services
from tests.admin_ui.test_admin_ui import csrf_of, text_of, web_login
from tests.conftest import Staff
from tests.server.crm.test_crm_records import case_values, deal_values, sales_contact


def support_contact(**overrides: str) -> dict[str, object]:
    """Contact values support may write (no notes, no birth date)."""
    return {k: v for k, v in sales_contact(**overrides).items() if k != "notes"}


MENU = re.compile(r'<nav aria-label="Main" id="main-menu".*?</nav>', re.S)
GROUP = re.compile(r'<h2 class="menu-group-label"[^>]*>([^<]+)</h2>')
LINK = re.compile(r'<a href="([^"]+)"[^>]*>([^<]+)</a>')

EXPECTED_GROUPS = {
    "admin": ["Sales", "Service", "Marketing", "Compliance", "Settings"],
    "sales": ["Sales", "Service"],
    "support": ["Service"],
    "marketing": ["Sales", "Service", "Marketing"],  # knowledge base, feedback results
    "compliance": ["Sales", "Service", "Compliance", "Settings"],  # Recipients (Art. 19)
}


def menu_of(page_text: str) -> tuple[list[str], dict[str, str]]:
    """The group headings and the links (label -> href) of the sidebar."""
    found = MENU.search(page_text)
    assert found, "no sidebar menu on the page"
    links = {html.unescape(label): href for href, label in LINK.findall(found.group(0))}
    return GROUP.findall(found.group(0)), links


def kpi(page_text: str, name: str) -> int:
    found = re.search(rf'data-kpi="{name}">(\d+)<', page_text)
    assert found, f"no {name} figure on the dashboard"
    return int(found.group(1))


@pytest.mark.parametrize("role", sorted(EXPECTED_GROUPS))
async def test_each_role_gets_its_groups_and_every_menu_link_opens(staff: Staff, role: str) -> None:
    client = await web_login(staff, await staff.create(role))
    page = await client.get("/")
    groups, links = menu_of(page.text)
    assert groups == EXPECTED_GROUPS[role]
    assert links["Dashboard"] == "/"
    # Tasks from the menu for every role that may list tasks (marketing may not).
    assert ("Tasks" in links) is (role != "marketing")
    if role != "marketing":
        assert links["Tasks"] == "/tasks"
    assert "Users" in links if role == "admin" else "Users" not in links
    assert ("Pipeline" in links) is (role in {"admin", "sales", "marketing"})
    # Account and sign-out sit in the top bar, outside the menu, on every page.
    assert 'href="/account"' in page.text
    assert "Sign out" in page.text
    for label, href in links.items():
        answer = await client.get(href)
        assert answer.status_code == 200, (role, label, href, answer.status_code)
        _, here = menu_of(answer.text)
        assert label in here  # the same menu everywhere
    # Every link on the dashboard itself leads somewhere this role may go.
    main = page.text.split('<main id="main"')[1].split("</main>")[0]
    for href in set(re.findall(r'href="(/[^"]*)"', main)):
        answer = await client.get(html.unescape(href))
        assert answer.status_code == 200, (role, href, answer.status_code)


async def test_the_current_page_is_marked_in_the_menu(staff: Staff) -> None:
    client = await web_login(staff, await staff.create("sales"))
    page = await client.get("/contacts/duplicates")
    current = re.findall(r'<a href="([^"]+)" aria-current="page">', MENU.search(page.text).group(0))  # type: ignore[union-attr]
    assert current == ["/contacts/duplicates"]  # not Contacts as well


async def test_a_sales_dashboard_counts_only_the_reps_own_work(
    services: Services, staff: Staff
) -> None:
    gw = services.gateway
    rep_identity = await staff.create("sales")
    rep, other = staff.actor(rep_identity), staff.actor(await staff.create("sales"))
    mine = await gw.create(rep, "contact", sales_contact(first_name="Perpetua"))
    theirs = await gw.create(other, "contact", sales_contact(first_name="Quentin"))
    for stage in ("qualification", "proposal", "proposal"):
        await gw.create(rep, "deal", deal_values(mine.id, stage=stage, amount=100_000))
    await gw.create(rep, "deal", deal_values(mine.id, stage="won", amount=250_000))
    for stage in ("proposal", "won", "won"):
        await gw.create(other, "deal", deal_values(theirs.id, stage=stage))
    now = dt.datetime.now(dt.UTC)
    await gw.create(
        rep,
        "task",
        {
            "title": "Call back",
            "due_at": (now - dt.timedelta(hours=1)).isoformat(),
            "contact_id": mine.id,
        },
    )
    await gw.create(
        rep,
        "task",
        {
            "title": "Send quote",
            "due_at": (now + dt.timedelta(days=3)).isoformat(),
            "contact_id": mine.id,
        },
    )
    await gw.create(
        other,
        "task",
        {"title": "Not mine", "due_at": now.isoformat(), "contact_id": theirs.id},
    )
    client = await web_login(staff, rep_identity)
    page = (await client.get("/")).text
    assert kpi(page, "open-deals") == 3
    assert kpi(page, "won-this-month") == 1
    assert kpi(page, "tasks-due") == 1
    proposal = page.split('<tr data-stage="proposal">')[1].split("</tr>")[0]
    assert re.search(r'class="num">2<', proposal)
    assert "2,000.00 GBP" in proposal
    text = text_of(await client.get("/"))
    assert "2,500.00 GBP" in text  # this month's won value
    # Support, marketing and compliance sections are not a sales rep's work.
    for absent in ("SLA breaches", "Audience sizes", "Open requests", "Audit trail"):
        assert absent not in text


async def test_a_support_dashboard_shows_my_open_cases_and_team_sla_breaches(
    services: Services, staff: Staff
) -> None:
    gw = services.gateway
    agent_identity = await staff.create("support", team="north")
    agent = staff.actor(agent_identity)
    colleague = staff.actor(await staff.create("support", team="north"))
    far_away = staff.actor(await staff.create("support", team="south"))
    person = await gw.create(agent, "contact", support_contact(first_name="Rosalind"))
    elsewhere = await gw.create(far_away, "contact", support_contact(first_name="Silas"))
    past = (dt.datetime.now(dt.UTC) - dt.timedelta(days=1)).isoformat()
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(days=2)).isoformat()
    await gw.create(agent, "case", case_values(person.id, due_at=past))
    await gw.create(agent, "case", case_values(person.id, due_at=future))
    await gw.create(agent, "case", case_values(person.id, due_at=past, status="resolved"))
    await gw.create(colleague, "case", case_values(person.id, due_at=past))
    await gw.create(far_away, "case", case_values(elsewhere.id, due_at=past))
    client = await web_login(staff, agent_identity)
    page = (await client.get("/")).text
    assert kpi(page, "my-open-cases") == 2
    # Mine and my colleague's (2, not the south team's 3): a small group over the team's
    # cases, suppressed (docs/reports.md, "Where the small-group rule applies").
    assert 'data-kpi="sla-breaches"><span class="suppressed"' in page
    text = text_of(await client.get("/"))
    assert "Open deals by stage" not in text
    assert "Won this month" not in text


async def test_marketing_and_compliance_dashboards(services: Services, staff: Staff) -> None:
    marketing = await web_login(staff, await staff.create("marketing"))
    text = text_of(await marketing.get("/"))
    assert "Campaigns" in text
    assert "Audience sizes" in text
    assert "Open deals by stage" not in text
    assert "Tasks due today" not in text
    officer = await web_login(staff, await staff.create("compliance"))
    page = (await officer.get("/")).text
    assert kpi(page, "open-requests") == 0
    assert kpi(page, "open-alerts") == 0
    assert 'data-verification="ok"' in page
    assert "Open requests by deadline" in page
    assert "Open deals by stage" not in page
    assert "Audience sizes" not in page


async def test_recent_activity_lists_my_own_changes(services: Services, staff: Staff) -> None:
    identity = await staff.create("sales")
    rep = staff.actor(identity)
    person = await services.gateway.create(rep, "contact", sales_contact(first_name="Ulrike"))
    await services.gateway.update(rep, "contact", person.id, {"city": "Bern"})
    client = await web_login(staff, identity)
    page = (await client.get("/")).text
    activity = page.split('id="dash-activity"')[1].split("</section>")[0]
    assert f'href="/contacts/{person.id}">Changed a contact</a>' in activity
    assert f'href="/contacts/{person.id}">Created a contact</a>' in activity
    assert "Ulrike" not in activity  # ids and actions, no values
    assert "Bern" not in activity


# --- the board ---------------------------------------------------------------------------------


async def test_the_board_shows_counts_totals_people_and_owners(
    services: Services, staff: Staff
) -> None:
    identity = await staff.create("sales")
    rep = staff.actor(identity)
    person = await services.gateway.create(
        rep, "contact", sales_contact(first_name="Theodora", last_name="Quill")
    )
    for amount in (100_000, 50_000):
        await services.gateway.create(
            rep, "deal", deal_values(person.id, title="Viola bows", amount=amount)
        )
    client = await web_login(staff, identity)
    page = (await client.get("/pipeline")).text
    proposal = page.split('data-stage="proposal"')[1].split("</section>")[0]
    assert re.search(r'class="column-count">2<', proposal)
    assert "1,500.00 GBP" in proposal
    assert "Theodora Quill" in proposal
    assert identity.display_name in proposal  # the owner
    assert "31 Jan 2027" in proposal  # the expected close date
    assert proposal.count("move-form") == 2


async def test_marketing_gets_no_move_controls_and_a_forced_move_is_a_clear_403(
    services: Services, staff: Staff
) -> None:
    rep = staff.actor(await staff.create("sales"))
    person = await services.gateway.create(rep, "contact", sales_contact())
    deal = await services.gateway.create(rep, "deal", deal_values(person.id, amount=990_000))
    client = await web_login(staff, await staff.create("marketing"))
    board = await client.get("/pipeline")
    assert board.status_code == 200
    assert "9,900.00 GBP" in board.text  # totals for campaign planning
    assert "move-form" not in board.text
    assert "Move" not in text_of(board)
    assert "board.js" not in board.text
    before = await AuditRecord.count().where(AuditRecord.outcome == "denied")
    forced = await client.post(
        f"/pipeline/{DEFAULT_PIPELINE_ID}/deals/{deal.id}/move",
        data={"stage": "won", "_csrf_token": csrf_of(board)},
    )
    assert forced.status_code == 403
    assert "may look at the board but not move deals" in text_of(forced)
    assert (await services.gateway.read(rep, "deal", deal.id)).values["stage"] == "proposal"
    assert await AuditRecord.count().where(AuditRecord.outcome == "denied") > before
    # The same answer for a deal that does not exist: nothing is revealed.
    ghost = await client.post(
        f"/pipeline/{DEFAULT_PIPELINE_ID}/deals/00000000-0000-4000-8000-000000000000/move",
        data={"stage": "won", "_csrf_token": csrf_of(board)},
    )
    assert ghost.status_code == 403


async def test_listing_records_by_id_keeps_the_scope_and_refuses_bad_ids(
    services: Services, staff: Staff
) -> None:
    """The board's names come from a list by ``id``: another rep's contact is not in it,
    and ids that are not ids are a 400-class refusal naming the filter, not a 500."""
    gw = services.gateway
    rep = staff.actor(await staff.create("sales"))
    other = staff.actor(await staff.create("sales"))
    mine = await gw.create(rep, "contact", sales_contact(first_name="Wilhelmina"))
    theirs = await gw.create(other, "contact", sales_contact(first_name="Xavier"))
    page = await gw.list(rep, "contact", filters={"id": [mine.id, theirs.id]}, page_size=10)
    assert [p.id for p in page.items] == [mine.id]
    assert page.total == 1
    with pytest.raises(InvalidInput) as refused:
        await gw.list(rep, "contact", filters={"id": ["not-an-id"]})
    assert set(refused.value.problems) == {"id"}


async def test_a_deal_remembers_when_it_entered_its_stage(services: Services, staff: Staff) -> None:
    """Entering a stage stamps the time; an edit that keeps the stage keeps it; nobody may
    set it by hand; the board counts the days in stage from it."""
    gw = services.gateway
    identity = await staff.create("sales")
    rep = staff.actor(identity)
    person = await gw.create(rep, "contact", sales_contact())
    deal = await gw.create(rep, "deal", deal_values(person.id, title="Zither"))
    entered = deal.values["stage_entered_at"]
    assert entered
    edited = await gw.update(rep, "deal", deal.id, {"amount": 5_000, "stage": "proposal"})
    assert edited.values["stage_entered_at"] == entered  # same stage: same entry time
    with pytest.raises(InvalidInput) as refused:
        await gw.update(rep, "deal", deal.id, {"stage_entered_at": "2020-01-01T00:00:00Z"})
    assert set(refused.value.problems) == {"stage_entered_at"}
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=12)
    await Deal.update({Deal.stage_entered_at: long_ago}).where(Deal.id == uuid.UUID(deal.id))
    client = await web_login(staff, identity)
    card = (await client.get("/pipeline")).text.split(f'id="deal-{deal.id}"')[1].split("</li>")[0]
    assert re.search(r'class="card-age"[^>]*>12 d<', card)
    moved = await gw.update(rep, "deal", deal.id, {"stage": "negotiation"})
    assert moved.values["stage_entered_at"] > long_ago.isoformat()
    card = (await client.get("/pipeline")).text.split(f'id="deal-{deal.id}"')[1].split("</li>")[0]
    assert re.search(r'class="card-age"[^>]*>0 d<', card)
    form = await client.get(f"/deals/{deal.id}/edit")
    assert 'name="stage_entered_at"' not in form.text  # not a form input
    assert "In stage since" not in text_of(form)
