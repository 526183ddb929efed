"""The compliance console (admin_ui/pages/compliance.py) over HTTP, on both engines.

The story of issue 7: a sales rep creates and reads a customer; a compliance officer,
signed in with a second factor, finds every access to that customer from the customer's
e-mail address - without the page ever showing the customer's details - sees who did
what and why, filters and pages the log, reviews the refusals, and exports a slice of
the log with proofs that an auditor can verify offline. Other roles never see the console.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from httpx import AsyncClient, Response

from admin_ui.pages import audit_views, compliance
from audit.events import AuditEvent, Outcome
from audit.tables import AuditRecord
from audit.trail import VerificationReport, verify_slice
from server import db
from server.auth.service import StaffIdentity
from server.auth.tables import StaffSession
from server.gateway import Forbidden, NotFound
from server.gateway import Record as GatewayRecord
from server.services import Services
from tests.admin_ui.test_admin_ui import (
    csrf_of,
    location,
    sales_contact,
    submit,
    text_of,
    web_login,
)
from tests.conftest import Staff

CONSOLE_PAGES = (
    "/compliance",
    "/compliance/events",
    "/compliance/subjects",
    "/compliance/denials",
    "/compliance/staff",
    "/compliance/staff/user:1",
)
CUSTOMER = {
    "first_name": "Philippa",
    "last_name": "Quarrington",
    "phone": "+44 20 7946 0958",
    "city": "Tobermory",
    "job_title": "Lighthouse keeper",
}


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def assert_no_customer_data(page: Response, record: GatewayRecord, email: str) -> None:
    """Nothing the customer record holds reaches a console page."""
    for value in (email, *CUSTOMER.values(), "+442079460958", "7946 0958"):
        assert value.lower() not in page.text.lower(), (value, page.url)


async def customer_story(services: Services, staff: Staff) -> dict[str, Any]:
    """A sales rep creates and reads a customer; a colleague is refused twice."""
    rep = await staff.create("sales")
    nosy = await staff.create("sales")
    email = f"philippa.{uuid.uuid4().hex[:6]}@example.org"
    gateway = services.gateway
    record = await gateway.create(
        staff.actor(rep), "contact", sales_contact(email=email, **CUSTOMER)
    )
    await gateway.read(staff.actor(rep), "contact", record.id)
    with pytest.raises(NotFound):  # not one of the colleague's own customers
        await gateway.read(staff.actor(nosy), "contact", record.id)
    with pytest.raises(Forbidden):  # sales may never read birth dates
        await gateway.read(staff.actor(rep), "contact", record.id, fields=("birth_date",))
    return {"rep": rep, "nosy": nosy, "email": email, "record": record}


async def officer_client(staff: Staff) -> tuple[StaffIdentity, AsyncClient]:
    officer = await staff.create("compliance")
    return officer, await web_login(staff, officer)


async def console_rows(actor: StaffIdentity) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = (
        await AuditRecord.select()
        .where(AuditRecord.actor_id == actor.actor_id)
        .order_by(AuditRecord.seq)
    )
    return rows


def links_to(page: Response, prefix: str) -> list[str]:
    return re.findall(rf'href="({re.escape(prefix)}[^"]*)"', page.text)


# --- the story ------------------------------------------------------------------------------------


async def test_officer_finds_every_access_to_a_customer_by_email(
    staff: Staff, services: Services
) -> None:
    story = await customer_story(services, staff)
    record, rep, nosy = story["record"], story["rep"], story["nosy"]
    officer, client = await officer_client(staff)

    home = await client.get("/")
    assert 'href="/compliance"' in home.text  # the navigation offers the console

    lookup = await submit(
        client, "/compliance/subjects", "/compliance/subjects", {"contact": story["email"]}
    )
    target = location(lookup)
    assert story["email"] not in target  # never in a URL
    assert parse_qs(urlsplit(target).query)["subject"] == [record.subject_id]

    report = await client.get(target)
    assert report.status_code == 200
    text = text_of(report)
    assert f"Accesses to customer {record.subject_id}" in text
    # The per-actor summary names the rep (linked to their activity report) with what
    # they did, and the colleague who was refused.
    assert f'href="/compliance/staff/{rep.actor_id}"' in report.text
    assert f'href="/compliance/staff/{nosy.actor_id}"' in report.text
    summary = report.text.split("Who accessed this customer")[1].split("</table>")[0]
    rep_row = next(r for r in summary.split("<tr>") if rep.actor_id in r)
    assert "create, read" in rep_row
    assert "customer relationship" in rep_row
    assert ">3<" in rep_row  # created, read, refused the birth date
    assert "birth_date" in rep_row
    nosy_row = next(r for r in summary.split("<tr>") if nosy.actor_id in r)
    assert ">1<" in nosy_row
    # The officer's own lookup is an access too, and is shown as one.
    assert f'href="/compliance/staff/{officer.actor_id}"' in report.text
    assert "locate" in text
    assert_no_customer_data(report, record, story["email"])

    # The same report straight from the subject id, for a chosen period.
    by_id = await client.get(
        "/compliance/subjects",
        params={"subject": record.subject_id.upper(), "from": today().isoformat()},
    )
    assert by_id.status_code == 200
    assert rep.actor_id in by_id.text
    earlier = await client.get(
        "/compliance/subjects",
        params={"subject": record.subject_id, "from": "2020-01-01", "to": "2020-01-31"},
    )
    assert "Nobody accessed this customer's data in this period." in text_of(earlier)


async def test_console_pages_never_show_the_customers_details(
    staff: Staff, services: Services
) -> None:
    story = await customer_story(services, staff)
    record = story["record"]
    _, client = await officer_client(staff)
    not_found = await submit(
        client, "/compliance/subjects", "/compliance/subjects", {"contact": story["email"] + "x"}
    )
    assert not_found.status_code == 200
    assert "No customer found" in text_of(not_found)
    assert_no_customer_data(not_found, record, story["email"])
    pages = [
        *CONSOLE_PAGES,
        f"/compliance/subjects?subject={record.subject_id}",
        f"/compliance/events?subject_id={record.subject_id}&from={today()}&to={today()}",
        f"/compliance/staff/{story['rep'].actor_id}",
    ]
    for path in pages:
        page = await client.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        assert_no_customer_data(page, record, story["email"])


async def test_lookup_by_phone_and_by_pasted_subject_id(staff: Staff, services: Services) -> None:
    story = await customer_story(services, staff)
    subject = story["record"].subject_id
    _, client = await officer_client(staff)
    by_phone = await submit(
        client, "/compliance/subjects", "/compliance/subjects", {"contact": "+44 20 7946 0958"}
    )
    assert parse_qs(urlsplit(location(by_phone)).query)["subject"] == [subject]
    pasted = await submit(
        client, "/compliance/subjects", "/compliance/subjects", {"contact": f" {subject} "}
    )
    assert parse_qs(urlsplit(location(pasted)).query)["subject"] == [subject]
    for typed, message in (
        ("", "Enter an e-mail address or a phone number."),
        ("not an address@", "That is not a complete e-mail address."),
        ("12", "That is not a complete phone number."),
    ):
        refused = await submit(
            client, "/compliance/subjects", "/compliance/subjects", {"contact": typed}
        )
        assert refused.status_code == 400, typed
        assert message in text_of(refused)
        contact_input = refused.text.split('id="contact"')[1].split(">")[0]
        assert "value=" not in contact_input  # what was typed is never echoed back
    assert "not an address@" not in refused.text


async def test_console_reads_are_audited_with_purpose_compliance(
    staff: Staff, services: Services
) -> None:
    story = await customer_story(services, staff)
    subject = story["record"].subject_id
    officer, client = await officer_client(staff)
    await submit(
        client, "/compliance/subjects", "/compliance/subjects", {"contact": story["email"]}
    )
    await client.get(f"/compliance/subjects?subject={subject}")
    await client.get(f"/compliance/events?actor_id={story['rep'].actor_id}&outcome=denied")
    await client.get("/compliance/denials")
    await client.get("/compliance")

    rows = [r for r in await console_rows(officer) if r["action"] not in {"login", "session"}]
    assert [(r["action"], r["resource_type"]) for r in rows] == [
        ("locate", "contact"),
        ("locate", "lead"),  # people who are not customers yet are looked up too
        ("audit.report", "audit"),
        ("audit.search", "audit"),
        ("audit.report", "audit"),
        ("audit.report", "audit"),
    ]
    assert {r["purpose"] for r in rows} == {"compliance"}
    assert {r["outcome"] for r in rows} == {"allowed"}
    assert {r["actor_role"] for r in rows} == {"compliance"}
    locate, locate_leads, subject_report, search, denials, overview = rows
    assert json.loads(locate_leads["subject_ids"]) == []
    assert json.loads(locate["subject_ids"]) == [subject]
    assert json.loads(subject_report["subject_ids"]) == [subject]
    assert json.loads(subject_report["detail"])["report"] == "subject"
    detail = json.loads(search["detail"])
    assert detail["filters"] == "actor_id,outcome"
    assert detail["returned"] == 1
    assert json.loads(denials["detail"])["report"] == "denials"
    assert json.loads(overview["detail"])["report"] == "overview"
    # Not a trace of what the officer typed, anywhere in the log.
    everything = json.dumps(await AuditRecord.select(), default=str)
    assert story["email"] not in everything
    assert story["email"].split("@")[0] not in everything


# --- events, filters and pages -------------------------------------------------------------------


async def append_events(services: Services, count: int, **overrides: Any) -> None:
    values: dict[str, Any] = {
        "actor_id": "user:9999",
        "actor_role": "support",
        "action": "list",
        "resource_type": "contact",
        "outcome": Outcome.ALLOWED,
        "purpose": "customer_support",
    }
    values.update(overrides)
    async with db.write_transaction():
        for _ in range(count):
            await services.audit.append(AuditEvent(**values))


async def test_events_filter_by_actor_outcome_and_time(staff: Staff, services: Services) -> None:
    story = await customer_story(services, staff)
    rep, nosy = story["rep"], story["nosy"]
    _, client = await officer_client(staff)

    first_visit = await client.get("/compliance/events")
    assert first_visit.status_code == 200
    start = (today() - dt.timedelta(days=audit_views.DEFAULT_DAYS - 1)).isoformat()
    assert f'name="from" type="date" value="{start}"' in first_visit.text

    whole_log = await client.get("/compliance/events", params={"from": "", "to": ""})
    assert 'name="from" type="date" value=""' in whole_log.text  # empty dates: no bounds
    assert "events match" in text_of(whole_log)

    denied = await client.get(
        "/compliance/events", params={"actor_id": nosy.actor_id, "outcome": "denied"}
    )
    assert "1 event matches" in text_of(denied)
    assert "not_found_or_out_of_scope" in denied.text
    allowed = await client.get(
        "/compliance/events", params={"actor_id": rep.actor_id, "outcome": "allowed"}
    )
    assert "2 events match" in text_of(allowed)
    assert nosy.actor_id not in allowed.text
    tomorrow = (today() + dt.timedelta(days=1)).isoformat()
    future = await client.get(
        "/compliance/events", params={"actor_id": rep.actor_id, "from": tomorrow}
    )
    assert "0 events match" in text_of(future)
    assert "No audit event matches these filters." in text_of(future)
    by_purpose = await client.get(
        "/compliance/events", params={"purpose": "compliance", "action": "locate"}
    )
    assert "0 events match" in text_of(by_purpose)


async def test_event_pages_link_older_and_newer_without_gaps(
    staff: Staff, services: Services
) -> None:
    await append_events(services, 70, actor_id="user:4242")
    _, client = await officer_client(staff)

    def seqs(page: Response) -> list[int]:
        table = page.text.split("<tbody>")[1].split("</tbody>")[0]
        return [int(n) for n in re.findall(r"<td>(\d+)</td>\s*</tr>", table)]

    first = await client.get("/compliance/events", params={"actor_id": "user:4242"})
    assert "70 events match" in text_of(first)
    assert "Newer events</span>" in first.text  # disabled on the newest page
    older_link = links_to(first, "/compliance/events?")
    older = [link for link in older_link if "before=" in link]
    assert len(older) == 1
    second = await client.get(older[0].replace("&amp;", "&"))
    assert len(seqs(first)) == 50
    assert len(seqs(second)) == 20
    assert sorted(seqs(first) + seqs(second), reverse=True) == seqs(first) + seqs(second)
    assert len(set(seqs(first)) | set(seqs(second))) == 70
    assert "Older events</span>" in second.text
    newer = [link for link in links_to(second, "/compliance/events?") if "after=" in link]
    back = await client.get(newer[0].replace("&amp;", "&"))
    assert seqs(back) == seqs(first)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"outcome": "maybe"}, "Outcome must be one of allowed, denied, error."),
        ({"subject_id": "grace@example.org"}, "Subject id must be a UUID"),
        ({"actor_id": "user:1' OR '1'='1"}, "Staff member (actor id): may contain only"),
        ({"action": "x" * 40}, "Action must be at most 32 characters."),
        ({"purpose": "snooping"}, "Purpose must be one of the registered purposes."),
        ({"from": "2026-13-01"}, "From date must be a date written as YYYY-MM-DD."),
        ({"from": "2026-03-02", "to": "2026-03-01"}, "To date must be the same as or later"),
        ({"subject_id": str(uuid.uuid4()), "from": "", "to": ""}, "needs a start and an end"),
        (
            {"subject_id": str(uuid.uuid4()), "from": "2024-01-01", "to": "2026-01-01"},
            "covers at most 366 days",
        ),
        ({"before": "abc"}, "The page position must be a whole number."),
    ],
)
async def test_bad_event_filters_get_a_400_with_a_message(
    staff: Staff, query: dict[str, str], message: str
) -> None:
    officer, client = await officer_client(staff)
    page = await client.get("/compliance/events", params=query)
    assert page.status_code == 400
    assert message in text_of(page)
    assert 'role="alert"' in page.text
    assert "The search could not run" in text_of(page)
    summary = page.text.split('class="error-summary"')[1].split("</div>")[0]
    for anchor in re.findall(r'href="#([^"]+)"', summary):
        assert f'id="{anchor}"' in page.text, anchor  # the message leads to its input
    refused = [r for r in await console_rows(officer) if r["action"] == "audit.search"]
    assert [(r["outcome"], r["reason"]) for r in refused] == [("error", "invalid_filter")]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/compliance/subjects?subject=nobody", "Subject id must be a UUID"),
        ("/compliance/subjects?subject=%25", "Subject id must be a UUID"),
        (
            f"/compliance/subjects?subject={uuid.uuid4()}&from=2020-01-01&to=2026-01-01",
            "covers at most 366 days",
        ),
        ("/compliance/staff/user:1%25", "Staff member (actor id): may contain only"),
        ("/compliance/denials?from=yesterday", "From date must be a date"),
        ("/compliance/denials?from=2026-03-02&to=2026-03-01", "To date must be the same as"),
    ],
)
async def test_bad_report_input_gets_a_400_with_a_message(
    staff: Staff, path: str, message: str
) -> None:
    _, client = await officer_client(staff)
    page = await client.get(path)
    assert page.status_code == 400, page.text[:300]
    assert message in text_of(page)


async def test_denials_and_staff_reports(staff: Staff, services: Services) -> None:
    story = await customer_story(services, staff)
    rep, nosy = story["rep"], story["nosy"]
    _, client = await officer_client(staff)

    denials = await client.get("/compliance/denials")
    assert denials.status_code == 200
    groups = denials.text.split("Refusals by staff member and reason")[1].split("</table>")[0]
    assert "not_found_or_out_of_scope" in groups
    assert "field_not_readable" in groups
    assert f'href="/compliance/staff/{nosy.actor_id}"' in groups
    assert "2 refusals" in text_of(denials)
    quiet = await client.get(
        "/compliance/denials", params={"from": "2020-01-01", "to": "2020-01-02"}
    )
    assert "Nothing was refused" in text_of(quiet)

    everyone = await client.get("/compliance/staff")
    assert everyone.status_code == 200
    listed = everyone.text.split("Who did how much")[1].split("</table>")[0]
    range_query = f"from={today() - dt.timedelta(days=29)}&amp;to={today()}"
    assert f'href="/compliance/staff/{rep.actor_id}?{range_query}"' in listed
    nosy_row = next(r for r in listed.split("<tr>") if nosy.actor_id in r)
    assert re.findall(r"<td>(\d+)</td>", nosy_row) == ["1", "1"]  # one event, refused

    activity = await client.get(f"/compliance/staff/{rep.actor_id}")
    assert activity.status_code == 200
    text = text_of(activity)
    assert "Different customers 1" in text
    assert "Events 3" in text
    assert "By action" in text
    assert "create" in activity.text
    assert_no_customer_data(activity, story["record"], story["email"])
    nobody = await client.get("/compliance/staff/user:987654")
    assert "No audit event by user:987654 in this period." in text_of(nobody)


# --- who may use the console -------------------------------------------------------------------


@pytest.mark.parametrize("role", ["admin", "sales", "support", "marketing"])
async def test_console_does_not_exist_for_other_roles(staff: Staff, role: str) -> None:
    user = await staff.create(role)
    client = await web_login(staff, user)
    for path in CONSOLE_PAGES:
        answer = await client.get(path)
        assert answer.status_code == 404, path
        assert "Page not found" in text_of(answer)
    for action in ("/compliance/subjects", "/compliance/events/export"):
        refused = await submit(client, "/account", action, {"contact": "x@example.org"})
        assert refused.status_code == 404, action
    assert 'href="/compliance"' not in (await client.get("/")).text


async def test_signed_out_visitors_are_sent_to_sign_in(staff: Staff) -> None:
    client = await web_login(staff, await staff.create("sales"))
    await submit(client, "/", "/logout")
    answer = await client.get("/compliance/events?outcome=denied")
    assert location(answer) == "/login?next=/compliance/events%3Foutcome%3Ddenied"


async def test_the_policy_decides_too(
    staff: Staff, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A compliance role that the policy no longer lets read the audit log gets 404s."""
    _, client = await officer_client(staff)
    allows = services.policy.allows

    def without_audit(role: str, obj: str, act: str) -> bool:
        return obj != "audit" and allows(role, obj, act)

    monkeypatch.setattr(services.policy, "allows", without_audit)
    for path in CONSOLE_PAGES:
        assert (await client.get(path)).status_code == 404, path


# --- overview, verification and export --------------------------------------------------------


async def test_overview_shows_verification_status_and_activity(
    staff: Staff, services: Services
) -> None:
    await customer_story(services, staff)
    _, client = await officer_client(staff)
    unsealed = text_of(await client.get("/compliance"))
    assert "Latest signed tree head None yet: the log has not been sealed." in unsealed
    assert re.search(r"Not yet sealed \d+ events\. Servers seal", unsealed)
    sealed = await services.audit_trail.seal_all()
    assert sealed is not None

    page = await client.get("/compliance")
    assert page.status_code == 200
    text = text_of(page)
    assert "Verified: the audit log is intact." in text
    assert f"covers events 1 to {sealed.tree_size}" in text
    assert sealed.root_hash in page.text
    assert sealed.key_id in page.text
    assert "Not yet sealed" in text
    for link in ("/compliance/events", "/compliance/subjects", "/compliance/denials"):
        assert f'href="{link}"' in page.text
    assert 'href="/compliance/alerts"' in page.text
    assert 'href="/compliance/record-of-processing"' in page.text
    # The chart: a canvas fed from a JSON block, and the same numbers as a table.
    assert 'data-chart-data="activity-data"' in page.text
    data = json.loads(
        page.text.split('<script type="application/json" id="activity-data">')[1].split(
            "</script>"
        )[0]
    )
    assert len(data["labels"]) == compliance.CHART_DAYS
    assert data["labels"][-1] == today().isoformat()
    allowed = next(s for s in data["series"] if s["key"] == "allowed")
    denied = next(s for s in data["series"] if s["key"] == "denied")
    assert denied["data"][-1] == 2
    assert allowed["data"][-1] >= 2
    assert "Audit events per day (UTC)" in text
    assert 'src="/static/charts.js"' in page.text
    assert 'src="/static/vendor/chartjs/chart.umd.min.js"' in page.text

    # Events written after the latest head show up as not yet sealed.
    await append_events(services, 3)
    later = text_of(await client.get("/compliance"))
    assert "Not yet sealed" in later
    assert re.search(r"Not yet sealed \d+ events? \(the newest is", later)


async def test_overview_says_when_verification_fails(
    staff: Staff, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, client = await officer_client(staff)

    async def tampered(*, incremental: bool = False) -> VerificationReport:
        return VerificationReport(
            False, "incremental", 4, 5, "entry 5: contents do not match its hash"
        )

    monkeypatch.setattr(services.audit_trail, "verify", tampered)
    page = await client.get("/compliance")
    assert page.status_code == 200
    text = text_of(page)
    assert "Verification failed: entry 5: contents do not match its hash" in text
    assert "(first event affected: no. 5)" in text
    assert "Verified" not in text


async def test_chart_assets_are_served(staff: Staff) -> None:
    _, client = await officer_client(staff)
    ours = await client.get("/static/charts.js")
    assert ours.status_code == 200
    assert "data-chart" in ours.text
    vendor = await client.get("/static/vendor/chartjs/chart.umd.min.js")
    if vendor.status_code == 404:
        pytest.skip("npm packages not installed (run `npm ci` in admin_ui/)")
    assert vendor.status_code == 200


async def export(client: AsyncClient, query: dict[str, str], reason: str) -> Response:
    page = await client.get("/compliance/events", params=query)
    assert page.status_code == 200
    form = page.text.split('action="/compliance/events/export"')[1].split("</form>")[0]
    hidden = dict(re.findall(r'type="hidden" name="([^"]+)" value="([^"]*)"', form))
    return await client.post(
        "/compliance/events/export", data={**hidden, "reason": reason, "_csrf_token": csrf_of(page)}
    )


async def test_export_a_slice_with_proofs(staff: Staff, services: Services) -> None:
    story = await customer_story(services, staff)
    rep = story["rep"]
    officer, client = await officer_client(staff)

    download = await export(client, {"actor_id": rep.actor_id}, "regulator_request")
    assert download.status_code == 200, download.text[:500]
    assert download.headers["content-type"].startswith("application/json")
    assert download.headers["content-disposition"] == (
        f'attachment; filename="audit-slice-{today().isoformat()}.json"'
    )
    bundle = download.json()
    assert bundle["format"] == "consentry-audit-slice/1"
    assert [e["actor_id"] for e in bundle["events"]] == [rep.actor_id] * 3
    assert all(e["inclusion_proof"] is not None for e in bundle["events"])
    report = verify_slice(bundle, services.audit_trail.verifier)
    assert report.ok, report.problems
    assert report.events == 3

    exported = [r for r in await console_rows(officer) if r["action"] == "audit.export"]
    assert len(exported) == 1
    assert exported[0]["purpose"] == "compliance"
    detail = json.loads(exported[0]["detail"])
    assert detail["reason"] == "regulator_request"
    assert detail["events"] == 3
    assert detail["capped"] == 0
    assert detail["filters"] == "actor_id"


async def test_export_needs_a_listed_reason_a_recent_login_and_the_csrf_token(
    staff: Staff, services: Services
) -> None:
    story = await customer_story(services, staff)
    officer, client = await officer_client(staff)
    query = {"actor_id": story["rep"].actor_id}

    no_reason = await export(client, query, "because I said so")
    assert location(no_reason).startswith("/compliance/events?actor_id=")
    assert "Choose the reason for the export." in text_of(await client.get(location(no_reason)))

    page = await client.get("/compliance/events", params=query)
    forged = await client.post(
        "/compliance/events/export",
        data={"actor_id": query["actor_id"], "reason": "external_audit"},
    )
    assert forged.status_code == 403
    assert page.status_code == 200

    await StaffSession.update(
        {StaffSession.authenticated_at: dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)}
    ).where(StaffSession.user_id == officer.user_id)
    stale = await export(client, query, "external_audit")
    target = location(stale)
    assert target.startswith("/reauth?next=/compliance/events")
    assert [r for r in await console_rows(officer) if r["action"] == "audit.export"] == []


async def test_export_is_capped_and_says_so(
    staff: Staff, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compliance, "EXPORT_LIMIT", 5)
    await append_events(services, 8, actor_id="user:31337")
    _, client = await officer_client(staff)
    page = await client.get("/compliance/events", params={"actor_id": "user:31337"})
    assert "More than 5 events match" in text_of(page)
    assert "only the newest 5" in text_of(page)

    download = await export(client, {"actor_id": "user:31337"}, "internal_investigation")
    bundle = download.json()
    newest = await (
        AuditRecord.select(AuditRecord.seq)
        .where(AuditRecord.actor_id == "user:31337")
        .order_by(AuditRecord.seq, ascending=False)
        .limit(5)
    )
    assert [e["seq"] for e in bundle["events"]] == sorted(r["seq"] for r in newest)
