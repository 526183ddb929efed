"""Staff accounts, pipelines and imports over REST (issue 19, item 2): what an admin can
do through /api/v1, what the other roles are refused, and that every change is audited."""

from __future__ import annotations

import asyncio
import json

from server.services import Services
from tests.conftest import Staff
from tests.dbutil import audit_rows, last_seq

API = "/api/v1"


async def test_an_admin_manages_staff_accounts_and_others_are_refused(
    services: Services, staff: Staff, database_url: str
) -> None:
    me = await staff.create("admin")
    admin = await staff.login(me)
    before = await last_seq(database_url)
    created = await admin.post(
        f"{API}/staff", json={"email": "Nia.Okafor@Example.org", "role": "support", "team": "south"}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    account = body["account"]
    assert account["email"] == "nia.okafor@example.org"
    assert account["role"] == "support"
    assert "/reset/" in body["password_link"]
    listed = await admin.get(f"{API}/staff", params={"q": "okafor"})
    assert [a["id"] for a in listed.json()["items"]] == [account["id"]]

    changed = await admin.patch(
        f"{API}/staff/{account['id']}", json={"role": "sales", "team": "north"}
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["role"], changed.json()["team"]) == ("sales", "north")
    disabled = await admin.patch(f"{API}/staff/{account['id']}", json={"active": False})
    assert disabled.json()["active"] is False
    own = await admin.patch(f"{API}/staff/{me.user_id}", json={"active": False})
    assert own.status_code == 400
    assert "your own" in own.json()["detail"]
    duplicate = await admin.post(
        f"{API}/staff", json={"email": "nia.okafor@example.org", "role": "sales"}
    )
    assert duplicate.status_code == 400
    assert (await admin.get(f"{API}/staff/424242")).status_code == 404
    actions = [r["action"] for r in await audit_rows(database_url, before)]
    assert "user.create" in actions

    rep = await staff.login(await staff.create("sales"))
    refused = await rep.post(f"{API}/staff", json={"email": "x@example.org", "role": "admin"})
    assert refused.status_code == 403
    assert (await rep.get(f"{API}/staff")).status_code == 403
    denied = [r for r in await audit_rows(database_url, before) if r["outcome"] == "denied"]
    assert any(r["action"] == "staff.manage" for r in denied)
    assert "x@example.org" not in json.dumps(denied, default=str)


async def test_an_admin_shapes_a_pipeline_over_the_api(staff: Staff) -> None:
    admin = await staff.login(await staff.create("admin"))
    created = await admin.post(f"{API}/pipelines", json={"name": "Partnerships"})
    assert created.status_code == 201, created.text
    pipeline = created.json()
    assert [s["kind"] for s in pipeline["stages"]] == ["open", "won", "lost"]
    stage = await admin.post(
        f"{API}/pipelines/{pipeline['id']}/stages",
        json={"name": "Due diligence", "kind": "open", "probability": 40},
    )
    assert stage.status_code == 201, stage.text
    added = stage.json()
    moved = await admin.patch(
        f"{API}/pipelines/stages/{added['id']}", json={"name": "Diligence", "move": "up"}
    )
    assert moved.status_code == 200, moved.text
    names = [s["name"] for s in moved.json()["stages"]]
    assert names.index("Diligence") == 0
    archived = await admin.patch(f"{API}/pipelines/stages/{added['id']}", json={"archive": True})
    assert next(s for s in archived.json()["stages"] if s["id"] == added["id"])["archived"]
    renamed = await admin.patch(f"{API}/pipelines/{pipeline['id']}", json={"name": "Partners"})
    assert renamed.json()["name"] == "Partners"
    bad = await admin.post(
        f"{API}/pipelines/{pipeline['id']}/stages", json={"name": "", "kind": "open"}
    )
    assert bad.status_code == 400
    listed = await admin.get(f"{API}/pipelines")
    assert "Partners" in [p["name"] for p in listed.json()["items"]]
    rep = await staff.login(await staff.create("sales"))
    assert (await rep.post(f"{API}/pipelines", json={"name": "Mine"})).status_code == 403


async def test_an_import_runs_as_a_job_with_progress_and_a_report(staff: Staff) -> None:
    admin = await staff.login(await staff.create("admin"))
    csv_text = (
        "First name,Last name,E-mail,Shoe size\n"
        "Ada,Lovelace,ada@example.org,38\n"
        "Grace,Hopper,not-an-address,40\n"
        "Alan,Turing,alan@example.org,44\n"
    )
    started = await admin.post(
        f"{API}/imports",
        json={"record_type": "contact", "csv": csv_text, "mapping": {"Shoe size": "-"}},
    )
    assert started.status_code == 202, started.text
    job = started.json()
    assert job["total_rows"] == 3
    for _ in range(200):
        job = (await admin.get(f"{API}/imports/{job['id']}")).json()
        if job["status"] != "running":
            break
        await asyncio.sleep(0.05)
    assert job["status"] == "done", job
    assert (job["created"], job["bad_lines"], job["percent"]) == (2, 1, 100)
    report = (await admin.get(f"{API}/imports/{job['id']}/report")).json()
    assert report["ignored_columns"] == {"Shoe size": "skipped: mapped to nothing"}
    [entry] = report["entries"]
    assert entry["line"] == 3
    assert entry["field"] == "email"
    assert "not-an-address" not in json.dumps(report)  # reasons, never values

    refused = await admin.post(f"{API}/imports", json={"record_type": "contact", "csv": ""})
    assert refused.status_code == 400
    assert "empty" in refused.json()["detail"]
    unknown = await admin.post(
        f"{API}/imports",
        json={"record_type": "contact", "csv": csv_text, "mapping": {"Shoe size": "shoe"}},
    )
    assert unknown.status_code == 400
    rep = await staff.login(await staff.create("sales"))
    assert (await rep.get(f"{API}/imports/{job['id']}")).status_code == 403
