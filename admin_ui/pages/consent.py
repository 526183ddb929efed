"""Staff consent pages: the purposes registry, the privacy notices, consent recorded on a
person's behalf, the proof export and the consent dashboard.

Roles compliance and admin only (404 for everyone else), and the policy must grant
``consent manage`` too. Every change goes through :class:`ConsentEngine`, which audits it
in the transaction that makes it; changing the registry or publishing a notice needs a
recent password confirmation, because both change what every later consent means.

The contact page shows a person's consent state to anyone who may read the contact
(:func:`consent_panel`); only managers get the proof link and the form to record consent
given by phone or letter. Nothing typed into these forms is free text that reaches the
ledger or the audit log except through the engine's validation (codes, short references).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import MethodNotAllowedException, NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from admin_ui.forms import problem_message
from admin_ui.pages.audit_views import record_view, today, when
from admin_ui.rendering import flash, render, see_other
from admin_ui.rights import CONSENT_RIGHT, CONSOLE_RIGHT
from admin_ui.session import Visit, page_access, provide_visit, require_recent_login
from audit.events import Outcome
from audit.log import AuditLog
from server.consent import reports
from server.consent.model import (
    ANY_CHANNEL,
    CHANNELS,
    DIRECT_MARKETING,
    ConsentError,
    ConsentEventKind,
    ConsentStatus,
    PurposeInfo,
    Source,
)
from server.consent.service import ConsentEngine
from server.datamap import LegalBasis
from server.gateway import Gateway, Record
from server.web import services_of

BASE = "/compliance/consent"
CONSOLE_SECTION = "compliance"  # the menu section of the compliance console
DASHBOARD_DAYS = 90
MAX_TEXT = 2000
LEGAL_BASIS_LABELS = {
    LegalBasis.CONSENT: "Consent (Art. 6(1)(a))",
    LegalBasis.CONTRACT: "Contract (Art. 6(1)(b))",
    LegalBasis.LEGAL_OBLIGATION: "Legal obligation (Art. 6(1)(c))",
    LegalBasis.VITAL_INTERESTS: "Vital interests (Art. 6(1)(d))",
    LegalBasis.PUBLIC_TASK: "Public task (Art. 6(1)(e))",
    LegalBasis.LEGITIMATE_INTERESTS: "Legitimate interests (Art. 6(1)(f))",
}
CHANNEL_LABELS = {
    "email": "E-mail",
    "phone": "Phone",
    "sms": "SMS",
    "post": "Post",
    "web": "Web",
    ANY_CHANNEL: "Any channel",
}
PURPOSE_LABELS = {  # what each registry field is called on the page and in messages
    "legal_basis": "Legal basis",
    "description": "Description",
    "channels": "Channels",
    "retention": "Retention",
    "direct_marketing": "Direct marketing",
    "active": "Active",
}
KIND_LABELS = {
    ConsentEventKind.GRANTED.value: "Granted",
    ConsentEventKind.WITHDRAWN.value: "Withdrawn",
    ConsentEventKind.EXPIRED.value: "Expired",
    ConsentEventKind.OBJECTED.value: "Objected",
    ConsentEventKind.LIFTED.value: "Objection lifted",
}
# charts.js colours a series by its key (grants green, withdrawals amber, objections red,
# expiries grey, lifted objections blue); the labels say what each series is.
CHART_KEYS = {kind: kind for kind in ("granted", "withdrawn", "objected", "expired", "lifted")}
RECORD_SOURCES = {
    Source.PHONE.value: "By phone",
    Source.STAFF.value: "In writing (letter or form handed to staff)",
}
RECORD_ACTIONS = {"grant": "Consent given", "withdraw": "Consent withdrawn"}
NOTICE_LABELS = {"title": "Title", "text": "Notice text"}
RECORD_LABELS = {
    "target": "Purpose and channel",
    "action": "What the person said",
    "source": "How it was given",
    "notice_version": "Privacy notice",
    "reference": "Reference",
}


# --- access ---------------------------------------------------------------------------------


def may_manage(request: Request[Any, Any, Any], visit: Visit) -> bool:
    return services_of(request).policy.allows(visit.identity.role, "consent", "manage")


def _engine(request: Request[Any, Any, Any], visit: Visit) -> ConsentEngine:
    """The consent engine, for roles the policy lets manage consent (404 for the rest)."""
    if not may_manage(request, visit):
        raise NotFoundException()
    return services_of(request).consent


def _text(form: Mapping[str, Any], name: str, limit: int = MAX_TEXT) -> str:
    """A text input; over-long input is kept one character too long so it is refused."""
    value = form.get(name, "")
    return value.strip()[: limit + 1] if isinstance(value, str) else ""


def _sentence(message: str) -> str:
    message = message.strip()
    return (message[:1].upper() + message[1:]).rstrip(".") + "."


def _summary(problems: Mapping[str, str], prefix: str) -> list[tuple[str, str]]:
    """The error summary: each message linked to its input (``prefix`` + field name)."""
    return [(f"{prefix}{name}" if name else "", text) for name, text in problems.items()]


# --- the purposes registry ------------------------------------------------------------------


def purpose_values(info: PurposeInfo) -> dict[str, Any]:
    return {
        "legal_basis": info.legal_basis.value,
        "description": info.description,
        "channels": list(info.channels),
        "retention": info.retention,
        "direct_marketing": info.direct_marketing,
        "active": info.active,
    }


def purpose_changes(
    info: PurposeInfo, form: Mapping[str, Any], channels: list[str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, str]]:
    """(changes, values to show again, problems) from a submitted registry form.

    Only fields that differ from the registry are changes, so the audit event names
    exactly what was changed. Messages name the field and the rule, never the input.
    """
    values: dict[str, Any] = {
        "legal_basis": _text(form, "legal_basis", 32),
        "description": _text(form, "description"),
        "channels": channels,
        "retention": _text(form, "retention"),
        "direct_marketing": form.get("direct_marketing") == "1",
        "active": form.get("active") == "1",
    }
    problems: dict[str, str] = {}
    if values["legal_basis"] not in {b.value for b in LegalBasis}:
        problems["legal_basis"] = problem_message("Legal basis", "choose one from the list")
    for name in ("description", "retention"):
        if not values[name]:
            problems[name] = problem_message(PURPOSE_LABELS[name], "is required")
        elif len(values[name]) > MAX_TEXT:
            problems[name] = problem_message(
                PURPOSE_LABELS[name], f"must be at most {MAX_TEXT} characters"
            )
    if not set(channels) <= CHANNELS:
        problems["channels"] = problem_message("Channels", "choose from the list")
    current = purpose_values(info)
    changes = {
        k: v
        for k, v in values.items()
        if (sorted(v) if k == "channels" else v)
        != (sorted(current[k]) if k == "channels" else current[k])
    }
    return changes, values, problems


# --- the contact page -----------------------------------------------------------------------


@dataclass(frozen=True)
class StateRow:
    """One line of the contact page's consent table."""

    purpose: str
    description: str
    channel: str
    state: str  # granted | withdrawn | expired | objected
    since: dt.datetime
    expires_at: dt.datetime | None


def _state_row(
    status: ConsentStatus, purposes: Mapping[str, PurposeInfo], now: dt.datetime
) -> StateRow:
    state = status.state.value
    if status.state is ConsentEventKind.GRANTED and not status.in_force(now):
        state = ConsentEventKind.EXPIRED.value  # past its expiry, before the expiry job recorded it
    if status.purpose == DIRECT_MARKETING:
        description = "Objection to direct marketing (blocks every marketing purpose and profiling)"
    else:
        info = purposes.get(status.purpose)
        description = info.description if info else status.purpose
    return StateRow(
        status.purpose, description, status.channel, state, status.since, status.expires_at
    )


def record_targets(purposes: list[PurposeInfo]) -> list[tuple[str, str]]:
    """("purpose/channel", label) for every consent-based, active purpose and channel:
    one choice, so a channel the purpose does not offer cannot be picked."""
    targets = []
    for info in purposes:
        if not info.needs_consent or not info.active:
            continue
        for channel in info.channels or (ANY_CHANNEL,):
            label = f"{info.description} — {CHANNEL_LABELS.get(channel, channel)}"
            targets.append((f"{info.name}/{channel}", label))
    return targets


async def consent_panel(
    request: Request[Any, Any, Any], visit: Visit, record: Record, base_path: str
) -> dict[str, Any]:
    """What the contact page shows about consent: the current state for everyone who may
    read the contact; the proof link and the recording form for consent managers."""
    engine = services_of(request).consent
    purposes = await engine.purposes()
    by_name = {p.name: p for p in purposes}
    now = dt.datetime.now(dt.UTC)
    rows = [_state_row(s, by_name, now) for s in await engine.state(record.subject_id)]
    manage = may_manage(request, visit)
    notice = await engine.current_notice() if manage else None
    return {
        "rows": rows,
        "manage": manage,
        "subject_id": record.subject_id,
        "proof_link": f"{BASE}/proof/{record.subject_id}",
        "action": f"{BASE}/contacts/{record.id}",
        "lift_action": f"{BASE}/contacts/{record.id}/lift-objection",
        "back": f"{base_path}/{record.id}",
        "targets": record_targets(purposes) if manage else [],
        "notice": notice,
        "sources": RECORD_SOURCES,
        "actions": RECORD_ACTIONS,
        "kind_labels": KIND_LABELS,
        "channel_labels": CHANNEL_LABELS,
        "when": when,
        "values": {},
        "problems": {},
    }


# --- the dashboard --------------------------------------------------------------------------


def chart_data(series: reports.Series) -> dict[str, Any]:
    """What charts.js draws (the page's table shows the same numbers)."""
    return {
        "labels": [d.day.isoformat() for d in series.days],
        "series": [
            {
                "key": CHART_KEYS[kind],
                "label": KIND_LABELS[kind],
                "data": [d.counts.get(kind, 0) for d in series.days],
            }
            for kind in reports.KINDS
        ],
    }


# --- pages ----------------------------------------------------------------------------------


class ConsentPages(Controller):
    path = BASE
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access(right=CONSENT_RIGHT)

    @staticmethod
    def _section(request: Request[Any, Any, Any], visit: Visit) -> str:
        """The console's section for those who use the console, else the consent pages'."""
        policy = services_of(request).policy
        console = policy.allows(visit.identity.role, *CONSOLE_RIGHT)
        return CONSOLE_SECTION if console else "consent"

    @get("/")
    async def dashboard(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        audit: NamedDependency[AuditLog],
    ) -> Template:
        """Grants, withdrawals, expiries and objections per day over the last 90 days, for
        one purpose or all, and the current totals per purpose. Counts only; audited."""
        engine = _engine(request, visit)
        purposes = await engine.purposes()
        choices = {p.name: p.description for p in purposes}
        choices[DIRECT_MARKETING] = "Objections to direct marketing"
        chosen = _text(request.query_params, "purpose", 64)
        problems: dict[str, str] = {}
        if chosen and chosen not in choices:
            problems["purpose"] = problem_message("Purpose", "choose one from the list")
            chosen = ""
        last = today()
        first = last - dt.timedelta(days=DASHBOARD_DAYS - 1)
        series = await reports.events_per_day(first, last, chosen or None)
        since = dt.datetime.combine(first, dt.time.min, tzinfo=dt.UTC)
        counted = await reports.totals(since)
        names = [p.name for p in purposes] + sorted(set(counted) - {p.name for p in purposes})
        totals = [counted.get(n) or reports.PurposeTotals(n) for n in names]
        await record_view(
            audit,
            visit,
            "consent.report",
            outcome=Outcome.ERROR if problems else Outcome.ALLOWED,
            reason="invalid_filter" if problems else "allowed",
            detail={
                "report": "consent_dashboard",
                "days": DASHBOARD_DAYS,
                "purpose": chosen or "all",
                "events": sum(d.total for d in series.days),
            },
        )
        return await render(
            request,
            "consent/admin_dashboard.html",
            visit=visit,
            status=HTTP_400_BAD_REQUEST if problems else 200,
            section=self._section(request, visit),
            title="Consent dashboard",
            series=series,
            chart=chart_data(series),
            kinds=reports.KINDS,
            kind_labels=KIND_LABELS,
            totals=totals,
            choices=choices,
            chosen=chosen,
            days=DASHBOARD_DAYS,
            problems=problems,
            summary=_summary(problems, "f-"),
        )

    # -- the purposes registry ---------------------------------------------------------------

    @get("/purposes")
    async def purposes(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        engine = _engine(request, visit)
        return await render(
            request,
            "consent/admin_purposes.html",
            visit=visit,
            section=self._section(request, visit),
            title="Purposes and legal bases",
            purposes=await engine.purposes(),
            basis_labels=LEGAL_BASIS_LABELS,
            channel_labels=CHANNEL_LABELS,
            when=when,
        )

    @get("/purposes/{name:str}")
    async def edit_purpose(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit], name: FromPath[str]
    ) -> Template:
        info = await self._purpose(request, visit, name)
        return await self._purpose_form(request, visit, info, purpose_values(info), {})

    @post("/purposes/{name:str}")
    async def save_purpose(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit], name: FromPath[str]
    ) -> Template | Redirect:
        engine = _engine(request, visit)
        info = await self._purpose(request, visit, name)
        require_recent_login(visit, f"{BASE}/purposes/{info.name}")
        form = await request.form()
        channels = [c for c in form.getall("channels", []) if isinstance(c, str)][:10]
        changes, values, problems = purpose_changes(info, form, channels)
        if problems:
            return await self._purpose_form(request, visit, info, values, problems)
        if not changes:
            await flash(request, visit, "Nothing was changed.", "info")
            return see_other(f"{BASE}/purposes")
        try:
            await engine.update_purpose(
                info.name,
                changes,
                by=visit.actor.id,
                by_role=visit.identity.role,
                request_id=visit.request_id,
            )
        except ConsentError as exc:
            return await self._purpose_form(
                request, visit, info, values, {"": _sentence(exc.message)}
            )
        changed = ", ".join(PURPOSE_LABELS[k].lower() for k in sorted(changes))
        await flash(
            request,
            visit,
            f"Purpose {info.name} saved ({changed}). The change is in the audit log.",
        )
        return see_other(f"{BASE}/purposes")

    async def _purpose(
        self, request: Request[Any, Any, Any], visit: Visit, name: str
    ) -> PurposeInfo:
        try:
            return await _engine(request, visit).purpose(name[:64])
        except ConsentError:
            raise NotFoundException() from None

    async def _purpose_form(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        info: PurposeInfo,
        values: Mapping[str, Any],
        problems: Mapping[str, str],
    ) -> Template:
        return await render(
            request,
            "consent/admin_purpose_form.html",
            visit=visit,
            status=HTTP_400_BAD_REQUEST if problems else 200,
            section=self._section(request, visit),
            title=f"Purpose: {info.name}",
            purpose=info,
            values=values,
            problems=problems,
            summary=_summary(problems, "purpose-"),
            basis_labels=LEGAL_BASIS_LABELS,
            channel_labels={c: CHANNEL_LABELS[c] for c in sorted(CHANNELS)},
            recent=visit.info.recently_authenticated,
        )

    # -- privacy notices ---------------------------------------------------------------------

    @get("/notices")
    async def notices(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        _engine(request, visit)
        return await self._notices_page(request, visit, {"title": "", "text": ""}, {})

    @post("/notices")
    async def publish(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template | Redirect:
        engine = _engine(request, visit)
        require_recent_login(visit, f"{BASE}/notices")
        form = await request.form()
        raw = form.get("text", "")
        values = {
            "title": _text(form, "title", 200),
            "text": raw[:200_001] if isinstance(raw, str) else "",
        }
        problems: dict[str, str] = {}
        if not values["title"]:
            problems["title"] = problem_message("Title", "is required")
        elif len(values["title"]) > 200:
            problems["title"] = problem_message("Title", "must be at most 200 characters")
        if not values["text"].strip():
            problems["text"] = problem_message("Notice text", "is required")
        elif len(values["text"]) > 200_000:
            problems["text"] = problem_message("Notice text", "must be at most 200000 characters")
        if problems:
            return await self._notices_page(request, visit, values, problems)
        try:
            notice = await engine.publish_notice(
                values["title"],
                values["text"],
                by=visit.actor.id,
                by_role=visit.identity.role,
                request_id=visit.request_id,
            )
        except ConsentError as exc:
            return await self._notices_page(request, visit, values, {"": _sentence(exc.message)})
        await flash(
            request,
            visit,
            f"Privacy notice version {notice.version} published. "
            "Consent recorded from now on refers to it.",
        )
        return see_other(f"{BASE}/notices/{notice.version}")

    @get("/notices/{version:int}")
    async def notice(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit], version: FromPath[int]
    ) -> Template:
        engine = _engine(request, visit)
        found = await engine.notice(version)
        if found is None:
            raise NotFoundException()
        current = await engine.current_notice()
        return await render(
            request,
            "consent/admin_notice.html",
            visit=visit,
            section=self._section(request, visit),
            title=f"Privacy notice version {found.version}",
            notice=found,
            is_current=current is not None and current.version == found.version,
            when=when,
        )

    async def _notices_page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        values: Mapping[str, str],
        problems: Mapping[str, str],
    ) -> Template:
        rows = await reports.notices()
        return await render(
            request,
            "consent/admin_notices.html",
            visit=visit,
            status=HTTP_400_BAD_REQUEST if problems else 200,
            section=self._section(request, visit),
            title="Privacy notices",
            notices=rows,
            values=values,
            problems=problems,
            summary=_summary(problems, "notice-"),
            recent=visit.info.recently_authenticated,
            when=when,
        )

    # -- one person --------------------------------------------------------------------------

    @get("/proof/{subject_id:str}")
    async def proof_by_link(
        self, visit: NamedDependency[Visit], subject_id: FromPath[str]
    ) -> Response[bytes]:
        """405: the proof is an audited export, so only the panel's button (a POST with
        the CSRF token) makes one; a link, from whichever site, does not. The handler is
        here so that roles without the consent pages still get a 404 (``visit``)."""
        raise MethodNotAllowedException(headers={"Allow": "POST"})

    @post("/proof/{subject_id:str}", status_code=200)
    async def proof(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        subject_id: FromPath[str],
    ) -> Response[bytes]:
        """The person's consent history with the notice texts, as a JSON file (audited by
        the engine as ``consent.export``)."""
        engine = _engine(request, visit)
        try:
            bundle = await engine.proof(
                subject_id[:64],
                actor_id=visit.actor.id,
                actor_role=visit.identity.role,
                request_id=visit.request_id,
            )
        except ConsentError:
            raise NotFoundException() from None
        filename = f"consent-proof-{bundle['subject_id']}-{today().isoformat()}.json"
        return Response(
            json.dumps(bundle, indent=2, sort_keys=True).encode(),
            media_type="application/json",
            headers={"content-disposition": f'attachment; filename="{filename}"'},
        )

    @post("/contacts/{record_id:str}/lift-objection")
    async def lift_objection(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        record_id: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Redirect:
        """An objection lifted at the person's request by phone or letter: staff must say
        how they asked (the evidence, sealed under the person's key); one ledger event."""
        engine = _engine(request, visit)
        record = await gateway.read(visit.actor, "contact", record_id[:64], fields=())
        back = f"/contacts/{record.id}"
        form = await request.form()
        scope, source, note = (
            _text(form, "scope", 64),
            _text(form, "source", 16),
            _text(form, "note", 200),
        )
        if source not in RECORD_SOURCES:
            await flash(request, visit, "Choose how the person asked.", "error")
            return see_other(back)
        try:
            lifted = await engine.lift_objection(
                record.subject_id,
                scope,
                source=source,
                actor_id=visit.actor.id,
                actor_role=visit.identity.role,
                evidence={"note": note} if note else None,
                request_id=visit.request_id,
            )
        except ConsentError as exc:
            await flash(request, visit, f"Not lifted: {_sentence(exc.message)}", "error")
            return see_other(back)
        if lifted is None:
            await flash(request, visit, "Nothing to lift: no objection is in force.", "info")
        else:
            message = "Objection lifted. It is in the ledger and the audit log."
            await flash(request, visit, message, "success")
        return see_other(back)

    @post("/contacts/{record_id:str}")
    async def record_consent(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        record_id: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Template | Redirect:
        """Consent given or withdrawn by phone or letter, recorded by staff on the person's
        behalf (source phone or staff, the staff member as actor)."""
        engine = _engine(request, visit)
        # The subject comes from the record the staff member can see, never from the form.
        # No field is read: the gateway audits a read of the record's ids only.
        record = await gateway.read(visit.actor, "contact", record_id[:64], fields=())
        back = f"/contacts/{record.id}"
        form = await request.form()
        values = {name: _text(form, name, 150) for name in RECORD_LABELS}
        purposes = await engine.purposes()
        targets = dict(record_targets(purposes))
        notice = await engine.current_notice()
        problems: dict[str, str] = {}
        if values["target"] not in targets:
            problems["target"] = problem_message(
                RECORD_LABELS["target"], "choose one from the list"
            )
        if values["action"] not in RECORD_ACTIONS:
            problems["action"] = problem_message(RECORD_LABELS["action"], "choose one")
        if values["source"] not in RECORD_SOURCES:
            problems["source"] = problem_message(RECORD_LABELS["source"], "choose one")
        if values["action"] == "grant":
            if notice is None:
                problems["notice_version"] = (
                    "No privacy notice has been published: publish one before recording consent."
                )
            elif values["notice_version"] != str(notice.version):
                problems["notice_version"] = (
                    f"The privacy notice changed while this page was open: version "
                    f"{notice.version} is current. Read it to the person, then record again."
                )
        if values["reference"] and (
            len(values["reference"]) > 100
            or not all(
                ch.isascii() and (ch.isalnum() or ch in "_.:-") for ch in values["reference"]
            )
        ):
            problems["reference"] = problem_message(
                RECORD_LABELS["reference"],
                "must be a short code (letters, digits and _ . : -), for example a letter "
                "or call reference",
            )
        if not problems:
            purpose, _, channel = values["target"].partition("/")
            evidence = {"reference": values["reference"]} if values["reference"] else None
            try:
                if values["action"] == "grant":
                    assert notice is not None  # checked above
                    await engine.grant(
                        record.subject_id,
                        purpose,
                        channel,
                        source=values["source"],
                        notice_version=notice.version,
                        actor_id=visit.actor.id,
                        actor_role=visit.identity.role,
                        evidence=evidence,
                        request_id=visit.request_id,
                    )
                    message = "Consent recorded. It is in the ledger and the audit log."
                else:
                    done = await engine.withdraw(
                        record.subject_id,
                        purpose,
                        channel,
                        source=values["source"],
                        actor_id=visit.actor.id,
                        actor_role=visit.identity.role,
                        evidence=evidence,
                        request_id=visit.request_id,
                    )
                    message = (
                        "Withdrawal recorded: it takes effect immediately."
                        if done
                        else "Nothing to withdraw: no consent was in force for this purpose "
                        "and channel."
                    )
            except ConsentError as exc:
                problems[""] = _sentence(exc.message)
            else:
                await flash(request, visit, message, "success" if "recorded" in message else "info")
                return see_other(back)
        return await render(
            request,
            "consent/admin_record.html",
            visit=visit,
            status=HTTP_400_BAD_REQUEST,
            section="contact",
            title="Record consent",
            back=back,
            panel={
                "action": f"{BASE}/contacts/{record.id}",
                "targets": list(targets.items()),
                "notice": notice,
                "sources": RECORD_SOURCES,
                "actions": RECORD_ACTIONS,
                "values": values,
                "problems": problems,
            },
            summary=_summary(problems, "consent-"),
        )
