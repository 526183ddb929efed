"""Who may hand a record to whom: generated over role x record type x create/update x
``owner_id``/``team``, through the HTTP API.

A record's owner and team decide who can see it, so an attacker's first move is to hand a
record to an accomplice or to a team they can read. The expected outcome of every cell is
written here from the rule in the README (admins: anyone in any team; sales: themselves
only; support: a colleague in their own team, tasks and cases only), not derived from policy.csv,
so a policy change that widens a role fails this file.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from httpx import AsyncClient

from server.auth.tables import StaffUser
from server.csvio.importer import import_rows, parse_mapping, read_rows, record_type
from server.datamap import RECORD_TYPES
from server.gateway import Forbidden
from server.services import Services
from tests.admin_ui.test_admin_ui import submit, text_of, web_login
from tests.conftest import Staff, contact_values
from tests.dbutil import audit_rows, last_seq, raw_sql

API = "/api/v1"
PATHS = {
    "contact": f"{API}/contacts",
    "organization": f"{API}/organizations",
    "deal": f"{API}/deals",
    "interaction": f"{API}/interactions",
    "case": f"{API}/cases",
    "lead": f"{API}/leads",
    "task": f"{API}/tasks",
    "note": f"{API}/notes",
}
ROLES = ("admin", "sales", "support", "marketing", "compliance")

# Whom each role may make the owner: "any", "self" or "team" (a colleague in their team).
# A role that may not write a record type at all is refused before ownership is looked at.
ASSIGN = {
    "admin": dict.fromkeys(PATHS, "any"),
    "sales": dict.fromkeys(PATHS, "self"),
    "support": {"task": "team", "case": "team"},
}
CREATES = {
    "admin": set(PATHS),
    "sales": set(PATHS) - {"case"},
    "support": {"contact", "case", "interaction", "task", "note"},
}
UPDATES = CREATES


# Captured mail is written only by the capture job and survey answers only by the system
# when a person answers (no role may create either over the API); who may change captured
# mail's hands is tested in tests/server/mailcapture/test_mail_capture.py.
CAPTURED_ONLY = {"mail", "feedback"}
# A case's messages are written only by the desk (a reply, a note, an e-mail): they take the
# case's team, never one the client names; tested in tests/server/servicedesk/test_service_desk.py.
DESK_ONLY = {"case_message"}


def test_every_record_type_is_in_the_matrix() -> None:
    assert set(PATHS) | CAPTURED_ONLY | DESK_ONLY == set(RECORD_TYPES)


@dataclass(frozen=True)
class People:
    me: Any  # the acting user's StaffIdentity
    mate: Any  # an active colleague in the same team (north)
    stranger: Any  # an active user in another team (south)
    gone: Any  # a disabled user in the same team


@dataclass(frozen=True)
class Ask:
    name: str
    body: dict[str, Any]


def asks(people: People) -> list[Ask]:
    return [
        Ask("self", {"owner_id": people.me.user_id}),
        Ask("own team", {"team": "north"}),
        Ask("colleague", {"owner_id": people.mate.user_id}),
        Ask("colleague and team", {"owner_id": people.mate.user_id, "team": "north"}),
        Ask("stranger", {"owner_id": people.stranger.user_id}),
        Ask("other team", {"team": "south"}),
        Ask("colleague into other team", {"owner_id": people.mate.user_id, "team": "south"}),
        Ask("unknown team", {"team": "nowhere"}),
        Ask("no such user", {"owner_id": 999_999}),
        Ask("disabled user", {"owner_id": people.gone.user_id}),
        Ask("negative id", {"owner_id": -5}),
        Ask("id too large", {"owner_id": 2**40}),
        Ask("text id", {"owner_id": "7"}),
        Ask("empty team", {"team": ""}),
        Ask("NUL in team", {"team": "nor\x00th"}),
    ]


def malformed(ask: Ask) -> bool:
    """An owner that is not a staff id, or a team that is not a name: 400 for anyone."""
    owner = ask.body.get("owner_id", 1)
    team = ask.body.get("team", "north")
    bad_owner = not isinstance(owner, int) or isinstance(owner, bool) or not 0 < owner < 2**31
    return bad_owner or not team or "\x00" in team


def expected(role: str, resource: str, ask: Ask, people: People) -> tuple[int, int, str]:
    """(status, owner, team) the API must answer with; owner/team only on success."""
    if malformed(ask):
        return 400, 0, ""
    body = ask.body
    owner = body.get("owner_id", people.me.user_id)
    team = body.get("team")
    owners_team = {
        people.me.user_id: "north",
        people.mate.user_id: "north",
        people.stranger.user_id: "south",
    }
    final_team = team if team is not None else owners_team.get(owner, "north")
    level = ASSIGN.get(role, {}).get(resource, "none")
    unchanged = owner == people.me.user_id and final_team == "north"
    if unchanged:
        return 201, owner, final_team
    allowed = {
        "any": True,
        "self": False,
        "team": final_team == "north" and owner in owners_team and owner != people.stranger.user_id,
        "none": False,
    }[level]
    if level == "team" and owner not in owners_team:
        allowed = final_team == "north"  # then the owner is checked (400), not the policy
    if not allowed:
        return 403, 0, ""
    if owner not in owners_team or final_team not in {"north", "south"}:
        return 400, 0, ""
    return 201, owner, final_team


async def people(staff: Staff, services: Services, role: str) -> People:
    me = await staff.create(role, "north")
    mate = await staff.create("sales", "north")
    stranger = await staff.create("sales", "south")
    gone = await staff.create("sales", "north")
    await StaffUser.update({StaffUser.is_active: False}).where(StaffUser.id == gone.user_id)
    return People(me, mate, stranger, gone)


async def new_values(client: AsyncClient, resource: str, admin: AsyncClient) -> dict[str, Any]:
    """Values for a new record of this type that the acting client may reference."""
    if resource in {"contact", "organization", "lead"}:
        return base_values(resource)
    contact = await client.post(PATHS["contact"], json=base_values("contact"))
    if contact.status_code != 201:  # a role that cannot create contacts: an admin's
        contact = await admin.post(PATHS["contact"], json=base_values("contact"))
    contact_id = contact.json()["id"]
    return {
        "deal": {"title": "Renewal", "amount": 1000, "currency": "GBP", "contact_id": contact_id},
        "interaction": {
            "channel": "phone_call",
            "direction": "inbound",
            "occurred_at": "2026-11-30T10:15:00Z",
            "summary": "Rang about the invoice",
            "contact_id": contact_id,
        },
        "case": {"title": "Leaking barrel", "kind": "product_return", "contact_id": contact_id},
        "task": {"title": "Ring back", "due_at": "2027-01-05T09:00:00Z", "contact_id": contact_id},
        "note": {"body": "Prefers calls", "record_type": "contact", "record_id": contact_id},
    }[resource]


def base_values(resource: str) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    if resource == "contact":
        values = contact_values()
        del values["birth_date"], values["notes"]  # support may set neither
        return values
    if resource == "organization":
        return {"name": f"Initech {tag}", "domain": f"initech-{tag}.example"}
    return {"first_name": "Ada", "last_name": "Byron", "email": f"ada.{tag}@example.org"}


@pytest.mark.parametrize("resource", sorted(PATHS))
@pytest.mark.parametrize("role", ROLES)
async def test_ownership_matrix(
    staff: Staff, services: Services, database_url: str, role: str, resource: str
) -> None:
    admin = await staff.login(await staff.create("admin", "hq"))
    crew = await people(staff, services, role)
    client = await staff.login(crew.me)
    base = PATHS[resource]

    # create
    for ask in asks(crew):
        values = await new_values(client, resource, admin)
        before = await last_seq(database_url)
        response = await client.post(base, json={**values, **ask.body})
        if resource not in CREATES.get(role, set()):
            assert response.status_code == (400 if malformed(ask) else 403), ask.name
            continue
        status, owner, team = expected(role, resource, ask, crew)
        assert response.status_code == status, (ask.name, response.text)
        if status == 201:
            assert (response.json()["owner_id"], response.json()["team"]) == (owner, team)
            await check_moved_event(database_url, before, "create", owner, team, crew)
        else:
            assert response.json()["detail"], ask.name  # a reason, in words
            await check_nothing_written(database_url, before, resource)

    # update: a record the actor may change (their own, or the team's)
    writable = resource in UPDATES.get(role, set())
    if writable:
        record = (await client.post(base, json=await new_values(client, resource, admin))).json()
    else:  # someone else's record in the actor's team: refused like a missing one (404)
        owner = await staff.login(await staff.create("sales" if resource != "case" else "support"))
        record = (await owner.post(base, json=await new_values(owner, resource, admin))).json()
    url = f"{base}/{record['id']}"
    for ask in asks(crew):
        before = await last_seq(database_url)
        response = await client.patch(url, json=ask.body)
        if not writable:
            assert response.status_code in {400, 404}, (ask.name, response.text)
            continue
        status, owner, team = expected(role, resource, ask, crew)
        status = 200 if status == 201 else status
        assert response.status_code == status, (ask.name, response.text)
        now = (await admin.get(url)).json()
        if status == 200:
            assert (now["owner_id"], now["team"]) == (owner, team), ask.name
            await check_moved_event(database_url, before, "update", owner, team, crew)
            # hand it back so the next ask starts from the actor's own record
            back = await admin.patch(url, json={"owner_id": crew.me.user_id, "team": "north"})
            assert back.status_code == 200, back.text
        else:
            assert (now["owner_id"], now["team"]) == (crew.me.user_id, "north"), ask.name


async def check_moved_event(
    database_url: str, before: int, action: str, owner: int, team: str, crew: People
) -> None:
    """A change of hands is in the audit trail with the old and new owner and team."""
    rows = [r for r in await audit_rows(database_url, before) if r["action"] == action]
    assert [r["outcome"] for r in rows][-1:] == ["allowed"]
    detail = json.loads(rows[-1]["detail"] or "{}")
    if (owner, team) == (crew.me.user_id, "north"):
        assert "owner_after" not in detail
        return
    assert (detail["owner_before"], detail["owner_after"]) == (crew.me.user_id, owner)
    assert (detail["team_before"], detail["team_after"]) == ("north", team)


async def check_nothing_written(database_url: str, before: int, resource: str) -> None:
    rows = await audit_rows(database_url, before)
    creates = [r for r in rows if r["action"] == "create" and r["resource_type"] == resource]
    assert all(r["outcome"] != "allowed" for r in creates)


# --- other routes: the admin form and CSV import ---------------------------------------------


@pytest.mark.parametrize("role", ["sales", "support"])
async def test_the_admin_edit_form_cannot_move_a_record(
    staff: Staff, services: Services, role: str
) -> None:
    """The form has no owner field; one added by hand is ignored, not obeyed."""
    me = await staff.create(role, "north")
    stranger = await staff.create("sales", "south")
    api = await staff.login(me)
    contact = (await api.post(PATHS["contact"], json=base_values("contact"))).json()
    browser = await web_login(staff, me)
    edit = f"/contacts/{contact['id']}/edit"
    response = await submit(
        browser, edit, edit, {"city": "Hull", "owner_id": str(stranger.user_id), "team": "south"}
    )
    assert response.status_code == 303, response.text
    (row,) = await raw_sql(
        services.settings.database_url,
        "SELECT owner_id, team FROM contact WHERE id = ?",
        contact["id"],
    )
    assert (row["owner_id"], row["team"]) == (me.user_id, "north")
    assert (await api.get(f"{PATHS['contact']}/{contact['id']}")).json()["city"] == "Hull"


async def test_csv_import_cannot_hand_rows_to_someone_else(
    staff: Staff, services: Services
) -> None:
    """``consentry import --as rep --owner other`` is refused before any row is written."""
    rep = staff.actor(await staff.create("sales", "north"))
    other = await staff.create("sales", "south")
    rt = record_type("contact")
    content = b"first_name,last_name,email\nAda,Byron,ada.import@example.org\n"
    settable = services.gateway.permitted_fields(rep, "contact", "create") or frozenset()
    plan, rows = read_rows(content, rt, parse_mapping((), rt), settable)
    for owner_id, team in ((other.user_id, None), (None, "south"), (rep.user_id, "south")):
        with pytest.raises(Forbidden, match="only to yourself"):
            await import_rows(
                services.gateway, rep, "contact", plan, rows, dry_run=False,
                owner_id=owner_id, team=team,
            )  # fmt: skip
    assert (await services.gateway.list(rep, "contact")).total == 0
    report = await import_rows(
        services.gateway, rep, "contact", plan, rows, dry_run=False, owner_id=rep.user_id
    )
    assert report.created == 1


# --- the owner select in the admin ---------------------------------------------------------


def owner_options(page_html: str) -> set[str]:
    select = re.search(r'<select id="field-owner_id".*?</select>', page_html, re.S)
    return set(re.findall(r'<option value="(\d+)"', select.group(0))) if select else set()


async def test_an_admin_hands_a_record_to_a_rep_in_the_edit_form(
    staff: Staff, services: Services, database_url: str
) -> None:
    admin = await staff.create("admin", "hq")
    rep = await staff.create("sales", "south")
    gone = await staff.create("sales", "south")
    await StaffUser.update({StaffUser.is_active: False}).where(StaffUser.id == gone.user_id)
    api = await staff.login(admin)
    contact = (await api.post(PATHS["contact"], json=base_values("contact"))).json()
    browser = await web_login(staff, admin)
    edit = f"/contacts/{contact['id']}/edit"
    page = await browser.get(edit)
    assert {str(admin.user_id), str(rep.user_id)} <= owner_options(page.text)
    assert str(gone.user_id) not in owner_options(page.text)  # only active staff

    before = await last_seq(database_url)
    response = await submit(browser, edit, edit, {"owner_id": str(rep.user_id)})
    assert response.status_code == 303, response.text
    now = (await api.get(f"{PATHS['contact']}/{contact['id']}")).json()
    assert (now["owner_id"], now["team"]) == (rep.user_id, "south")
    (event,) = [r for r in await audit_rows(database_url, before) if r["action"] == "update"]
    detail = json.loads(event["detail"])
    assert (detail["owner_before"], detail["owner_after"]) == (admin.user_id, rep.user_id)
    assert (await (await staff.login(rep)).get(f"{PATHS['contact']}/{contact['id']}")).is_success

    # A disabled user typed into the form by hand: refused, nothing changed.
    response = await submit(browser, edit, edit, {"owner_id": str(gone.user_id)})
    assert response.status_code == 400
    assert "not an active staff user" in text_of(response)
    now = (await api.get(f"{PATHS['contact']}/{contact['id']}")).json()
    assert now["owner_id"] == rep.user_id


async def test_support_picks_a_task_owner_only_from_their_team(
    staff: Staff, services: Services
) -> None:
    desk = await staff.create("support", "north")
    mate = await staff.create("support", "north")
    stranger = await staff.create("sales", "south")
    browser = await web_login(staff, desk)
    page = await browser.get("/tasks/new")
    assert page.status_code == 200
    assert owner_options(page.text) == {str(desk.user_id), str(mate.user_id)}
    assert owner_options((await browser.get("/contacts/new")).text) == set()  # not theirs

    values = {"title": "Ring back", "due_at": "2027-01-05T09:00", "owner_id": str(mate.user_id)}
    response = await submit(browser, "/tasks/new", "/tasks/new", values)
    assert response.status_code == 303, text_of(response)
    (task,) = (await services.gateway.list(staff.actor(mate), "task")).items
    assert (task.owner_id, task.team) == (mate.user_id, "north")

    tampered = {**values, "owner_id": str(stranger.user_id)}
    response = await submit(browser, "/tasks/new", "/tasks/new", tampered)
    assert response.status_code == 400
    assert "only to an active colleague in your own team" in text_of(response)
    assert (await services.gateway.list(staff.actor(desk), "task")).total == 1


async def test_sales_get_no_owner_select(staff: Staff) -> None:
    browser = await web_login(staff, await staff.create("sales", "north"))
    for path in ("/contacts/new", "/tasks/new", "/deals/new", "/leads/new"):
        page = await browser.get(path)
        assert page.status_code == 200, path
        assert owner_options(page.text) == set(), path
