"""Staff mailboxes: connect, list, remove, and the sync watermark and progress.

Each mailbox belongs to one staff user, who alone sees and manages it (the policy action
``mailbox manage`` says who may connect one at all). The login is sealed by the vault
(:meth:`server.gateway.sealing.Sealing.seal_secret`, bound to the mailbox id) and opened only to
connect; it is never shown back, logged or audited. Connecting, changing and removing a
mailbox are audited (ids and host, never the login).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import uuid
from dataclasses import dataclass

from audit.events import AuditEvent, Outcome, audit_event
from audit.log import AuditLog
from server import db
from server.datamap import PURPOSES
from server.gateway import Actor
from server.gateway.sealing import Sealing
from server.mailcapture.tables import Mailbox
from server.outbound import DestinationRefused, Destinations

SEAL_LABEL = "mailbox-login"
SECURITY = ("ssl", "none")
CAPTURE_PURPOSES = ("customer_relationship", "customer_support")
LEASE = dt.timedelta(minutes=10)  # a sync that died frees its mailbox after this long
MAX_MAILBOXES_PER_USER = 10


class MailboxInputError(ValueError):
    """Input for a mailbox that cannot be used; ``problems`` maps field -> reason."""

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))


@dataclass(frozen=True)
class MailboxView:
    """A mailbox as its owner sees it: no login."""

    id: str
    owner_id: int
    team: str
    label: str
    host: str
    port: int
    security: str
    folder: str
    address: str
    purpose: str
    enabled: bool
    uid_validity: int
    last_uid: int
    seen: int
    captured: int
    skipped: int
    total_captured: int
    state: str
    last_run_at: dt.datetime | None
    last_error: str

    @property
    def running(self) -> bool:
        return self.state == "running"


@dataclass(frozen=True)
class Login:
    username: str
    password: str


def _view(row: dict[str, object]) -> MailboxView:
    return MailboxView(
        id=str(row["id"]),
        owner_id=int(str(row["owner_id"])),
        team=str(row["team"]),
        label=str(row["label"]),
        host=str(row["host"]),
        port=int(str(row["port"])),
        security=str(row["security"]),
        folder=str(row["folder"]),
        address=str(row["address"]),
        purpose=str(row["purpose"]),
        enabled=bool(row["enabled"]),
        uid_validity=int(str(row["uid_validity"])),
        last_uid=int(str(row["last_uid"])),
        seen=int(str(row["seen"])),
        captured=int(str(row["captured"])),
        skipped=int(str(row["skipped"])),
        total_captured=int(str(row["total_captured"])),
        state=str(row["state"]),
        last_run_at=row["last_run_at"] if isinstance(row["last_run_at"], dt.datetime) else None,
        last_error=str(row["last_error"] or ""),
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_settings(
    *, label: str, host: str, port: int, security: str, folder: str, address: str, purpose: str
) -> dict[str, str]:
    """Problems with a mailbox's connection settings (field -> reason, never a value)."""
    problems: dict[str, str] = {}
    if not label.strip() or len(label) > 100:
        problems["label"] = "give a name of 1 to 100 characters"
    if not host.strip() or len(host) > 253 or any(c.isspace() for c in host):
        problems["host"] = "give the IMAP server's host name"
    if not 1 <= port <= 65535:
        problems["port"] = "must be a TCP port (1 to 65535)"
    if security not in SECURITY:
        problems["security"] = "must be one of: " + ", ".join(SECURITY)
    elif security == "none" and not _loopback(host.strip()):
        problems["security"] = "without TLS only to this machine (localhost): use ssl"
    if not folder.strip() or len(folder) > 200:
        problems["folder"] = "give a folder name (usually INBOX)"
    if "@" not in address or len(address) > 254 or any(c.isspace() for c in address):
        problems["address"] = "give the mailbox's own e-mail address"
    if purpose not in CAPTURE_PURPOSES or purpose not in PURPOSES:
        problems["purpose"] = "must be one of: " + ", ".join(CAPTURE_PURPOSES)
    return problems


class Mailboxes:
    def __init__(
        self, sealing: Sealing, audit: AuditLog, destinations: Destinations | None = None
    ) -> None:
        self._sealing = sealing
        self.audit = audit
        # A mailbox host is typed by staff: the server connects only where it may
        # (public addresses, or CONSENTRY_OUTBOUND_ALLOW's ranges; server/outbound.py).
        self.destinations = destinations or Destinations()

    # --- owner-facing ---------------------------------------------------------------------

    async def connect(
        self,
        actor: Actor,
        *,
        label: str,
        host: str,
        port: int,
        security: str,
        folder: str,
        address: str,
        purpose: str,
        username: str,
        password: str,
    ) -> MailboxView:
        if actor.user_id is None:
            raise MailboxInputError({"owner": "a mailbox belongs to a staff user"})
        problems = check_settings(
            label=label,
            host=host,
            port=port,
            security=security,
            folder=folder,
            address=address,
            purpose=purpose,
        )
        if not username.strip() or len(username) > 254:
            problems["username"] = "give the login name"
        if not password or len(password) > 1000:
            problems["password"] = "give the password (an app password)"  # noqa: S105 - a message
        if "host" not in problems and "port" not in problems:
            try:
                await self.destinations.check(host, port)
            except DestinationRefused as refused:
                problems["host"] = refused.reason
        if await Mailbox.count().where(Mailbox.owner_id == actor.user_id) >= MAX_MAILBOXES_PER_USER:
            problems["label"] = f"at most {MAX_MAILBOXES_PER_USER} mailboxes per person"
        if problems:
            raise MailboxInputError(problems)
        mailbox_id = uuid.uuid4()
        now = dt.datetime.now(dt.UTC)
        sealed = self._sealing.seal_secret(
            SEAL_LABEL,
            str(mailbox_id),
            json.dumps({"username": username.strip(), "password": password}),
        )
        async with db.write_transaction():
            await Mailbox.insert(
                Mailbox(
                    id=mailbox_id,
                    owner_id=actor.user_id,
                    team=actor.team,
                    label=label.strip(),
                    host=host.strip(),
                    port=port,
                    security=security,
                    folder=folder.strip(),
                    address=address.strip().lower(),
                    purpose=purpose,
                    login=sealed,
                    enabled=True,
                    created_at=now,
                    updated_at=now,
                )
            ).run()
            await self.audit.append(self._event(actor, "mailbox.connect", str(mailbox_id)))
        found = await self.get(actor, str(mailbox_id))
        assert found is not None
        return found

    async def mine(self, actor: Actor) -> list[MailboxView]:
        if actor.user_id is None:
            return []
        rows = (
            await Mailbox.select()
            .where(Mailbox.owner_id == actor.user_id)
            .order_by(Mailbox.created_at)
        )
        return [_view(r) for r in rows]

    async def get(self, actor: Actor, mailbox_id: str) -> MailboxView | None:
        """The actor's own mailbox, or None (somebody else's does not exist for them)."""
        try:
            wanted = uuid.UUID(mailbox_id)
        except ValueError:
            return None
        row = (
            await Mailbox.select()
            .where((Mailbox.id == wanted) & (Mailbox.owner_id == (actor.user_id or -1)))
            .first()
        )
        return None if row is None else _view(row)

    async def remove(self, actor: Actor, mailbox_id: str) -> bool:
        """Disconnect a mailbox: its login is deleted; mail captured from it stays (each
        record is the person's, until erased or expired)."""
        found = await self.get(actor, mailbox_id)
        if found is None:
            return False
        async with db.write_transaction():
            await Mailbox.delete().where(Mailbox.id == uuid.UUID(found.id))
            await self.audit.append(self._event(actor, "mailbox.remove", found.id))
        return True

    # --- the sync's side --------------------------------------------------------------------

    async def enabled_ids(self) -> list[str]:
        rows = await Mailbox.select(Mailbox.id).where(Mailbox.enabled.eq(True))
        return [str(r["id"]) for r in rows]

    async def load(self, mailbox_id: str) -> MailboxView | None:
        row = await Mailbox.select().where(Mailbox.id == uuid.UUID(mailbox_id)).first()
        return None if row is None else _view(row)

    async def login(self, mailbox_id: str) -> Login:
        row = await Mailbox.select(Mailbox.login).where(Mailbox.id == uuid.UUID(mailbox_id)).first()
        if row is None:
            raise LookupError("no such mailbox")
        opened = json.loads(self._sealing.open_secret(SEAL_LABEL, mailbox_id, str(row["login"])))
        return Login(str(opened["username"]), str(opened["password"]))

    async def claim(self, mailbox_id: str, now: dt.datetime | None = None) -> bool:
        """Take the mailbox for one sync (one worker at a time; a dead sync's claim lapses)."""
        now = now or dt.datetime.now(dt.UTC)
        wanted = uuid.UUID(mailbox_id)
        async with db.write_transaction():
            free = (Mailbox.id == wanted) & (
                Mailbox.lease_until.is_null() | (Mailbox.lease_until < now)
            )
            if not await Mailbox.exists().where(free):
                return False
            await Mailbox.update(
                {
                    Mailbox.lease_until: now + LEASE,
                    Mailbox.state: "running",
                    Mailbox.seen: 0,
                    Mailbox.captured: 0,
                    Mailbox.skipped: 0,
                    Mailbox.last_error: "",
                }
            ).where(free)
        return True

    async def reset_watermark(self, mailbox_id: str, uid_validity: int) -> None:
        """A new UIDVALIDITY: the server renumbered the folder, so start again from the
        first UID (the message keys still keep every message captured once)."""
        await Mailbox.update({Mailbox.uid_validity: uid_validity, Mailbox.last_uid: 0}).where(
            Mailbox.id == uuid.UUID(mailbox_id)
        )

    async def progress(
        self, mailbox_id: str, *, last_uid: int, seen: int, captured: int, skipped: int
    ) -> None:
        """Commit one batch: the watermark and the run's counters move together."""
        now = dt.datetime.now(dt.UTC)
        await Mailbox.update(
            {
                Mailbox.last_uid: last_uid,
                Mailbox.seen: Mailbox.seen + seen,
                Mailbox.captured: Mailbox.captured + captured,
                Mailbox.skipped: Mailbox.skipped + skipped,
                Mailbox.total_captured: Mailbox.total_captured + captured,
                Mailbox.lease_until: now + LEASE,
                Mailbox.updated_at: now,
            }
        ).where(Mailbox.id == uuid.UUID(mailbox_id))

    async def finish(self, mailbox_id: str, *, error: str = "") -> None:
        now = dt.datetime.now(dt.UTC)
        await Mailbox.update(
            {
                Mailbox.state: "idle",
                Mailbox.lease_until: None,
                Mailbox.last_run_at: now,
                Mailbox.last_error: error[:200],
                Mailbox.updated_at: now,
            }
        ).where(Mailbox.id == uuid.UUID(mailbox_id))

    def _event(self, actor: Actor, action: str, mailbox_id: str) -> AuditEvent:
        return audit_event(
            actor_id=actor.id,
            actor_role=actor.role,
            action=action,
            resource_type="mailbox",
            outcome=Outcome.ALLOWED,
            purpose="customer_relationship",
            resource_id=mailbox_id,
            request_id=actor.request_id,
        )
