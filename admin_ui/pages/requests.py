"""Data-subject requests in the compliance console: the deadline queue, one request with
its history, and the form to log a request taken by phone, letter or e-mail.

Compliance officers only (404 for everyone else). Every change goes through
:class:`server.dsr.requests.DataSubjectRequests`, which records the history row and the
audit event in one transaction and then e-mails the person. The forms offer fixed codes
only (states, reasons, verification methods), so nothing typed reaches the history or the
audit log. The person is found by e-mail address with ``Gateway.locate`` (a POST, so the
address stays out of URLs and access logs) and the address is never shown back.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from admin_ui.pages.release import RELEASED_KINDS
from admin_ui.rendering import flash, render, see_other
from admin_ui.rights import DSR_RIGHT
from admin_ui.session import Visit, page_access, provide_visit
from server.auth.directory import staff_labels
from server.auth.tokens import ApiTokens
from server.dsr.erasure import Erasure
from server.dsr.requests import (
    CHANNEL_LABELS,
    CHANNELS,
    EXTENSION_REASONS,
    KINDS,
    OPENED_BECAUSE,
    REJECTION_REASONS,
    STATES,
    VERIFICATION_LABELS,
    VERIFICATIONS,
    DataRequest,
    DataSubjectRequests,
    RequestError,
)
from server.gateway import Gateway, GatewayError
from server.recipients.service import Recipients
from server.settings import Settings
from server.web import services_of

BASE = "/compliance/requests"
FILTERS = {"open": "Open", "overdue": "Overdue", "all": "All"}
ACTION_LABELS = {
    "verified": "Mark identity verified",
    "in_review": "Start review",
    "approved": "Approve",
    "rejected": "Reject",
    "fulfilled": "Mark fulfilled",
    "closed": "Close",
}
LOG_LABELS = {
    "email": "The person's e-mail address",
    "kind": "Request",
    "channel": "Received by",
    "verification": "Identity verified by",
}
MAX_EMAIL = 254


def when(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M") if moment else ""


def _text(form: Mapping[str, Any], name: str, limit: int = 64) -> str:
    value = form.get(name, "")
    return value.strip()[:limit] if isinstance(value, str) else ""


def _requests(request: Request[Any, Any, Any]) -> DataSubjectRequests:
    return services_of(request).requests


class RequestPages(Controller):
    path = BASE
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access(right=DSR_RIGHT)

    async def _queue_page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        show: str,
        *,
        problems: Mapping[str, str] | None = None,
        chosen: Mapping[str, str] | None = None,
    ) -> Template:
        service = _requests(request)
        items = await service.queue(overdue_only=show == "overdue", open_only=show == "open")
        return await render(
            request,
            "dsr/requests.html",
            visit=visit,
            status=HTTP_400_BAD_REQUEST if problems else 200,
            section="compliance",
            title="Data-subject requests",
            items=items,
            show=show,
            filters=FILTERS,
            kinds=KINDS,
            states=STATES,
            channels=CHANNELS,
            verifications=VERIFICATIONS,
            channel_labels=CHANNEL_LABELS,
            verification_labels=VERIFICATION_LABELS,
            opened_because=OPENED_BECAUSE,
            labels=LOG_LABELS,
            problems=problems or {},
            chosen=chosen or {},
            when=when,
        )

    @get("/")
    async def queue(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        """Requests by the deadline in force, soonest first; overdue ones flagged."""
        show = request.query_params.get("show", "open")
        return await self._queue_page(request, visit, show if show in FILTERS else "open")

    @post("/")
    async def log(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        gateway: NamedDependency[Gateway],
        requests: NamedDependency[DataSubjectRequests],
    ) -> Template | Redirect:
        """Log a request received by phone, letter or e-mail on the person's behalf."""
        form = await request.form()
        chosen = {name: _text(form, name) for name in ("kind", "channel", "verification")}
        address = _text(form, "email", MAX_EMAIL)
        problems: dict[str, str] = {}
        if chosen["kind"] not in KINDS:
            problems["kind"] = "Choose the kind of request."
        if chosen["channel"] not in CHANNELS:
            problems["channel"] = "Choose how the request was received."
        if chosen["verification"] not in VERIFICATIONS:
            problems["verification"] = "Choose how you verified the person's identity."
        found: list[tuple[str, str, str]] = []
        if not address:
            problems["email"] = "Enter the e-mail address the person gave."
        else:
            try:  # contacts, and people who are only leads (the data map's PERSON_TYPES)
                found = await gateway.locate_people(
                    visit.actor, "email", address, purpose="compliance"
                )
            except GatewayError:
                problems["email"] = "That is not a valid e-mail address."
            else:
                subjects = {subject for _, _, subject in found}
                if not subjects:
                    problems["email"] = "No customer has that e-mail address."
                elif len(subjects) > 1:
                    problems["email"] = (
                        "Several customers share that e-mail address: log the request "
                        "from the command line with the subject id."
                    )
        if problems:
            return await self._queue_page(request, visit, "open", problems=problems, chosen=chosen)
        _, record_id, subject_id = found[0]
        change = await requests.log(
            subject_id,
            chosen["kind"],
            chosen["channel"],
            verification=chosen["verification"],
            by=visit.actor.id,
            by_role=visit.identity.role,
            contact_id=record_id,
            request_id=visit.request_id,
        )
        await _flash_change(request, visit, "Request logged.", change.mail.sent)
        return see_other(f"{BASE}/{change.request.id}")

    @get("/{request_id:str}")
    async def detail(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        request_id: FromPath[str],
        *,
        erasure: NamedDependency[Erasure],
        recipients: NamedDependency[Recipients],
        settings: NamedDependency[Settings],
        tokens: NamedDependency[ApiTokens],
    ) -> Template:
        """One request: where it stands, its deadline, its history and what can happen next."""
        item = await _get(request, request_id)
        staff_ids = [int(h.actor_id[5:]) for h in item.history if _is_staff(h.actor_id)]
        return await render(
            request,
            "dsr/requests_detail.html",
            erasure=await erasure.job_for_request(item.id),
            restrictions=await erasure.restrictions.active(item.subject_id),
            # Art. 19: the recipients told about this request, and who acknowledged.
            notices=await recipients.notices(request_id=item.id),
            visit=visit,
            section="compliance",
            title="Data-subject request",
            item=item,
            kinds=KINDS,
            states=STATES,
            channels=CHANNELS,
            verifications=VERIFICATIONS,
            channel_labels=CHANNEL_LABELS,
            verification_labels=VERIFICATION_LABELS,
            opened_because=OPENED_BECAUSE,
            rejection_reasons=REJECTION_REASONS,
            extension_reasons=EXTENSION_REASONS,
            action_labels=ACTION_LABELS,
            release_review=item.kind in RELEASED_KINDS and settings.export_review,
            when=when,
            actors=actor_labels(
                item,
                await staff_labels(staff_ids),
                await tokens.labels([h.actor_id for h in item.history]),
            ),
            erase_after=item.received_at + dt.timedelta(days=settings.basis_lapse_grace_days),
        )

    @post("/{request_id:str}/transition")
    async def transition(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        request_id: FromPath[str],
        *,
        settings: NamedDependency[Settings],
        requests: NamedDependency[DataSubjectRequests],
    ) -> Redirect:
        item = await _get(request, request_id)
        form = await request.form()
        to_state = _text(form, "to_state")
        if item.kind == "erasure" and to_state == "fulfilled":
            # Erasure cannot be undone: only the confirmation page, with the reference
            # typed, carries it out (admin_ui.pages.erasure).
            await flash(request, visit, "Review what will be erased, then confirm.", "info")
            return see_other(f"{BASE}/{item.id}/erase")
        if item.kind in RELEASED_KINDS and to_state == "fulfilled" and settings.export_review:
            # What the export withholds about other people is reviewed before release
            # (admin_ui.pages.release).
            await flash(request, visit, "Review what the export withholds, then release.", "info")
            return see_other(f"{BASE}/{item.id}/release")
        try:
            change = await requests.transition(
                item.id,
                to_state,
                by=visit.actor.id,
                by_role=visit.identity.role,
                reason=_text(form, "reason"),
                verification=_text(form, "verification"),
                audit_request_id=visit.request_id,
            )
        except RequestError as exc:
            await flash(request, visit, _refusal(exc), "error")
        else:
            label = STATES[change.request.state]
            await _flash_change(request, visit, f"The request is now {label}.", change.mail.sent)
        return see_other(f"{BASE}/{item.id}")

    @post("/{request_id:str}/extend")
    async def extend(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        request_id: FromPath[str],
        *,
        requests: NamedDependency[DataSubjectRequests],
    ) -> Redirect:
        item = await _get(request, request_id)
        form = await request.form()
        months = _text(form, "months")
        try:
            change = await requests.extend(
                item.id,
                int(months) if months in ("1", "2") else 0,
                _text(form, "reason"),
                by=visit.actor.id,
                by_role=visit.identity.role,
                audit_request_id=visit.request_id,
            )
        except RequestError as exc:
            await flash(request, visit, _refusal(exc), "error")
        else:
            due = f"{change.request.deadline:%Y-%m-%d}"
            await _flash_change(request, visit, f"Deadline extended to {due}.", change.mail.sent)
        return see_other(f"{BASE}/{item.id}")

    @post("/{request_id:str}/unrestrict")
    async def unrestrict(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        request_id: FromPath[str],
        *,
        erasure: NamedDependency[Erasure],
    ) -> Redirect:
        """Lift the person's restriction of processing (Art. 18(3)); audited."""
        item = await _get(request, request_id)
        lifted = await erasure.restrictions.lift(
            item.subject_id, by=visit.actor.id, by_role=visit.identity.role
        )
        text = "Restriction lifted." if lifted else "The person was not restricted."
        await flash(request, visit, text)
        return see_other(f"{BASE}/{item.id}")


def _is_staff(actor_id: str) -> bool:
    return actor_id.startswith("user:") and actor_id[5:].isdigit() and len(actor_id) < 20


def actor_labels(
    item: DataRequest, staff: Mapping[int, str], tokens: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Who made each change, as a person reads it: the staff member's name and e-mail,
    the customer, an API token by its name, or Consentry itself - never "user:6"."""
    labels: dict[str, str] = dict(tokens or {})
    for entry in item.history:
        actor = entry.actor_id
        if actor in labels:
            continue
        if _is_staff(actor):
            labels[actor] = staff.get(int(actor[5:]), "A former staff account")
        elif actor == "system:portal" or actor == "subject":
            labels[actor] = "The customer, in the portal"
        elif actor.startswith("system:"):
            labels[actor] = "Consentry (automatic)"
        else:
            labels[actor] = actor
    return labels


async def _get(request: Request[Any, Any, Any], request_id: str) -> DataRequest:
    try:
        return await _requests(request).get(request_id[:64])
    except RequestError:
        raise NotFoundException() from None


def _refusal(exc: RequestError) -> str:
    return f"Not changed: {exc.message}."


async def _flash_change(
    request: Request[Any, Any, Any], visit: Visit, text: str, mailed: bool
) -> None:
    if mailed:
        await flash(request, visit, text + " The person was told by e-mail.")
    else:
        await flash(
            request,
            visit,
            text + " The e-mail to the person could not be sent: tell them another way.",
            "error",
        )
