"""``/consent/...`` and ``/preferences/...``: the public pages behind the links in e-mails.

No staff session: the token in the path is the credential, so these paths are exempt from
the admin's CSRF check (a forged cross-site POST would need the token). A GET only shows a
page with buttons; a change happens on POST, so mail scanners and link previews that
fetch URLs confirm or withdraw nothing. The withdrawal POST also serves RFC 8058 one-click
unsubscribe (``List-Unsubscribe=One-Click`` in the body, which needs no parsing).

The preference center (``/preferences/<token>``) shows every active purpose and the
person's state per channel, and changes one thing per button press: give or withdraw one
consent, withdraw everything, object. It shows no personal data (not even the name or
e-mail address), since whoever holds the link sees it.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template

from server.consent.model import (
    ANY_CHANNEL,
    DIRECT_MARKETING,
    ConsentError,
    ConsentEventKind,
    ConsentRecord,
    LinkInvalid,
)
from server.consent.service import ConsentEngine
from server.web import client_address_of, request_id_of, services_of

LINK_INVALID_STATUS = 404
MAX_FORM_VALUE = 64

# How the preference center says things: plain words, not codes.
LEGAL_BASIS_WORDS = {
    "consent": "Only with your consent. You can give or withdraw it here at any time.",
    "contract": "Needed to provide what you signed up for (our contract with you).",
    "legal_obligation": "Required by law.",
    "vital_interests": "To protect someone's life or health.",
    "public_task": "A task in the public interest. You can object to it.",
    "legitimate_interests": "Our legitimate interests, weighed against yours. "
    "You can object to it.",
}
CHANNEL_WORDS = {
    "email": "E-mail",
    "phone": "Phone calls",
    "sms": "Text messages",
    "post": "Post",
    "web": "Website",
    ANY_CHANNEL: "All channels",
}
STATE_WORDS = {
    "granted": "You agreed",
    "withdrawn": "Withdrawn",
    "expired": "Expired",
    "objected": "You objected",
    "lifted": "Objection lifted",
    "none": "Not given",
}
CHANGE_WORDS = {
    ConsentEventKind.GRANTED: "Consent given",
    ConsentEventKind.WITHDRAWN: "Consent withdrawn",
    ConsentEventKind.OBJECTED: "Objection recorded",
    ConsentEventKind.LIFTED: "Objection lifted",
}


def _page(
    request: Request[Any, Any, Any], template: str, status: int = 200, **context: Any
) -> Template:
    controller = services_of(request).settings.controller_name
    return Template(
        template_name=f"consent/{template}",
        context={"controller": controller, **context},
        status_code=status,
    )


def _invalid(request: Request[Any, Any, Any]) -> Template:
    return _page(request, "invalid.html", LINK_INVALID_STATUS, title="Link not valid")


def _evidence(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The click's evidence: a keyed hash of the address (never the address) and the
    user agent (shortened by the engine)."""
    evidence = {"user_agent": request.headers.get("user-agent", "")}
    address = client_address_of(request)
    if address:
        evidence["ip"] = address
    return evidence


class ConsentLinks(Controller):
    path = "/"
    include_in_schema = False

    @get("/consent/confirm/{token:str}")
    async def confirm_page(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        consent: NamedDependency[ConsentEngine],
    ) -> Template:
        purpose = await consent.confirmation_purpose(token)
        if purpose is None:
            return _invalid(request)
        return _page(request, "confirm.html", title="Confirm your consent", purpose=purpose)

    @post("/consent/confirm/{token:str}", status_code=200)
    async def confirm(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        consent: NamedDependency[ConsentEngine],
    ) -> Template:
        try:
            await consent.confirm(
                token, evidence=_evidence(request), request_id=request_id_of(request)
            )
        except ConsentError:  # LinkInvalid, or a purpose withdrawn from offer since
            return _invalid(request)
        return _page(
            request,
            "done.html",
            title="Thank you",
            message="Your consent is confirmed. Every message we send you carries a link to "
            "withdraw it in one click.",
        )

    @get("/consent/withdraw/{token:str}")
    async def withdraw_page(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        consent: NamedDependency[ConsentEngine],
    ) -> Template:
        purpose = await consent.withdrawal_purpose(token)
        if purpose is None:
            return _invalid(request)
        return _page(request, "withdraw.html", title="Withdraw consent", purpose=purpose)

    @post("/consent/withdraw/{token:str}", status_code=200)
    async def withdraw(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        consent: NamedDependency[ConsentEngine],
    ) -> Template:
        try:
            await consent.withdraw_by_link(
                token, evidence=_evidence(request), request_id=request_id_of(request)
            )
        except ConsentError:  # LinkInvalid, or a purpose withdrawn from offer since
            return _invalid(request)
        return _page(
            request,
            "done.html",
            title="Consent withdrawn",
            message="You will no longer be contacted for this purpose. Nothing else is needed.",
        )

    # -- the preference center -----------------------------------------------------------

    @get("/preferences/{token:str}")
    async def preferences_page(
        self, request: Request[Any, Any, Any], token: FromPath[str]
    ) -> Template:
        return await _preferences(request, token)

    @post("/preferences/{token:str}", status_code=200)
    async def change_preferences(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        consent: NamedDependency[ConsentEngine],
    ) -> Template:
        form = await request.form()

        def field(name: str) -> str:
            value = form.get(name)
            return value[:MAX_FORM_VALUE] if isinstance(value, str) else ""

        version = field("notice_version")
        try:
            records = await consent.change_preferences(
                token,
                field("action"),
                field("purpose"),
                field("channel"),
                notice_version=int(version) if version.isdigit() else None,
                evidence=_evidence(request),
                request_id=request_id_of(request),
            )
        except LinkInvalid:
            return _invalid(request)
        except ConsentError as exc:  # a choice the page does not offer (any more)
            return await _preferences(request, token, error=exc.message, status=400)
        return await _preferences(request, token, changes=await _described(request, records))

    @get("/preferences/{token:str}/notice")
    async def preferences_notice(
        self,
        request: Request[Any, Any, Any],
        token: FromPath[str],
        *,
        consent: NamedDependency[ConsentEngine],
    ) -> Template:
        view = await consent.preference_view(token)
        if view is None:
            return _invalid(request)
        notice = view.notice
        paragraphs = [] if notice is None else [p for p in notice.text.split("\n\n") if p.strip()]
        return _page(
            request,
            "preferences_notice.html",
            title=notice.title if notice else "Privacy notice",
            notice=notice,
            paragraphs=paragraphs,
            base=f"/preferences/{token}",
        )


async def _preferences(
    request: Request[Any, Any, Any],
    token: str,
    *,
    changes: list[str] | None = None,
    error: str = "",
    status: int = 200,
) -> Template:
    """The preference center for a token, or the generic invalid-link page."""
    services = services_of(request)
    view = await services.consent.preference_view(token)
    if view is None:
        return _invalid(request)
    return _page(
        request,
        "preferences_center.html",
        status,
        title="Your privacy choices",
        view=view,
        base=f"/preferences/{token}",
        changes=changes,
        error=error,
        contact=services.settings.controller_contact,
        basis_words=LEGAL_BASIS_WORDS,
        channel_words=CHANNEL_WORDS,
        state_words=STATE_WORDS,
    )


async def _described(request: Request[Any, Any, Any], records: list[ConsentRecord]) -> list[str]:
    """What changed, in words: one line per ledger event recorded."""
    consent = services_of(request).consent
    lines = []
    for record in records:
        if record.purpose == DIRECT_MARKETING:
            what = "direct marketing, by any channel, and profiling for it"
        else:
            what = (await consent.purpose(record.purpose)).description
            if record.channel != ANY_CHANNEL:
                what += f" ({CHANNEL_WORDS.get(record.channel, record.channel)})"
        lines.append(f"{CHANGE_WORDS.get(record.kind, record.kind.value)}: {what}")
    return lines
