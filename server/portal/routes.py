"""``/portal``: the customer self-service pages. Server-rendered, no JavaScript needed.

The portal has its own cookie (``consentry_portal``, path ``/portal``) and never looks at
a staff session. Every form is CSRF-protected like the admin's (the app-wide middleware;
``/portal`` is not exempt) and gets the same security headers. A link from an e-mail
opens a page with one button: the sign-in happens on POST, so mail scanners that fetch
links do not spend them. Downloads are POSTs too (building a bundle is an audited action,
and a cross-site link must not make one in the person's name): the e-mailed download link
opens a page with a Download button, and the buttons on the person's page are forms.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.background_tasks import BackgroundTask
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_303_SEE_OTHER, HTTP_404_NOT_FOUND

from audit.log import AuditLog
from audit.trail import AuditTrail
from server.consent.model import SUBJECT_ACTOR
from server.consent.service import ConsentEngine
from server.datamap import InvalidValues, self_correctable
from server.dsr.export import NoRecords
from server.dsr.people import OwnRecord
from server.dsr.receipts import CONSENT_WORDS, consent_receipt, request_receipt
from server.dsr.requests import KINDS, STATES
from server.gateway import Gateway
from server.portal.access import SUBJECT_ROLE, access_page, access_proofs
from server.portal.service import (
    REVIEWED_KINDS,
    SESSION_IDLE,
    Portal,
    PortalError,
    PortalIdentity,
)
from server.settings import Settings
from server.web import client_address_of, request_id_of, services_of

PORTAL_COOKIE = "consentry_portal"
LINK_INVALID_STATUS = 410
MAX_FORM_VALUE = 300
ZIP_NAME = "my-data.zip"

REQUEST_WORDS = {
    "erasure": (
        "Erase my data",
        "We delete what we hold about you, except what the law makes us keep (for example "
        "invoices); we tell you what that is.",
    ),
    "restriction": (
        "Restrict processing",
        "We keep your data but stop using it, for example while you contest its accuracy.",
    ),
    "objection": (
        "Object to processing",
        "We stop using your data for purposes based on our legitimate interests, unless we "
        "have compelling grounds; direct marketing always stops.",
    ),
}
SENT_MESSAGE = (
    "If we hold data under that address, we have sent a sign-in link to it. "
    "The link works once, for 15 minutes."
)


def _portal(request: Request[Any, Any, Any]) -> Portal:
    return services_of(request).portal


def _page(
    request: Request[Any, Any, Any],
    template: str,
    status: int = 200,
    *,
    signed_in: bool = False,
    **context: Any,
) -> Template:
    settings = services_of(request).settings
    return Template(
        template_name=f"portal/{template}",
        context={
            "controller": settings.controller_name,
            "controller_contact": settings.controller_contact,
            "signed_in": signed_in,
            "title": "",
            **context,
        },
        status_code=status,
    )


def _invalid(request: Request[Any, Any, Any]) -> Template:
    return _page(request, "invalid.html", LINK_INVALID_STATUS, title="Link not valid")


def _see_other(location: str) -> Redirect:
    return Redirect(location, status_code=HTTP_303_SEE_OTHER)


def _zip(content: bytes) -> Response[bytes]:
    return Response(
        content,
        media_type="application/zip",
        headers={"content-disposition": f'attachment; filename="{ZIP_NAME}"'},
    )


def _session_cookie(request: Request[Any, Any, Any], value: str, max_age: int | None) -> Cookie:
    return Cookie(
        key=PORTAL_COOKIE,
        value=value,
        httponly=True,
        samesite="lax",
        secure=services_of(request).settings.cookie_secure,
        path="/portal",
        max_age=max_age,
    )


async def _identity(request: Request[Any, Any, Any]) -> PortalIdentity | None:
    return await _portal(request).session(request.cookies.get(PORTAL_COOKIE, ""))


async def _form(request: Request[Any, Any, Any]) -> dict[str, str]:
    form = await request.form()
    return {k: v[:MAX_FORM_VALUE] for k, v in form.items() if isinstance(v, str)}


def _sign_in_page(
    request: Request[Any, Any, Any], *, error: str = "", notice: str = "", status: int = 200
) -> Template:
    return _page(
        request, "sign_in.html", status, title="Your data with us", error=error, notice=notice
    )


class PortalPages(Controller):
    path = "/portal"
    include_in_schema = False

    # -- signing in ------------------------------------------------------------------------

    @get("/")
    async def start(self, request: Request[Any, Any, Any]) -> Response[Any]:
        if await _identity(request) is not None:
            return _see_other("/portal/home")
        return _sign_in_page(request)

    @post("/", status_code=200)
    async def ask_for_link(
        self, request: Request[Any, Any, Any], *, portal: NamedDependency[Portal]
    ) -> Template:
        form = await _form(request)
        try:
            address = await portal.admit_link_request(
                form.get("email", ""), client_address_of(request)
            )
        except PortalError as exc:
            return _sign_in_page(request, error=exc.message, status=400)
        page = _page(request, "sent.html", title="Check your e-mail", message=SENT_MESSAGE)
        if address is not None:
            # After the answer has gone out: the response time cannot tell whether we found
            # anyone, or whether an e-mail was sent.
            page.background = BackgroundTask(portal.deliver_sign_in_link, address)
        return page

    @get("/enter/{token:str}")
    async def enter_page(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        portal: NamedDependency[Portal],
    ) -> Template:
        if not await portal.sign_in_link_is_live(token):
            return _invalid(request)
        return _page(request, "enter.html", title="Sign in", action=f"/portal/enter/{token}")

    @post("/enter/{token:str}", status_code=200)
    async def enter(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        portal: NamedDependency[Portal],
    ) -> Response[Any]:
        identity = await portal.sign_in(token, request_id=request_id_of(request))
        if identity is None:
            return _invalid(request)
        response = _see_other("/portal/home")
        response.set_cookie(_session_cookie(request, identity.session_token, None))
        return response

    @post("/sign-out", status_code=200)
    async def sign_out(
        self, request: Request[Any, Any, Any], *, portal: NamedDependency[Portal]
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is not None:
            await portal.sign_out(identity)
        page = _sign_in_page(request, notice="You are signed out.")
        page.cookies.append(_session_cookie(request, "", 0))
        return page

    # -- home ------------------------------------------------------------------------------

    @get("/home")
    async def home(self, request: Request[Any, Any, Any]) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        return await _home(request, identity)

    @post("/download", status_code=200)
    async def download_now(
        self, request: Request[Any, Any, Any], *, portal: NamedDependency[Portal]
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        try:
            content = await portal.download_now(identity, request_id=request_id_of(request))
        except PortalError as exc:
            if exc.code == "in_progress":
                return await _home(request, identity, error=exc.message, status=409)
            return await _home(
                request, identity, error="We could not build your download. Try again later."
            )
        except NoRecords:
            return await _home(
                request, identity, error="We could not build your download. Try again later."
            )
        return _zip(content)

    @post("/requests", status_code=200)
    async def file_request(
        self, request: Request[Any, Any, Any], *, portal: NamedDependency[Portal]
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        form = await _form(request)
        kind = form.get("kind", "")
        if kind == "erasure" and form.get("confirmed") != "yes":
            # Erasure cannot be undone: say what it means and ask once more (on the
            # server, so it holds without JavaScript and for a replayed form too).
            return _page(
                request,
                "confirm_erasure.html",
                signed_in=True,
                title="Erase your data?",
                explanation=REQUEST_WORDS["erasure"][1],
            )
        try:
            filed = await portal.file_request(identity, kind, request_id=request_id_of(request))
        except PortalError as exc:
            status = 409 if exc.code == "duplicate" else 400
            return await _home(request, identity, error=exc.message, status=status)
        return _page(
            request,
            "filed.html",
            signed_in=True,
            title="Request received",
            filed=filed,
            what=REQUEST_WORDS[filed.kind][0],
        )

    @post("/requests/{dsr_id:str}/download", status_code=200)
    async def request_download(
        self,
        request: Request[Any, Any, Any],
        dsr_id: FromPath[str],
        *,
        portal: NamedDependency[Portal],
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        try:
            content = await portal.download_for_request(
                identity, dsr_id[:64], request_id=request_id_of(request)
            )
        except NoRecords:  # erased since: nothing left to hand out
            content = None
        return _invalid(request) if content is None else _zip(content)

    @get("/download/{token:str}")
    async def download_page(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        portal: NamedDependency[Portal],
    ) -> Template:
        """The e-mailed link: a page with a Download button (nothing is built or recorded)."""
        identity = await _identity(request)
        if identity is None:
            return _sign_in_page(
                request,
                notice="To download your data, first sign in: enter your e-mail address and "
                "follow the link we send you. Then open the download link again, or use the "
                "Download button on your page.",
            )
        if not await portal.download_link_is_live(identity, token):
            return _invalid(request)
        return _page(
            request,
            "download.html",
            signed_in=True,
            title="Download your data",
            action=f"/portal/download/{token}",
        )

    @post("/download/{token:str}", status_code=200)
    async def download_link(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        portal: NamedDependency[Portal],
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        try:
            content = await portal.download_by_link(
                identity, token, request_id=request_id_of(request)
            )
        except NoRecords:
            content = None
        return _invalid(request) if content is None else _zip(content)

    # -- correcting ------------------------------------------------------------------------

    @get("/correct")
    async def correct_page(
        self, request: Request[Any, Any, Any], *, portal: NamedDependency[Portal]
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        try:
            own = await portal.own_record(identity)
        except PortalError as exc:
            return await _home(request, identity, error=exc.message, status=404)
        return _correct_form(request, own)

    @post("/correct", status_code=200)
    async def correct(
        self, request: Request[Any, Any, Any], *, portal: NamedDependency[Portal]
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        form = await _form(request)
        try:
            result = await portal.correct(identity, form, request_id=request_id_of(request))
        except PortalError as exc:
            return await _home(request, identity, error=exc.message, status=404)
        except InvalidValues as exc:
            current = await portal.own_record(identity)
            typed = {k: form.get(k, "") for k in self_correctable(current.record_type)}
            return _correct_form(request, current, typed=typed, problems=exc.problems, status=400)
        own = await portal.own_record(identity)
        if not result.changed:
            message = "Nothing was changed: the details you sent are the ones we hold."
        else:
            rt = own.record_type
            labels = ", ".join(rt.field(name).label.lower() for name in result.changed)
            reference = f" (reference {result.request.id})" if result.request else ""
            message = f"Corrected: {labels}. We recorded your request{reference}."
        return _correct_form(request, own, message=message)

    # -- consents and the privacy notice -----------------------------------------------------

    @get("/consents")
    async def consents(
        self, request: Request[Any, Any, Any], *, consent: NamedDependency[ConsentEngine]
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        link = consent.preference_link(identity.subject_id)
        return _see_other(link)

    @get("/notice")
    async def notice(
        self, request: Request[Any, Any, Any], *, consent: NamedDependency[ConsentEngine]
    ) -> Template:
        notice = await consent.current_notice()
        text = "" if notice is None else notice.text
        return _page(
            request,
            "notice.html",
            signed_in=await _identity(request) is not None,
            title=notice.title if notice else "Privacy notice",
            notice=notice,
            paragraphs=[p for p in text.split("\n\n") if p.strip()],
        )


async def _home(
    request: Request[Any, Any, Any],
    identity: PortalIdentity,
    *,
    error: str = "",
    status: int = 200,
) -> Template:
    portal = _portal(request)
    return _page(
        request,
        "home.html",
        status,
        signed_in=True,
        title="Your data with us",
        requests=await portal.requests_of(identity),
        downloads=await portal.downloads_of(identity),
        kinds=KINDS,
        states=STATES,
        request_words=[(kind, *REQUEST_WORDS[kind]) for kind in REVIEWED_KINDS],
        error=error,
        idle_minutes=int(SESSION_IDLE.total_seconds() // 60),
    )


def _correct_form(
    request: Request[Any, Any, Any],
    own: OwnRecord,
    *,
    typed: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    message: str = "",
    status: int = 200,
) -> Template:
    rt = own.record_type
    values = {**own.values, **(typed or {})}
    fields = [
        {
            "name": name,
            "label": rt.field(name).label,
            "value": values.get(name) or "",
            "problem": (problems or {}).get(name, ""),
            "max_length": rt.field(name).max_length,
        }
        for name in self_correctable(rt)
    ]
    return _page(
        request,
        "correct.html",
        status,
        signed_in=True,
        title="Correct your details",
        fields=fields,
        email=own.email or "",
        message=message,
        problems=problems or {},
    )


# -- who looked at my data, and receipts (issue 23, items 2 and 3) ---------------------------

PROOFS_NAME = "my-access-proofs.json"
MAX_SEQ = 2**53  # larger numbers name no event (and would not fit a BIGINT comparison)
PUBLIC_KEY_NAME = "consentry-audit.pub"


def _json_download(document: dict[str, Any], name: str) -> Response[bytes]:
    body = (json.dumps(document, indent=1, sort_keys=True) + "\n").encode()
    return Response(
        body,
        media_type="application/json",
        headers={"content-disposition": f'attachment; filename="{name}"'},
    )


def _not_found(request: Request[Any, Any, Any]) -> Template:
    return _page(request, "invalid.html", HTTP_404_NOT_FOUND, signed_in=True, title="Not found")


class PortalTransparency(Controller):
    """The person's access log with proofs, their receipts, and how to check both."""

    path = "/portal"
    include_in_schema = False

    @get("/access")
    async def access(
        self,
        request: Request[Any, Any, Any],
        before: FromQuery[int | None] = None,
        *,
        audit: NamedDependency[AuditLog],
        gateway: NamedDependency[Gateway],
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        page = await access_page(
            audit,
            gateway,
            identity.subject_id,
            before=before if before and 0 < before <= MAX_SEQ else None,
            request_id=request_id_of(request),
        )
        return _page(
            request,
            "access.html",
            signed_in=True,
            title="Who looked at your data",
            page=page,
            first=before is None,
        )

    @post("/access/proofs", status_code=200)
    async def all_proofs(
        self,
        request: Request[Any, Any, Any],
        *,
        audit: NamedDependency[AuditLog],
        gateway: NamedDependency[Gateway],
        audit_trail: NamedDependency[AuditTrail],
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        document = await access_proofs(
            audit, gateway, audit_trail, identity.subject_id, request_id=request_id_of(request)
        )
        assert document is not None  # every event: never refused
        return _json_download(document, PROOFS_NAME)

    @post("/access/{seq:int}/proof", status_code=200)
    async def one_proof(
        self,
        request: Request[Any, Any, Any],
        seq: FromPath[int],
        *,
        audit: NamedDependency[AuditLog],
        gateway: NamedDependency[Gateway],
        audit_trail: NamedDependency[AuditTrail],
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        document = None
        if 0 < seq <= MAX_SEQ:
            document = await access_proofs(
                audit,
                gateway,
                audit_trail,
                identity.subject_id,
                seq=seq,
                request_id=request_id_of(request),
            )
        if document is None:  # someone else's event, or none at all: the same answer
            return _not_found(request)
        return _json_download(document, f"access-{seq}-proof.json")

    @get("/how-to-check")
    async def how_to_check(
        self, request: Request[Any, Any, Any], *, audit_trail: NamedDependency[AuditTrail]
    ) -> Template:
        trail = audit_trail
        return _page(
            request,
            "how_to_check.html",
            signed_in=await _identity(request) is not None,
            title="How to check what we tell you",
            public_key=trail.public_key_b64,
            key_id=trail.key_id,
        )

    @get("/public-key")
    async def public_key(
        self, request: Request[Any, Any, Any], *, audit_trail: NamedDependency[AuditTrail]
    ) -> Response[bytes]:
        key = audit_trail.public_key_b64
        return Response(
            (key + "\n").encode(),
            media_type="text/plain",
            headers={"content-disposition": f'attachment; filename="{PUBLIC_KEY_NAME}"'},
        )

    @get("/receipts")
    async def receipts(
        self,
        request: Request[Any, Any, Any],
        *,
        consent: NamedDependency[ConsentEngine],
        portal: NamedDependency[Portal],
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        ledger = await consent.ledger(
            identity.subject_id,
            actor_id=SUBJECT_ACTOR,
            actor_role=SUBJECT_ROLE,
            request_id=request_id_of(request),
        )
        answered = [r for r in await portal.requests_of(identity) if not r.open]
        return _page(
            request,
            "receipts.html",
            signed_in=True,
            title="Your receipts",
            ledger=ledger,
            consent_words=CONSENT_WORDS,
            answered=answered,
            kinds=KINDS,
            states=STATES,
        )

    @post("/receipts/consent/{ledger_id:int}", status_code=200)
    async def consent_receipt(
        self,
        request: Request[Any, Any, Any],
        ledger_id: FromPath[int],
        *,
        audit_trail: NamedDependency[AuditTrail],
        settings: NamedDependency[Settings],
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        receipt = None
        if 0 < ledger_id <= MAX_SEQ:
            receipt = await consent_receipt(audit_trail, settings, identity.subject_id, ledger_id)
        if receipt is None:
            return _not_found(request)
        await _record_receipt(request, identity, None)
        return _json_download(receipt, f"receipt-consent-{ledger_id}.json")

    @post("/receipts/request/{dsr_id:str}", status_code=200)
    async def request_receipt(
        self,
        request: Request[Any, Any, Any],
        dsr_id: FromPath[str],
        *,
        portal: NamedDependency[Portal],
        audit_trail: NamedDependency[AuditTrail],
        settings: NamedDependency[Settings],
    ) -> Response[Any]:
        identity = await _identity(request)
        if identity is None:
            return _see_other("/portal")
        mine = {r.id: r for r in await portal.requests_of(identity)}
        found = mine.get(dsr_id[:64])
        receipt = None if found is None else await request_receipt(audit_trail, settings, found)
        if found is None or receipt is None:
            return _not_found(request)
        await _record_receipt(request, identity, found.id)
        return _json_download(receipt, f"receipt-{found.id}.json")


async def _record_receipt(
    request: Request[Any, Any, Any], identity: PortalIdentity, dsr_id: str | None
) -> None:
    await _portal(request).record_receipt(identity, dsr_id, request_id=request_id_of(request))
