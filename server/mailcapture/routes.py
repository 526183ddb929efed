"""Captured mail over REST: list and read through the gateway (private to the mailbox
owner until the thread is shared; ``visibility`` is the only field staff may change), and
sharing a whole thread at once."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import msgspec
from litestar import Controller, Request, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath

from server.datamap import MAIL
from server.gateway import Actor, Gateway
from server.mailcapture.capture import share_thread
from server.records.routes import record_routes
from server.web import provide_actor, provide_identity

MailRecordRoutes = record_routes(MAIL, "/api/v1/mail", "mail")


class ThreadShared(msgspec.Struct):
    changed: int  # how many captured mails of the thread changed visibility
    visibility: str


class MailThreadRoutes(Controller):
    path = "/api/v1/mail/{mail_id:uuid}/thread"
    tags = ["mail"]
    dependencies = {"identity": Provide(provide_identity), "actor": Provide(provide_actor)}

    @post("/share", summary="Share the thread this captured mail is in with your team")
    async def share(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        mail_id: FromPath[UUID],
        *,
        gateway: NamedDependency[Gateway],
    ) -> ThreadShared:
        changed = await share_thread(gateway, actor, str(mail_id), shared=True)
        return ThreadShared(changed=changed, visibility="shared")

    @post("/unshare", summary="Make the thread private to you again")
    async def unshare(
        self,
        request: Request[Any, Any, Any],
        actor: NamedDependency[Actor],
        mail_id: FromPath[UUID],
        *,
        gateway: NamedDependency[Gateway],
    ) -> ThreadShared:
        changed = await share_thread(gateway, actor, str(mail_id), shared=False)
        return ThreadShared(changed=changed, visibility="private")
