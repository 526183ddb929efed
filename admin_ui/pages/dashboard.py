"""The start page: the figures for the work this role does, and what you did last.

Sales sees its open deals by stage, tasks due and this month's wins, and its forecast
(weighted pipeline, won value, win rate and attainment against quota: a rep their own and
their team's totals; a manager's view a row per team and per person); support its open
cases, SLA breaches and its cases by status; marketing its campaigns, funnel and audience
sizes; compliance the open requests by deadline, whether the audit trail verifies, open
alerts and how many people are profiled. An admin gets every section the policy lets an
admin see. Figures over other people's records go through the small-group rule
(``server.reports.small_groups``). Counts come from the gateway (scope applied,
audited as counts: no customer is touched, so opening the start page never shows up in
anyone's access report). Recent activity is the user's own changes from the audit log:
ids and actions, never values.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Request, get
from litestar.di import NamedDependency, Provide
from litestar.response import Template

from admin_ui.pages.audit_views import trail_status
from admin_ui.rendering import render
from admin_ui.session import Visit, page_access, provide_visit
from audit import queries
from audit.alerts.engine import AlertEngine
from audit.log import AuditLog
from audit.trail import AuditTrail
from policy.enforcer import PolicyEngine
from server.campaigns.funnel import CampaignFunnel
from server.campaigns.service import Campaigns
from server.datamap import RECORD_TYPES
from server.dsr.requests import DataSubjectRequests
from server.forecast.service import Forecasts, period_for
from server.gateway import Gateway
from server.pipelines.service import Pipelines
from server.reports.dashboard import Dashboard
from server.reports.service import CrmReports, money
from server.reports.small_groups import SmallGroups
from server.settings import Settings
from server.web import services_of

COUNTED = (
    ("contact", "Contacts", "/contacts"),
    ("organization", "Organizations", "/organizations"),
)
RECORD_PATHS = {  # where a record of each type is shown (the admin's list routes)
    "contact": "/contacts",
    "organization": "/organizations",
    "deal": "/deals",
    "interaction": "/interactions",
    "case": "/cases",
    "lead": "/leads",
    "task": "/tasks",
}
ACTIVITY_ACTIONS = {"create": "Created", "update": "Changed", "delete": "Deleted"}
ACTIVITY_SHOWN = 8
SHOWN = 6  # rows per panel (campaigns, segments, requests)
PEOPLE_SHOWN = 8  # staff rows in the manager's forecast panel


def ago(moment: dt.datetime, now: dt.datetime) -> str:
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86400} d ago"


async def recent_activity(actor_id: str, now: dt.datetime) -> list[dict[str, str]]:
    """The user's own latest creates, changes and deletes of records (from the audit log:
    the action, the record type and id; never a value)."""
    rows: list[queries.EventRow] = []
    for action in ACTIVITY_ACTIONS:
        page = await queries.search(
            queries.EventFilter(actor_id=actor_id, action=action, outcome="allowed"),
            page_size=ACTIVITY_SHOWN,
        )
        rows.extend(e for e in page.events if e.resource_type in RECORD_PATHS)
    rows.sort(key=lambda e: e.seq, reverse=True)
    shown = []
    for event in rows[:ACTIVITY_SHOWN]:
        rt = RECORD_TYPES.get(event.resource_type)
        noun = (rt.label if rt else event.resource_type).lower()
        link = ""
        if event.resource_id and event.action != "delete":
            link = f"{RECORD_PATHS[event.resource_type]}/{event.resource_id}"
        shown.append(
            {
                "what": f"{ACTIVITY_ACTIONS[event.action]} a {noun}",
                "link": link,
                "fields": ", ".join(event.fields[:4]) + (" …" if len(event.fields) > 4 else ""),
                "when": ago(event.ts, now),
                "at": event.ts.isoformat(),
            }
        )
    return shown


async def profiling_summary(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """How many people have scores (profiling, server.analytics), for those who answer for
    the record of processing: a count over everyone, so a small one is suppressed."""
    services = services_of(request)
    scored = await services.analytics.count()
    rule = SmallGroups(minimum=services.settings.report_min_group_size, exact=False)
    hidden = rule.hidden(["n"], ["n"], {("n", "n"): scored})
    return {"scored": None if hidden else scored}


@get(
    "/",
    include_in_schema=False,
    dependencies={"visit": Provide(provide_visit)},
    opt=page_access(),
)
async def dashboard(
    request: Request[Any, Any, Any],
    visit: NamedDependency[Visit],
    *,
    alerts: NamedDependency[AlertEngine],
    audit: NamedDependency[AuditLog],
    audit_trail: NamedDependency[AuditTrail],
    campaigns: NamedDependency[Campaigns],
    gateway: NamedDependency[Gateway],
    pipelines: NamedDependency[Pipelines],
    policy: NamedDependency[PolicyEngine],
    requests: NamedDependency[DataSubjectRequests],
    settings: NamedDependency[Settings],
) -> Template:
    board = Dashboard(
        gateway,
        policy,
        min_group_size=settings.report_min_group_size,
    )
    role = visit.identity.role
    actor = visit.actor
    now = dt.datetime.now(dt.UTC)
    counts = [
        {"label": label, "path": path, "count": await board.count(actor, resource)}
        for resource, label, path in COUNTED
    ]
    context: dict[str, Any] = {
        "selling": None,
        "forecast": None,
        "funnel": None,
        "tasks": None,
        "cases": None,
        "campaigns": None,
        "segments": None,
        "requests": None,
        "overdue_requests": 0,
        "verification": None,
        "alerts_open": None,
        "case_report": None,
        "profiling": None,
    }
    if board.sells(role):
        context["selling"] = await board.sales(actor, await pipelines.all(), now)
    forecasts = Forecasts(
        gateway,
        policy,
        audit,
        min_group_size=settings.report_min_group_size,
    )
    if forecasts.may_view(role):  # this quarter's forecast and attainment (issue 20)
        context["forecast"] = await forecasts.forecast(actor, period_for("quarter", now.date()))
    if board.does_tasks(role):
        context["tasks"] = await board.tasks(actor, now)
    if board.serves(role):
        context["cases"] = await board.cases(actor, now)
        # Cases by status and SLA in the role's case scope (the cases report's grid).
        context["case_report"] = await CrmReports(
            gateway, min_group_size=settings.report_min_group_size
        ).cases(actor, now=now)
    if board.markets(role):
        context["campaigns"] = (await campaigns.campaigns(actor))[:SHOWN]
        funnel = await CampaignFunnel(
            gateway,
            campaigns,
            min_group_size=settings.report_min_group_size,
        ).funnel(actor)
        context["funnel"] = funnel.campaigns[:SHOWN]
        context["segments"] = [
            {"segment": s, "size": await campaigns.segment_size(actor, s)}
            for s in (await campaigns.segments(actor))[:SHOWN]
        ]
    if board.audits(role):
        queue = await requests.queue(open_only=True, now=now)
        context["requests"] = queue[:SHOWN]
        context["open_requests"] = len(queue)
        context["overdue_requests"] = sum(1 for r in queue if r.overdue)
        if policy.allows(role, "audit", "verify"):
            context["verification"] = await trail_status(audit_trail, settings.audit_stall_seconds)
    if policy.allows(role, "processing_record", "read"):
        context["profiling"] = await profiling_summary(request)
    if policy.allows(role, "alert", "manage"):
        context["alerts_open"] = (await alerts.list_alerts(state="open")).open_total
    return await render(
        request,
        "dashboard.html",
        visit=visit,
        section="dashboard",
        title="Dashboard",
        counts=counts,
        purpose=gateway.default_purpose(role),
        activity=await recent_activity(actor.id, now),
        money=money,
        today=now.date(),
        people_shown=PEOPLE_SHOWN,
        **context,
    )
