"""Tasks, notes and "my day" (issue 4, item 4).

A task about a person is sealed under their key, a task about nobody under a key of its
own; a note takes the subject of the record it is attached to. So erasing a person takes
their tasks and notes, and a subject export finds them. "My day" groups the signed-in
user's open tasks (due or overdue, reminders, this week) and marks them done in one POST.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import uuid
import zipfile
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
from httpx import AsyncClient

from admin_ui.pages.my_day import plan_day
from server.dsr.export import build_export
from server.gateway import Record
from server.services import Services
from server.vault.tables import DataSubject, SubjectKey
from tests.admin_ui.test_admin_ui import csrf_of, location, text_of, web_login
from tests.conftest import ENGINE, Staff, contact_values
from tests.server.crm.test_crm_records import PATHS as CRM_PATHS
from tests.server.crm.test_crm_records import deal_values, error_fields, sales_contact
from tests.server.dsr.test_dsr_export import SCHEMA_FILE
from tests.server.vault.test_at_rest import _database_copy

TASKS = "/api/v1/tasks"
NOTES = "/api/v1/notes"
TASK_TITLE = "Ring Philippa Quennell-Abernathy about the barrel tasting"
NOTE_BODY = "Philippa prefers calls after four; her brother Tobias handles invoices"
OTHER_NOTE = "Ambrose Willoughby-Pratt asked for the spring catalogue"
PATHS = {**CRM_PATHS, "task": TASKS, "note": NOTES}


async def post(client: AsyncClient, resource: str, values: dict[str, Any]) -> dict[str, Any]:
    response = await client.post(PATHS[resource], json=values)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def soon(**delta: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(**delta)).isoformat()


def task_values(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {"title": TASK_TITLE, "due_at": soon(days=1), "priority": "high"}
    values.update(overrides)
    return values


async def seller(staff: Staff, team: str = "north") -> tuple[AsyncClient, dict[str, Any]]:
    client = await staff.login(await staff.create("sales", team=team))
    return client, await post(client, "contact", sales_contact())


# --- tasks: CRUD, scope, subject -------------------------------------------------------------


async def test_a_task_about_a_contact_round_trip(staff: Staff) -> None:
    rep, contact = await seller(staff)
    task = await post(rep, "task", task_values(contact_id=contact["id"]))
    assert task["subject_id"] == contact["subject_id"]  # sealed under the person's key
    assert task["status"] == "open"  # the default
    assert task["title"] == TASK_TITLE
    changed = await rep.patch(f"{TASKS}/{task['id']}", json={"status": "done"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["status"] == "done"
    listed = (await rep.get(TASKS, params={"status": "open"})).json()
    assert listed["total"] == 0
    bad = await rep.patch(f"{TASKS}/{task['id']}", json={"status": "finished"})
    assert bad.status_code == 400
    assert error_fields(bad) == {"status"}
    moved = await rep.patch(f"{TASKS}/{task['id']}", json={"contact_id": str(uuid.uuid4())})
    assert moved.status_code == 400
    assert "contact_id" in error_fields(moved)
    assert (await rep.delete(f"{TASKS}/{task['id']}")).status_code == 204
    # The person is untouched: their key is not shredded with the task.
    assert (await rep.get(f"{PATHS['contact']}/{contact['id']}")).status_code == 200


async def test_a_task_about_nobody_has_a_key_of_its_own(staff: Staff) -> None:
    rep, _ = await seller(staff)
    task = await post(rep, "task", task_values(title="Order new cooperage tools"))
    subject = await DataSubject.select().where(DataSubject.id == uuid.UUID(task["subject_id"]))
    assert [row["kind"] for row in subject] == ["task"]
    assert (await rep.get(f"{TASKS}/{task['id']}")).json()["title"] == "Order new cooperage tools"
    assert (await rep.delete(f"{TASKS}/{task['id']}")).status_code == 204
    keys = await SubjectKey.count().where(SubjectKey.subject_id == uuid.UUID(task["subject_id"]))
    assert keys == 0  # deleting it shredded its own key


async def test_tasks_by_role(staff: Staff) -> None:
    rep, contact = await seller(staff)
    other_rep, _ = await seller(staff)
    task = await post(rep, "task", task_values(contact_id=contact["id"]))
    # Another rep (same team): their own tasks only - someone else's is a 404.
    assert (await other_rep.get(f"{TASKS}/{task['id']}")).status_code == 404
    assert (await other_rep.get(TASKS)).json()["total"] == 0
    hijack = await other_rep.patch(f"{TASKS}/{task['id']}", json={"status": "done"})
    assert hijack.status_code == 404
    # Sales assign to themselves only; moving a task out of their scope is refused.
    handed = await rep.patch(f"{TASKS}/{task['id']}", json={"owner_id": 999_999})
    assert handed.status_code == 403
    # Support: their team's tasks, handed between teammates.
    support = await staff.create("support", team="north")
    mate = await staff.create("support", team="north")
    desk = await staff.login(support)
    own = await post(desk, "task", task_values(title="Chase the courier"))
    handed = await desk.patch(f"{TASKS}/{own['id']}", json={"owner_id": mate.user_id})
    assert handed.status_code == 200
    assert handed.json()["owner_id"] == mate.user_id
    assert (await (await staff.login(mate)).get(f"{TASKS}/{own['id']}")).status_code == 200
    # Compliance: metadata only; marketing: nothing.
    officer = await staff.login(await staff.create("compliance"))
    seen = (await officer.get(f"{TASKS}/{task['id']}")).json()
    assert "title" not in seen
    assert "title" in seen["restricted_fields"]
    marketing = await staff.login(await staff.create("marketing"))
    assert (await marketing.get(TASKS)).status_code == 403
    # Admin: everything, assigns to anyone.
    admin = await staff.login(await staff.create("admin"))
    assigned = await admin.patch(f"{TASKS}/{task['id']}", json={"owner_id": support.user_id})
    assert assigned.status_code == 200


async def test_a_tasks_deal_must_be_its_contacts(staff: Staff) -> None:
    rep, jane = await seller(staff)
    joe = await post(rep, "contact", sales_contact(first_name="Joe"))
    deal = await post(rep, "deal", deal_values(jane["id"]))
    ok = await rep.post(TASKS, json=task_values(contact_id=jane["id"], deal_id=deal["id"]))
    assert ok.status_code == 201, ok.text
    for values in (
        task_values(contact_id=joe["id"], deal_id=deal["id"]),
        task_values(deal_id=deal["id"]),  # about nobody, yet on Jane's deal
    ):
        refused = await rep.post(TASKS, json=values)
        assert refused.status_code == 400
        assert error_fields(refused) == {"deal_id"}


async def test_the_due_before_filter(staff: Staff) -> None:
    rep, _ = await seller(staff)
    await post(rep, "task", task_values(title="Early", due_at="2030-01-01T09:00:00Z"))
    await post(rep, "task", task_values(title="Late", due_at="2030-01-03T09:00:00+02:00"))
    found = (await rep.get(TASKS, params={"due_at_before": "2030-01-02T00:00:00Z"})).json()
    assert [t["title"] for t in found["items"]] == ["Early"]
    bad = await rep.get(TASKS, params={"due_at_before": "next tuesday"})
    assert bad.status_code == 400
    encrypted = await rep.get(TASKS, params={"title_before": "x"})
    assert encrypted.status_code == 400


# --- my day ----------------------------------------------------------------------------------


def _task(title: str, due_at: str, remind_at: str | None = None, **extra: Any) -> Record:
    now = dt.datetime.now(dt.UTC)
    values = {"title": title, "due_at": due_at, "remind_at": remind_at, "status": "open"}
    return Record(
        resource="task",
        id=str(uuid.uuid4()),
        subject_id=str(uuid.uuid4()),
        owner_id=1,
        team="north",
        created_at=now,
        updated_at=now,
        values={"priority": "normal", **values, **extra},
        restricted=(),
    )


def test_my_day_groups_around_midnight() -> None:
    now = dt.datetime(2026, 12, 1, 23, 30, tzinfo=dt.UTC)
    tasks = [
        _task("tonight", "2026-12-01T23:59:00+00:00"),
        _task("after midnight", "2026-12-02T00:00:00+00:00"),
        _task("yesterday", "2026-11-30T10:00:00+00:00"),
        _task("this morning, urgent", "2026-12-01T08:00:00+00:00", priority="high"),
        _task("this morning", "2026-12-01T08:00:00+00:00", priority="low"),
        _task("next month, reminded", "2027-01-05T09:00:00+00:00", "2026-12-01T23:00:00+00:00"),
        _task("next month, later reminder", "2027-01-05T09:00:00+00:00", "2026-12-02T08:00:00Z"),
        _task("in a week", "2026-12-08T23:59:00+00:00"),
        _task("in eight days", "2026-12-09T00:00:00+00:00"),
        _task("done already", "2026-11-30T10:00:00+00:00", status="done"),
    ]
    plan = plan_day(tasks, now)
    assert [t.title for t in plan.due] == [
        "yesterday",
        "this morning, urgent",
        "this morning",
        "tonight",
    ]
    assert [t.overdue for t in plan.due] == [True, True, True, False]
    assert [t.title for t in plan.reminders] == ["next month, reminded"]
    assert [t.title for t in plan.upcoming] == ["after midnight", "in a week"]
    # Five minutes past midnight, "after midnight" is today's and "tonight" overdue.
    plan = plan_day(tasks, dt.datetime(2026, 12, 2, 0, 5, tzinfo=dt.UTC))
    assert [(t.title, t.overdue) for t in plan.due][-2:] == [
        ("tonight", True),
        ("after midnight", True),
    ]
    assert "in eight days" in [t.title for t in plan.upcoming]


def test_my_day_runs_midnight_to_midnight_where_the_user_lives() -> None:
    """At 00:30 in Berlin (23:30 UTC the day before) "today" is Berlin's new day: a task
    due at 23:30 Berlin time is today's, one due at Berlin's next midnight is not."""
    now = dt.datetime(2026, 12, 1, 23, 30, tzinfo=dt.UTC)
    tasks = [
        _task("late tonight in Berlin", "2026-12-02T22:30:00+00:00"),
        _task("Berlin's next midnight", "2026-12-02T23:00:00+00:00"),
    ]
    berlin = plan_day(tasks, now, ZoneInfo("Europe/Berlin"))
    assert [t.title for t in berlin.due] == ["late tonight in Berlin"]
    assert [t.title for t in berlin.upcoming] == ["Berlin's next midnight"]
    in_utc = plan_day(tasks, now)
    assert in_utc.due == []


def _section(page: str, key: str) -> str:
    match = re.search(rf'class="related my-day-{key}".*?</section>', page, re.S)
    assert match, key
    return match.group(0)


async def test_my_day_page_and_the_done_button(staff: Staff) -> None:
    identity = await staff.create("sales")
    api = await staff.login(identity)
    contact = await post(api, "contact", sales_contact())
    overdue = await post(
        api,
        "task",
        task_values(title="Overdue call", due_at=soon(hours=-30), contact_id=contact["id"]),
    )
    await post(api, "task", task_values(title="Later today", due_at=soon(minutes=1)))
    await post(
        api,
        "task",
        task_values(title="Reminded early", due_at=soon(days=40), remind_at=soon(hours=-1)),
    )
    await post(api, "task", task_values(title="Two days out", due_at=soon(days=2)))
    await post(api, "task", task_values(title="Far away", due_at=soon(days=30)))
    other, _ = await seller(staff)
    await post(other, "task", task_values(title="Someone else's", due_at=soon(hours=-2)))

    web = await web_login(staff, identity)
    page = await web.get("/my-day")
    assert page.status_code == 200
    due = _section(page.text, "due")
    assert "Overdue call" in due
    assert "Overdue" in text_of(page)
    assert "Reminded early" in _section(page.text, "reminders")
    assert "Two days out" in _section(page.text, "upcoming")
    assert "Far away" not in page.text
    assert "Someone else" not in page.text
    assert f'href="/contacts/{contact["id"]}"' in due

    done_url = f"/my-day/tasks/{overdue['id']}/done"
    assert (await web.post(done_url)).status_code == 403  # no CSRF token
    done = await web.post(done_url, data={"_csrf_token": csrf_of(page)})
    assert location(done) == "/my-day"
    assert (await api.get(f"{TASKS}/{overdue['id']}")).json()["status"] == "done"
    after = await web.get("/my-day")
    assert "Overdue call" not in after.text
    assert "Task marked done" in text_of(after)
    # Someone else's task: not found, and untouched.
    theirs = (await other.get(TASKS)).json()["items"][0]
    refused = await web.post(
        f"/my-day/tasks/{theirs['id']}/done", data={"_csrf_token": csrf_of(after)}
    )
    assert refused.status_code == 404
    assert (await other.get(f"{TASKS}/{theirs['id']}")).json()["status"] == "open"


# --- notes -----------------------------------------------------------------------------------


async def test_notes_on_a_contact_and_a_deal_are_shown_newest_first(staff: Staff) -> None:
    identity = await staff.create("sales")
    api = await staff.login(identity)
    contact = await post(api, "contact", sales_contact())
    deal = await post(api, "deal", deal_values(contact["id"]))
    web = await web_login(staff, identity)
    for path, bodies in (
        (f"/contacts/{contact['id']}", ("First word on her", NOTE_BODY)),
        (f"/deals/{deal['id']}", ("Deal looks promising",)),
    ):
        record_type, record_id = path.strip("/").split("/")
        for body in bodies:
            page = await web.get(path)
            assert "Add note" in page.text
            added = await web.post(
                "/notes/add",
                data={
                    "record_type": record_type.removesuffix("s"),
                    "record_id": record_id,
                    "body": body,
                    "_csrf_token": csrf_of(page),
                },
            )
            assert location(added) == path
        shown = await web.get(path)
        text = text_of(shown)
        assert "Note added" in text
        positions = [text.index(body) for body in reversed(bodies)]
        assert positions == sorted(positions)  # newest first
    notes = (
        await api.get(NOTES, params={"record_type": "contact", "record_id": contact["id"]})
    ).json()
    assert notes["total"] == 2
    assert {n["subject_id"] for n in notes["items"]} == {contact["subject_id"]}
    deal_note = (await api.get(NOTES, params={"record_id": deal["id"]})).json()["items"][0]
    assert deal_note["subject_id"] == contact["subject_id"]  # the deal's person
    # An empty note is refused with a message, nothing is written.
    page = await web.get(f"/deals/{deal['id']}")
    empty = await web.post(
        "/notes/add",
        data={
            "record_type": "deal",
            "record_id": deal["id"],
            "body": " ",
            "_csrf_token": csrf_of(page),
        },
    )
    assert "was not added" in text_of(await web.get(location(empty)))
    assert (await api.get(NOTES, params={"record_id": deal["id"]})).json()["total"] == 1


async def test_a_note_needs_a_record_the_author_can_read(staff: Staff) -> None:
    rep, contact = await seller(staff)
    other_rep, _ = await seller(staff)
    hidden = await other_rep.post(
        NOTES, json={"body": "x", "record_type": "contact", "record_id": contact["id"]}
    )
    assert hidden.status_code == 400
    assert error_fields(hidden) == {"record_id"}
    missing = await rep.post(
        NOTES, json={"body": "x", "record_type": "deal", "record_id": contact["id"]}
    )
    assert missing.status_code == 400  # a contact's id is not a deal
    unknown = await rep.post(
        NOTES, json={"body": "x", "record_type": "audit", "record_id": contact["id"]}
    )
    assert unknown.status_code == 400
    assert "record_type" in error_fields(unknown)
    note = await post(
        rep, "note", {"body": "ok", "record_type": "contact", "record_id": contact["id"]}
    )
    moved = await rep.patch(f"{NOTES}/{note['id']}", json={"record_type": "deal"})
    assert moved.status_code == 400
    assert (await other_rep.get(f"{NOTES}/{note['id']}")).status_code == 404
    # The contact cannot be deleted while notes hang off it (as with its deals).
    assert (await rep.delete(f"{PATHS['contact']}/{contact['id']}")).status_code == 409


# --- at rest, erasure, export ----------------------------------------------------------------


async def test_titles_and_bodies_are_ciphertext_at_rest(staff: Staff, database_url: str) -> None:
    rep, contact = await seller(staff)
    await post(rep, "task", task_values(contact_id=contact["id"]))
    await post(rep, "task", task_values(title="Phone Ottoline Brackenbury-Smythe"))
    await post(
        rep, "note", {"body": NOTE_BODY, "record_type": "contact", "record_id": contact["id"]}
    )
    copy = (await _database_copy(database_url)).lower()
    assert b"barrel tasting" not in copy
    for value in (TASK_TITLE, NOTE_BODY, "Ottoline Brackenbury-Smythe"):
        assert value.lower().encode() not in copy, f"{value!r} readable in the {ENGINE} copy"


async def test_erasure_and_export_take_the_persons_tasks_and_notes(
    services: Services, staff: Staff
) -> None:
    admin = await staff.login(await staff.create("admin"))
    person = await post(admin, "contact", contact_values())
    bystander = await post(admin, "contact", contact_values(first_name="Ambrose"))
    deal = await post(admin, "deal", deal_values(person["id"]))
    task = await post(admin, "task", task_values(contact_id=person["id"], deal_id=deal["id"]))
    note = await post(
        admin, "note", {"body": NOTE_BODY, "record_type": "deal", "record_id": deal["id"]}
    )
    other = await post(
        admin, "note", {"body": OTHER_NOTE, "record_type": "contact", "record_id": bystander["id"]}
    )

    bundle = await build_export(services, person["subject_id"], requested_by="user:1")
    with zipfile.ZipFile(io.BytesIO(bundle.zip_bytes)) as archive:
        data = json.loads(archive.read("data.json"))
    jsonschema.Draft202012Validator(json.loads(SCHEMA_FILE.read_text())).validate(data)
    assert [t["title"] for t in data["records"]["task"]] == [TASK_TITLE]
    assert [n["body"] for n in data["records"]["note"]] == [NOTE_BODY]
    assert "note" not in data["records"] or other["id"] not in str(data["records"]["note"])

    await services.erasure.erase(person["subject_id"], by="user:1")
    erased_task = (await admin.get(f"{TASKS}/{task['id']}")).json()
    assert erased_task["title"] is None
    assert erased_task["due_at"]
    assert (await admin.get(f"{NOTES}/{note['id']}")).json()["body"] is None
    kept = (await admin.get(f"{NOTES}/{other['id']}")).json()
    assert kept["body"] == OTHER_NOTE
