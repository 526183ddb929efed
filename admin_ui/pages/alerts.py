"""Audit alerts in the compliance console: the alerts raised, and the rules that raise them.

Only the compliance role sees these pages (404 for everyone else), and the policy must
grant ``alert manage`` too. Acknowledging an alert is a fixed choice of outcome, never
free text, because it is written to the audit log. Changing a rule - including switching
it off, which would hide misuse from now on - needs a recent password confirmation; the
alert engine audits every change in the transaction that makes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from admin_ui.forms import problem_message
from admin_ui.rendering import flash, render, see_other
from admin_ui.rights import ALERT_RIGHT
from admin_ui.session import Visit, page_access, provide_visit, require_recent_login
from audit.alerts.engine import AlertEngine
from audit.alerts.model import AlertError, AlertNotFound, Changer, RuleInvalid
from audit.alerts.raised import ACKNOWLEDGEMENTS, KIND_LABELS, UNITS
from audit.alerts.rules import Rule, RuleKind, RuleSettings
from server.mail import Mailer
from server.settings import Settings
from server.web import services_of

STATES = {"open": "Open", "acknowledged": "Acknowledged", "all": "All"}
SETTING_LABELS = {
    "kind": "Kind",
    "name": "Name",
    "threshold": "Threshold",
    "window_minutes": "Window",
    "work_start_hour": "Working hours start",
    "work_end_hour": "Working hours end",
    "work_days": "Working days",
    "timezone": "Time zone",
}
FORM_FIELDS = (*SETTING_LABELS, "enabled")
MAX_INPUT = 100


def _engine(request: Request[Any, Any, Any], visit: Visit) -> AlertEngine:
    """The alert engine, for roles the policy lets manage alerts (404 for the rest)."""
    services = services_of(request)
    if not services.policy.allows(visit.identity.role, "alert", "manage"):
        raise NotFoundException()
    return services.alerts


def _changer(visit: Visit) -> Changer:
    return Changer(visit.actor.id, visit.identity.role, visit.request_id)


def when(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def events_link(actor_id: str, start: dt.datetime, end: dt.datetime) -> str:
    """The console's event search for this actor over the days of the alert window."""
    query = {
        "actor_id": actor_id,
        "from": start.astimezone(dt.UTC).date().isoformat(),
        "to": end.astimezone(dt.UTC).date().isoformat(),
    }
    return "/compliance/events?" + urlencode(query)


def _page_number(value: str) -> int:
    try:
        return max(1, min(int(value), 1_000_000))
    except ValueError:
        return 1


def _form_values(form: Mapping[str, Any]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in FORM_FIELDS:
        raw = form.get(name, "")
        values[name] = raw[:MAX_INPUT] if isinstance(raw, str) else ""
    return values


def _summary(problems: Mapping[str, str]) -> list[tuple[str, str]]:
    return [
        (f"rule-{name}" if name in SETTING_LABELS else "", problem_message(label, reason))
        for name, reason in problems.items()
        for label in [SETTING_LABELS.get(name, name.replace("_", " ").capitalize())]
    ]


def _values_of(rule: Rule) -> dict[str, str]:
    s = rule.settings
    return {
        "kind": s.kind,
        "name": s.name,
        "threshold": str(s.threshold),
        "window_minutes": str(s.window_minutes),
        "work_start_hour": str(s.work_start_hour),
        "work_end_hour": str(s.work_end_hour),
        "work_days": s.work_days,
        "timezone": s.timezone,
        "enabled": "1" if s.enabled else "",
    }


class AlertPages(Controller):
    path = "/compliance/alerts"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access(right=ALERT_RIGHT)

    @get("/")
    async def index(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        mailer: NamedDependency[Mailer],
        settings: NamedDependency[Settings],
    ) -> Template:
        engine = _engine(request, visit)
        params = request.query_params
        state = params.get("state", "open")
        state = state if state in STATES else "open"
        result = await engine.list_alerts(state=state, page=_page_number(params.get("page", "1")))

        def link(number: int) -> str:
            return "/compliance/alerts?" + urlencode({"state": state, "page": number})

        return await render(
            request,
            "compliance/alerts.html",
            visit=visit,
            section="compliance",
            title="Audit alerts",
            alerts=result.items,
            total=result.total,
            open_total=result.open_total,
            page=result.page,
            pages=result.pages,
            state=state,
            states=STATES,
            acknowledgements=ACKNOWLEDGEMENTS,
            prev_link=link(result.page - 1) if result.page > 1 else "",
            next_link=link(result.page + 1) if result.page < result.pages else "",
            mail_enabled=mailer.enabled,
            has_recipients=bool(settings.alert_recipients),
            initialised=await engine.initialised(),
            when=when,
            events_link=events_link,
        )

    @post("/{alert_id:int}/acknowledge")
    async def acknowledge(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        alert_id: FromPath[int],
    ) -> Redirect:
        engine = _engine(request, visit)
        form = await request.form()
        outcome = form.get("acknowledgement", "")
        back = form.get("back", "")
        back = back if isinstance(back, str) and back.startswith("/compliance/alerts") else ""
        try:
            alert = await engine.acknowledge(
                alert_id, outcome if isinstance(outcome, str) else "", by=_changer(visit)
            )
        except AlertNotFound:
            raise NotFoundException() from None
        except AlertError as exc:
            await flash(request, visit, _sentence(str(exc)), "error")
            return see_other(back or "/compliance/alerts")
        await flash(
            request, visit, f"Alert {alert.id} acknowledged: {alert.acknowledgement_label.lower()}."
        )
        return see_other(back or "/compliance/alerts")

    # -- rules -------------------------------------------------------------------------------

    @get("/rules")
    async def rules(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        engine = _engine(request, visit)
        return await render(
            request,
            "compliance/alerts_rules.html",
            visit=visit,
            section="compliance",
            title="Alert rules",
            rules=await engine.list_rules(),
            initialised=await engine.initialised(),
            kind_labels=KIND_LABELS,
            recent=visit.info.recently_authenticated,
        )

    @get("/rules/new")
    async def new_rule(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        _engine(request, visit)
        kind = request.query_params.get("kind", RuleKind.BULK_READ)
        defaults = RuleSettings(kind if kind in set(RuleKind) else RuleKind.BULK_READ, "", 1, 60)
        values = {
            **{k: str(v) for k, v in vars(defaults).items()},
            "name": "",
            "threshold": "",
            "enabled": "1",
        }
        return await self._rule_form(request, visit, None, values, {})

    @post("/rules/new")
    async def create_rule(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template | Redirect:
        engine = _engine(request, visit)
        require_recent_login(visit, "/compliance/alerts/rules/new")
        values = _form_values(await request.form())
        try:
            rule = await engine.create_rule(RuleSettings.from_text(values), by=_changer(visit))
        except RuleInvalid as exc:
            return await self._rule_form(request, visit, None, values, exc.problems)
        await flash(request, visit, f"Rule {rule.id} created. It applies to new audit events.")
        return see_other("/compliance/alerts/rules")

    @get("/rules/{rule_id:int}")
    async def edit_rule(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        rule_id: FromPath[int],
    ) -> Template:
        engine = _engine(request, visit)
        try:
            rule = await engine.get_rule(rule_id)
        except AlertNotFound:
            raise NotFoundException() from None
        return await self._rule_form(request, visit, rule, _values_of(rule), {})

    @post("/rules/{rule_id:int}")
    async def save_rule(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        rule_id: FromPath[int],
    ) -> Template | Redirect:
        engine = _engine(request, visit)
        require_recent_login(visit, f"/compliance/alerts/rules/{rule_id}")
        try:
            rule = await engine.get_rule(rule_id)
        except AlertNotFound:
            raise NotFoundException() from None
        values = {**_form_values(await request.form()), "kind": rule.kind}
        try:
            settings = RuleSettings.from_text(values, kind=rule.kind)
            await engine.update_rule(rule_id, settings, by=_changer(visit))
        except RuleInvalid as exc:
            return await self._rule_form(request, visit, rule, values, exc.problems)
        await flash(request, visit, f"Rule {rule_id} saved. It applies to new audit events.")
        return see_other("/compliance/alerts/rules")

    @post("/rules/{rule_id:int}/enabled")
    async def set_enabled(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        rule_id: FromPath[int],
    ) -> Redirect:
        engine = _engine(request, visit)
        require_recent_login(visit, "/compliance/alerts/rules")
        enabled = (await request.form()).get("enabled") == "1"
        try:
            await engine.set_rule_enabled(rule_id, enabled, by=_changer(visit))
        except AlertNotFound:
            raise NotFoundException() from None
        message = "Rule switched on." if enabled else "Rule switched off: it raises no alerts."
        await flash(request, visit, f"{message} The change is in the audit log.")
        return see_other("/compliance/alerts/rules")

    async def _rule_form(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        rule: Rule | None,
        values: Mapping[str, str],
        problems: Mapping[str, str],
    ) -> Template:
        return await render(
            request,
            "compliance/alerts_rule_form.html",
            visit=visit,
            status=HTTP_400_BAD_REQUEST if problems else 200,
            section="compliance",
            title=f"Alert rule: {rule.name}" if rule else "New alert rule",
            rule=rule,
            values=values,
            problems=problems,
            summary=_summary(problems),
            kinds=[(k.value, KIND_LABELS[k]) for k in RuleKind],
            units=UNITS,
            recent=visit.info.recently_authenticated,
        )


def _sentence(message: str) -> str:
    message = message.strip()
    return (message[:1].upper() + message[1:]).rstrip(".") + "."
