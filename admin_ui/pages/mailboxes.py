"""My mailboxes (``/mailboxes``): connect a mailbox over IMAP, test it, sync it now, see
its progress; and sharing a captured mail's thread (``/mail/{id}/thread``).

Each staff member sees and manages only their own mailboxes (the policy's ``mailbox
manage`` says who may have one; 404 for everyone else). The password is written once and
never shown back; it is sealed by the vault. "Sync now" starts a run in this worker and
comes straight back: the page shows the run's counters (messages seen, captured,
skipped), the last run and the last error, and refreshes itself while a run is going.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template
from litestar.status_codes import HTTP_400_BAD_REQUEST

from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from server.datamap import PURPOSES
from server.gateway import Gateway
from server.mailcapture.capture import share_thread
from server.mailcapture.imap import check_connection, sync_mailbox
from server.mailcapture.jobs import capture_of
from server.mailcapture.service import (
    CAPTURE_PURPOSES,
    SECURITY,
    Mailboxes,
    MailboxInputError,
)
from server.settings import Settings
from server.web import services_of

MAX_INPUT = 1000
SECURITY_LABELS = {"ssl": "TLS (IMAPS, usually port 993)", "none": "None (this machine only)"}
_running: set[asyncio.Task[Any]] = set()  # "Sync now" runs, kept until they finish


def _allowed(request: Request[Any, Any, Any], visit: Visit) -> None:
    if not services_of(request).policy.allows(visit.identity.role, "mailbox", "manage"):
        raise NotFoundException()


def _text(form: Mapping[str, Any], name: str) -> str:
    value = form.get(name, "")
    return str(value)[:MAX_INPUT] if isinstance(value, str) else ""


def when(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "never"


class MailboxPages(Controller):
    path = "/"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    async def _page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        *,
        problems: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
        status: int = 200,
    ) -> Template:
        services = services_of(request)
        boxes = await services.mailboxes.mine(visit.actor)
        settings = services.settings
        return await render(
            request,
            "mail/mailboxes.html",
            visit=visit,
            status=status,
            section="mail",
            title="My mailboxes",
            mailboxes=boxes,
            running=any(b.running for b in boxes),
            problems=problems or {},
            values=values or {"port": 993, "security": "ssl", "folder": "INBOX"},
            securities=[(s, SECURITY_LABELS[s]) for s in SECURITY],
            purposes=[(p, PURPOSES[p].description) for p in CAPTURE_PURPOSES],
            full={
                p: dict(settings.mail_capture_content).get(p) == "full" for p in CAPTURE_PURPOSES
            },
            lead_rule=settings.mail_capture_lead_rule,
            when=when,
        )

    @get("/mailboxes")
    async def index(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        """Your connected mailboxes and their sync progress; connect another."""
        _allowed(request, visit)
        return await self._page(request, visit)

    @post("/mailboxes")
    async def connect(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        mailboxes: NamedDependency[Mailboxes],
    ) -> Template | Redirect:
        _allowed(request, visit)
        form = await request.form()
        values = {
            name: _text(form, name)
            for name in ("label", "host", "port", "security", "folder", "address", "purpose")
        }
        values["username"] = _text(form, "username")
        port = int(values["port"]) if values["port"].isdigit() else 0
        try:
            await mailboxes.connect(
                visit.actor,
                label=values["label"],
                host=values["host"],
                port=port,
                security=values["security"],
                folder=values["folder"] or "INBOX",
                address=values["address"],
                purpose=values["purpose"],
                username=values["username"],
                password=_text(form, "password"),
            )
        except MailboxInputError as exc:
            return await self._page(
                request, visit, problems=exc.problems, values=values, status=HTTP_400_BAD_REQUEST
            )
        await flash(request, visit, "Mailbox connected. Use Test connection, then Sync now.")
        return see_other("/mailboxes")

    @post("/mailboxes/{mailbox_id:str}")
    async def act(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        mailbox_id: FromPath[str],
        *,
        mailboxes: NamedDependency[Mailboxes],
        gateway: NamedDependency[Gateway],
        settings: NamedDependency[Settings],
    ) -> Redirect:
        _allowed(request, visit)
        mailbox = await mailboxes.get(visit.actor, mailbox_id)
        if mailbox is None:
            raise NotFoundException()
        action = _text(await request.form(), "action")
        if action == "test":
            problem = await check_connection(mailboxes, mailbox)
            if problem:
                await flash(request, visit, f"Connection failed: {problem}.", "error")
            else:
                await flash(request, visit, "Connection works: signed in and opened the folder.")
        elif action == "sync":
            # Claimed before the redirect, so the page it lands on already says "Syncing…"
            # and refreshes itself; claimed in the task, the page could land first, show
            # the mailbox idle and never refresh.
            if not await mailboxes.claim(mailbox.id):
                await flash(request, visit, "A sync of this mailbox is already running.", "error")
            else:
                capture = await capture_of(gateway, settings)
                run = sync_mailbox(mailboxes, capture, mailbox.id, claimed=True)
                task = asyncio.create_task(run)
                _running.add(task)
                task.add_done_callback(_running.discard)
                await flash(request, visit, "Sync started: the counters below update as it goes.")
        elif action == "remove":
            await mailboxes.remove(visit.actor, mailbox.id)
            await flash(request, visit, "Mailbox disconnected; its login is deleted.")
        else:
            await flash(request, visit, "Unknown action.", "error")
        return see_other("/mailboxes")

    @post("/mail/{mail_id:str}/thread")
    async def share(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        mail_id: FromPath[str],
        *,
        gateway: NamedDependency[Gateway],
    ) -> Redirect:
        """Share the thread with the colleagues who may see it, or make it private again."""
        action = _text(await request.form(), "action")
        if action not in {"share", "unshare"}:
            raise NotFoundException()
        changed = await share_thread(gateway, visit.actor, mail_id, shared=action == "share")
        text = "shared with your team" if action == "share" else "private to you again"
        count = "1 e-mail" if changed == 1 else f"{changed} e-mails"
        await flash(request, visit, f"Thread {text}: {count} changed.")
        return see_other(f"/mail/{mail_id}")
