"""Settings > Webhooks and Settings > Recipients.

Webhooks: endpoints with the event types they receive; a new endpoint's signing secret is
shown once, on the page that answers its creation, and never again. Each endpoint can be
switched off and on, sent a test event, deleted, and shows its delivery log. Recipients:
the register of processors and recipients (Art. 19) with the purposes and fields they
receive and how they are told. Who may open them is the policy's ``webhook manage`` /
``recipient manage`` (404 for everyone else).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from admin_ui.rendering import flash, render, see_other
from admin_ui.session import Visit, page_access, provide_visit
from server.datamap import PURPOSES
from server.gateway.errors import Conflict, InvalidInput, NotFound
from server.recipients.service import CHANNELS, KINDS, RecipientInput, Recipients, field_names
from server.web import services_of
from server.webhooks.events import EVENT_TYPES
from server.webhooks.service import Webhooks

MAX_INPUT = 500


def _allowed(request: Request[Any, Any, Any], visit: Visit, resource: str) -> None:
    if not services_of(request).policy.allows(visit.identity.role, resource, "manage"):
        raise NotFoundException()


def when(moment: dt.datetime | None) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _text(form: Any, name: str) -> str:
    value = form.get(name, "")
    return str(value)[:MAX_INPUT] if isinstance(value, str) else ""


def _many(form: Any, name: str) -> list[str]:
    return [str(v)[:MAX_INPUT] for v in form.getall(name, []) if isinstance(v, str)]


class WebhookPages(Controller):
    path = "/admin/webhooks"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    async def _page(
        self,
        request: Request[Any, Any, Any],
        visit: Visit,
        *,
        error: str = "",
        secret: str = "",
        status: int = 200,
    ) -> Template:
        webhooks = services_of(request).webhooks
        endpoints = await webhooks.all()
        logs = {e.id: await webhooks.deliveries(e.id, limit=10) for e in endpoints}
        return await render(
            request,
            "integrations/webhooks.html",
            visit=visit,
            status=status,
            section="settings",
            title="Webhooks",
            endpoints=endpoints,
            logs=logs,
            event_types=EVENT_TYPES,
            error=error,
            secret=secret,
            when=when,
        )

    @get("/")
    async def index(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        _allowed(request, visit, "webhook")
        return await self._page(request, visit)

    @post("/new")
    async def create(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        webhooks: NamedDependency[Webhooks],
    ) -> Template:
        _allowed(request, visit, "webhook")
        form = await request.form()
        try:
            created = await webhooks.create(
                visit.actor, _text(form, "name"), _text(form, "url"), _many(form, "event_types")
            )
        except InvalidInput as exc:
            return await self._page(request, visit, error=exc.message, status=400)
        return await self._page(request, visit, secret=created.secret, status=201)

    @post("/{endpoint_id:str}")
    async def change(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        endpoint_id: FromPath[str],
        *,
        webhooks: NamedDependency[Webhooks],
    ) -> Template | Redirect:
        _allowed(request, visit, "webhook")
        form = await request.form()
        action = _text(form, "action")
        try:
            current = await webhooks.get(endpoint_id)
            if action == "test":
                await webhooks.send_test(visit.actor, current.id)
                done = "Test event queued: it appears in the delivery log in a moment."
            elif action == "delete":
                await webhooks.delete(visit.actor, current.id)
                done = "Endpoint deleted."
            elif action == "events":
                await webhooks.set_event_types(visit.actor, current.id, _many(form, "event_types"))
                done = "Event types saved."
            elif action in {"enable", "disable"}:
                await webhooks.update(
                    visit.actor, current.id, name=current.name, url=current.url,
                    event_types=current.event_types, active=action == "enable",
                )  # fmt: skip
                done = "Endpoint switched on." if action == "enable" else "Endpoint switched off."
            else:
                return await self._page(request, visit, error="unknown action", status=400)
        except NotFound:
            raise NotFoundException() from None
        except (InvalidInput, Conflict) as exc:
            return await self._page(request, visit, error=exc.message, status=exc.status_code)
        await flash(request, visit, done)
        return see_other("/admin/webhooks")


class RecipientPages(Controller):
    path = "/admin/recipients"
    include_in_schema = False
    dependencies = {"visit": Provide(provide_visit)}
    opt = page_access()

    async def _page(
        self, request: Request[Any, Any, Any], visit: Visit, *, error: str = "", status: int = 200
    ) -> Template:
        services = services_of(request)
        return await render(
            request,
            "integrations/recipients.html",
            visit=visit,
            status=status,
            section="settings",
            title="Recipients",
            recipients=await services.recipients.all(),
            endpoints=await services.webhooks.all(),
            kinds=KINDS,
            channels=CHANNELS,
            purposes=sorted(PURPOSES),
            fields=field_names(),
            error=error,
        )

    @get("/")
    async def index(
        self, request: Request[Any, Any, Any], visit: NamedDependency[Visit]
    ) -> Template:
        _allowed(request, visit, "recipient")
        return await self._page(request, visit)

    @post("/new")
    async def create(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        *,
        recipients: NamedDependency[Recipients],
    ) -> Template | Redirect:
        _allowed(request, visit, "recipient")
        form = await request.form()
        data = RecipientInput(
            _text(form, "name"), _text(form, "kind"), _many(form, "purposes"),
            _many(form, "fields"), _text(form, "channel"), email=_text(form, "email"),
            endpoint_id=_text(form, "endpoint_id"),
        )  # fmt: skip
        try:
            await recipients.create(visit.actor, data)
        except InvalidInput as exc:
            return await self._page(request, visit, error=exc.message, status=400)
        await flash(request, visit, "Recipient registered.")
        return see_other("/admin/recipients")

    @post("/{recipient_id:str}/active")
    async def switch(
        self,
        request: Request[Any, Any, Any],
        visit: NamedDependency[Visit],
        recipient_id: FromPath[str],
        *,
        recipients: NamedDependency[Recipients],
    ) -> Template | Redirect:
        _allowed(request, visit, "recipient")
        form = await request.form()
        try:
            current = await recipients.get(recipient_id)
            data = RecipientInput(
                current.name, current.kind, current.purposes, current.fields, current.channel,
                email=current.email, endpoint_id=current.endpoint_id or "",
            )  # fmt: skip
            await recipients.update(
                visit.actor, current.id, data, active=_text(form, "active") == "on"
            )
        except NotFound:
            raise NotFoundException() from None
        except InvalidInput as exc:
            return await self._page(request, visit, error=exc.message, status=400)
        await flash(request, visit, "Recipient updated.")
        return see_other("/admin/recipients")
