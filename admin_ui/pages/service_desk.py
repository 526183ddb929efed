"""The service desk pages (issue 21, item 3; docs/service-desk.md).

- ``/desk``: the queue - my cases, my team's, or every team's (as the record scope
  allows), with the SLA state, sorted by the nearest deadline, paged;
- ``/desk/cases/{id}``: a case's conversation, the reply box (with the team's canned
  responses), internal notes, state and assignee;
- ``/desk/canned``: the team's canned responses;
- ``/desk/flags``: messages that read like a data-subject request, for compliance, each
  opened as a request with one click;
- ``/desk/settings``: queues, routing, team leads and SLA policies (admins).

Rights come from the policy (``service_desk, work | configure | dsr_flags``); a page the
role may not use answers 404. Case contents are read through the gateway as the user.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from audit.log import AuditLog
from policy.enforcer import PolicyEngine, Scope
from server.datamap import CASE_STATUSES, PRIORITIES
from server.dsr.requests import KINDS, VERIFICATIONS
from server.gateway import Gateway, GatewayError, Record
from server.servicedesk import canned as canned_responses
from server.servicedesk import config
from server.servicedesk.config import Targets
from server.servicedesk.hours import WEEKDAYS
from server.servicedesk.service import (
    CONVERSATION_LIMIT,
    DONE_STATES,
    MESSAGE_MAX,
    OPEN_STATES,
    ROUTINGS,
    DeskError,
    ServiceDesk,
)
from server.settings import Settings
from server.web import services_of

PAGE_SIZE = 25
VIEWS = {"mine": "My cases", "team": "My team's cases", "all": "All teams"}
SORTS = {"due": "Nearest deadline", "opened": "Newest", "breached": "Latest breach"}
STATE_SETS = {"open": OPEN_STATES, "done": DONE_STATES}
SLA_WORDS = {
    "ok": "on time",
    "warning": "due soon",
    "breached": "breached",
    "met": "met",
    "none": "no SLA",
}
KIND_WORDS = {"email": "E-mail from the customer", "portal": "Portal message", "reply": "Reply"}
FORM_LIMIT = MESSAGE_MAX + 1


def _desk(request: Request[Any, Any, Any]) -> ServiceDesk:
    return services_of(request).service_desk


def _require(request: Request[Any, Any, Any], visit: Visit, action: str) -> None:
    if not services_of(request).policy.allows(visit.identity.role, "service_desk", action):
        raise NotFoundException()


def _allowed(request: Request[Any, Any, Any], visit: Visit, action: str) -> bool:
    return services_of(request).policy.allows(visit.identity.role, "service_desk", action)


async def _text(request: Request[Any, Any, Any], name: str, limit: int = 300) -> str:
    value = (await request.form()).get(name, "")
    return value[: limit + 1] if isinstance(value, str) else ""


def _number(value: str | None, default: int, low: int, high: int) -> int:
    try:
        number = int(value or default)
    except ValueError:
        return default
    return min(max(number, low), high)


@dataclass(frozen=True)
class QueueLine:
    case_id: str
    ref: str
    title: str
    status: str
    priority: str
    sla: str
    due: Any
    assignee: str
    flagged: bool
    readable: bool


class ServiceDeskPages(Controller):
    path = "/desk"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    # -- the queue ------------------------------------------------------------------------

    @get("/")
    async def queue(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        gateway: NamedDependency[Gateway],
        policy: NamedDependency[PolicyEngine],
    ) -> Template:
        _require(request, visit, "work")
        scope = gateway.list_scope(visit.actor, "case", purpose="customer_support")
        views = {"mine": VIEWS["mine"]}
        if scope in (Scope.TEAM, Scope.ALL):
            views["team"] = VIEWS["team"]
        if scope is Scope.ALL:
            views["all"] = VIEWS["all"]
        view = request.query_params.get("view", "mine")
        view = view if view in views else "mine"
        sort = request.query_params.get("sort", "due")
        sort = sort if sort in SORTS else "due"
        shown = request.query_params.get("state", "open")
        shown = shown if shown in STATE_SETS else "open"
        page = _number(request.query_params.get("page"), 1, 1, 100_000)
        await _desk(request).adopt_open_cases(visit.actor)  # cases from the Cases form
        rows, total = await _desk(request).queue_page(
            assignee=visit.identity.user_id if view == "mine" else None,
            team=visit.identity.team if view == "team" else None,
            states=STATE_SETS[shown],
            sort=sort,
            page=page,
            page_size=PAGE_SIZE,
        )
        names = await config.staff_names(
            sorted({int(r["assignee_id"]) for r in rows if r["assignee_id"] is not None})
        )
        lines = [await _line(request, visit, row, names) for row in rows]
        pages = max(1, math.ceil(total / PAGE_SIZE))

        def link(to_page: int) -> str:
            return f"/desk?view={view}&state={shown}&sort={sort}&page={to_page}"

        return await render(
            request,
            "desk/queue.html",
            visit=visit,
            section="service",
            title="Service desk",
            lines=lines,
            views=views,
            view=view,
            sorts=SORTS,
            sort=sort,
            shown=shown,
            total=total,
            page=page,
            pages=pages,
            prev_link=link(page - 1) if page > 1 else "",
            next_link=link(page + 1) if page < pages else "",
            sla_words=SLA_WORDS,
            may_flags=_allowed(request, visit, "dsr_flags"),
            may_configure=_allowed(request, visit, "configure"),
            may_open_case=policy.allows(visit.identity.role, "case", "create"),
        )

    # -- one case -------------------------------------------------------------------------

    @get("/cases/{case_id:str}")
    async def case_page(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit], case_id: FromPath[str]
    ) -> Template:
        _require(request, visit, "work")
        canned_id = _number(request.query_params.get("canned"), 0, 0, 2**31 - 1)
        draft = ""
        if canned_id:
            chosen = await canned_responses.response(canned_id, visit.identity.team)
            draft = chosen.body if chosen else ""
        return await self._case(request, visit, case_id, draft=draft)

    async def _case(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        case_id: str,
        *,
        draft: str = "",
        note_draft: str = "",
        error: str = "",
        status: int = 200,
    ) -> Template:
        desk = _desk(request)
        case = await services_of(request).gateway.read(
            visit.actor, "case", case_id, purpose="customer_support"
        )
        state = await desk.desk_of(case)
        messages = await desk.conversation(visit.actor, case.id)
        authors = await config.staff_names(
            sorted({m.owner_id for m in messages if m.kind in ("reply", "note")})
        )
        customer = ""
        try:  # the person's name, read as the user (audited; hidden if out of their scope)
            person = await services_of(request).gateway.read(
                visit.actor,
                "contact",
                str(case.values.get("contact_id") or state["contact_id"]),
                purpose="customer_support",
                fields=("first_name", "last_name"),
            )
            customer = " ".join(
                str(person.values.get(n) or "") for n in ("first_name", "last_name")
            ).strip()
        except GatewayError:
            customer = ""
        assignee_ids = [state["assignee_id"]] if state["assignee_id"] is not None else []
        names = await config.staff_names(assignee_ids)
        return await render(
            request,
            "desk/case.html",
            visit=visit,
            status=status,
            section="service",
            title=str(case.values.get("title") or "Case"),
            case=case,
            customer=customer,
            desk=state,
            messages=messages,
            authors=authors,
            assignee=names.get(state["assignee_id"], "") if state["assignee_id"] else "",
            agents=await config.team_members(str(state["team"])),
            canned=await canned_responses.responses(visit.identity.team),
            draft=draft,
            note_draft=note_draft,
            error=error,
            states=CASE_STATUSES,
            sla_words=SLA_WORDS,
            kind_words=KIND_WORDS,
            limit=CONVERSATION_LIMIT,
            message_max=MESSAGE_MAX,
            request_kinds=KINDS,
        )

    @post("/cases/{case_id:str}/reply")
    async def reply(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit], case_id: FromPath[str]
    ) -> Template | Redirect:
        _require(request, visit, "work")
        body = await _text(request, "body", MESSAGE_MAX)
        problem = _problem(body)
        if problem:
            return await self._case(request, visit, case_id, draft=body, error=problem, status=400)
        try:
            result = await _desk(request).reply(visit.actor, case_id, body)
        except DeskError as exc:
            return await self._case(
                request, visit, case_id, draft=body, error=exc.message, status=exc.status
            )
        if result.mail is None:
            text = "Reply recorded. The customer has no e-mail address: they see it in the portal."
            await flash(request, visit, text, "error")
        elif result.mail.sent:
            await flash(request, visit, "Reply sent and recorded.")
        elif result.mail.queued:
            await flash(
                request,
                visit,
                "Reply recorded; the e-mail is queued and will be retried.",
                "warning",
            )
        else:
            await flash(
                request,
                visit,
                f"Reply recorded, but the e-mail was not sent ({result.mail.error}).",
                "error",
            )
        return see_other(f"/desk/cases/{case_id}#latest")

    @post("/cases/{case_id:str}/note")
    async def note(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit], case_id: FromPath[str]
    ) -> Template | Redirect:
        _require(request, visit, "work")
        body = await _text(request, "body", MESSAGE_MAX)
        problem = _problem(body)
        if problem:
            return await self._case(
                request, visit, case_id, note_draft=body, error=problem, status=400
            )
        await _desk(request).note(visit.actor, case_id, body)
        await flash(request, visit, "Internal note added.")
        return see_other(f"/desk/cases/{case_id}#latest")

    @post("/cases/{case_id:str}/state")
    async def change_state(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit], case_id: FromPath[str]
    ) -> Template | Redirect:
        _require(request, visit, "work")
        state = await _text(request, "state", 16)
        try:
            await _desk(request).set_state(visit.actor, case_id, state)
        except DeskError as exc:
            return await self._case(request, visit, case_id, error=exc.message, status=400)
        await flash(request, visit, "Case state changed.")
        return see_other(f"/desk/cases/{case_id}")

    @post("/cases/{case_id:str}/assign")
    async def assign(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit], case_id: FromPath[str]
    ) -> Template | Redirect:
        _require(request, visit, "work")
        user_id = _number(await _text(request, "user_id", 12), 0, 0, 2**31 - 1)
        try:
            await _desk(request).assign(visit.actor, case_id, user_id)
        except DeskError as exc:
            return await self._case(request, visit, case_id, error=exc.message, status=400)
        await flash(request, visit, "Case assigned.")
        return see_other(f"/desk/cases/{case_id}")

    # -- canned responses -----------------------------------------------------------------

    @get("/canned")
    async def canned(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        _require(request, visit, "work")
        return await self._canned(request, visit)

    async def _canned(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        *,
        error: str = "",
        typed: dict[str, str] | None = None,
        status: int = 200,
    ) -> Template:
        return await render(
            request,
            "desk/canned.html",
            visit=visit,
            status=status,
            section="service",
            title="Canned responses",
            responses=await canned_responses.responses(visit.identity.team),
            team=visit.identity.team,
            error=error,
            typed=typed or {},
            title_max=canned_responses.TITLE_MAX,
            body_max=canned_responses.BODY_MAX,
        )

    @post("/canned")
    async def save_canned(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        settings: NamedDependency[Settings],
    ) -> Template | Redirect:
        _require(request, visit, "work")
        title = await _text(request, "title", canned_responses.TITLE_MAX)
        body = await _text(request, "body", canned_responses.BODY_MAX)
        try:
            await canned_responses.save(
                visit.identity.team,
                title,
                body,
                by=visit.identity.user_id,
                region=settings.default_phone_region,
            )
        except DeskError as exc:
            typed = {"title": title, "body": body}
            return await self._canned(
                request, visit, error=exc.message, typed=typed, status=exc.status
            )
        await flash(request, visit, "Canned response saved.")
        return see_other("/desk/canned")

    @post("/canned/{canned_id:int}/delete")
    async def delete_canned(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        canned_id: FromPath[int],
    ) -> Redirect:
        _require(request, visit, "work")
        try:
            await canned_responses.remove(canned_id, visit.identity.team)
        except DeskError as exc:
            raise NotFoundException() from exc
        await flash(request, visit, "Canned response deleted.")
        return see_other("/desk/canned")

    # -- data-subject-request flags (compliance) ------------------------------------------

    @get("/flags")
    async def flags(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        _require(request, visit, "dsr_flags")
        return await render(
            request,
            "desk/flags.html",
            visit=visit,
            section="compliance",
            title="Messages that read like a request",
            flags=await _desk(request).flagged(),
            kinds=KINDS,
            verifications=VERIFICATIONS,
        )

    @post("/flags/{case_id:str}/open")
    async def open_request(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit], case_id: FromPath[str]
    ) -> Redirect:
        _require(request, visit, "dsr_flags")
        verification = await _text(request, "verification", 32)
        if verification not in VERIFICATIONS:
            await flash(request, visit, "Choose how the person's identity was verified.", "error")
            return see_other("/desk/flags")
        try:
            request_id = await _desk(request).open_request(
                visit.actor, case_id, verification, request_id=visit.request_id
            )
        except DeskError as exc:
            raise NotFoundException() from exc
        await flash(request, visit, "Request opened from the flagged message.")
        return see_other(f"/compliance/requests/{request_id}")

    @post("/flags/{case_id:str}/dismiss")
    async def dismiss(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit], case_id: FromPath[str]
    ) -> Redirect:
        _require(request, visit, "dsr_flags")
        try:
            await _desk(request).dismiss_flag(visit.actor, case_id)
        except (DeskError, ValueError) as exc:
            raise NotFoundException() from exc
        await flash(request, visit, "Flag dismissed: not a data-subject request.")
        return see_other("/desk/flags")

    # -- configuration (admins) -----------------------------------------------------------

    @get("/settings")
    async def settings(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        _require(request, visit, "configure")
        return await self._settings(request, visit)

    async def _settings(
        self, request: Request[Any, Any, Any], visit: Visit, *, error: str = "", status: int = 200
    ) -> Template:
        queues = await config.queues()
        leads = await config.staff_names(
            sorted({int(q["lead_id"]) for q in queues if q["lead_id"]})
        )
        policies = await config.policies()
        return await render(
            request,
            "desk/settings.html",
            visit=visit,
            status=status,
            section="service",
            title="Service desk settings",
            queues=queues,
            leads=leads,
            policies=policies,
            shown_hours={p["id"]: config.hours_in_words(str(p["hours"])) for p in policies},
            shown_holidays={
                p["id"]: config.holidays_in_words(str(p["holidays"])) for p in policies
            },
            shown_targets={p["id"]: config.targets_in_words(str(p["targets"])) for p in policies},
            staff_choices=await config.staff_choices(),
            routings=ROUTINGS,
            priorities=PRIORITIES,
            weekdays=list(enumerate(WEEKDAYS)),
            error=error,
        )

    @post("/settings/policies")
    async def save_policy(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        audit: NamedDependency[AuditLog],
    ) -> Template | Redirect:
        _require(request, visit, "configure")
        form = await request.form()

        def field(name: str, limit: int = 100) -> str:
            value = form.get(name, "")
            return value[:limit].strip() if isinstance(value, str) else ""

        hours: dict[str, list[str]] = {}
        for number, _ in enumerate(WEEKDAYS):
            opens, closes = field(f"open_{number}", 5), field(f"close_{number}", 5)
            if opens or closes:
                hours[str(number)] = [opens, closes]
        holidays = [d for d in field("holidays", 8000).split() if d]
        try:
            targets = {
                p: Targets(_hours(field(f"first_{p}", 8)), _hours(field(f"resolve_{p}", 8)))
                for p in PRIORITIES
            }
            await config.save_policy(
                audit,
                visit.actor,
                name=field("name", 80),
                time_zone=field("time_zone", 64) or "UTC",
                hours=hours,
                holidays=holidays,
                targets=targets,
                warn_percent=_number(field("warn_percent", 3), 80, 0, 1000),
            )
        except DeskError as exc:
            return await self._settings(request, visit, error=exc.message, status=exc.status)
        await flash(request, visit, "SLA policy saved.")
        return see_other("/desk/settings")

    @post("/settings/queues")
    async def save_queue(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        audit: NamedDependency[AuditLog],
    ) -> Template | Redirect:
        _require(request, visit, "configure")
        form = await request.form()

        def field(name: str, limit: int = 100) -> str:
            value = form.get(name, "")
            return value[:limit].strip() if isinstance(value, str) else ""

        queue_id = _number(field("queue_id", 12), 0, 0, 2**31 - 1) or None
        policy_id = _number(field("sla_policy_id", 12), 0, 0, 2**31 - 1) or None
        lead_id = _number(field("lead_id", 12), 0, 0, 2**31 - 1) or None
        try:
            await config.save_queue(
                audit,
                visit.actor,
                name=field("name", 80),
                team=field("team", 64),
                routing=field("routing", 16),
                sla_policy_id=policy_id,
                lead_id=lead_id,
                queue_id=queue_id,
            )
        except DeskError as exc:
            return await self._settings(request, visit, error=exc.message, status=exc.status)
        await flash(request, visit, "Queue saved.")
        return see_other("/desk/settings")


def _hours(value: str) -> int | None:
    """Hours typed in a form ("8", "0.5") as whole minutes; "" for none."""
    if not value:
        return None
    try:
        hours = float(value)
    except ValueError:
        raise DeskError("bad_target", "Targets are numbers of hours.") from None
    if not math.isfinite(hours) or hours <= 0:
        raise DeskError("bad_target", "A target is a positive number of hours.")
    return max(1, round(hours * 60))


def _problem(body: str) -> str:
    if not body.strip():
        return "Write something first."
    if len(body) > MESSAGE_MAX:
        return f"The text is longer than {MESSAGE_MAX} characters."
    return ""


async def _line(
    request: Request[Any, Any, Any], visit: Visit, row: dict[str, Any], names: dict[int, str]
) -> QueueLine:
    """One queue line: the title and status read through the gateway as the user (a case
    outside their record scope shows as hidden, never its title)."""
    case: Record | None
    try:
        case = await services_of(request).gateway.read(
            visit.actor,
            "case",
            str(row["case_id"]),
            purpose="customer_support",
            fields=("title", "status", "priority"),
        )
    except GatewayError:
        case = None
    due = row["first_response_due"] if row["first_response_at"] is None else row["resolution_due"]
    return QueueLine(
        case_id=str(row["case_id"]),
        ref=str(row["case_ref"]),
        title=str(case.values.get("title") or "") if case else "(not yours to read)",
        status=str(case.values.get("status") or row["state"]) if case else str(row["state"]),
        priority=str(case.values.get("priority") or row["priority"])
        if case
        else str(row["priority"]),
        sla=str(row["sla"]),
        due=due,
        assignee=names.get(int(row["assignee_id"]), "") if row["assignee_id"] is not None else "",
        flagged=bool(row["dsr_kind"]),
        readable=case is not None,
    )
