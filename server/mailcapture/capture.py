"""Filing one e-mail message under the people it is about - or leaving no trace of it.

A message's addresses (From, To, Cc) other than the mailbox's own and the staff's are
looked up through the blind index of contact and lead e-mail addresses (the gateway's
``locate_people``). For every person found, one ``mail`` record is written through the
gateway, sealed under that person's key: a message to two customers is two records under
two keys, so erasing one of them never touches the other's copy. The subject, body,
correspondents and attachment names are encrypted free text; the body is kept only when
the mailbox's purpose is set to full content (``CONSENTRY_MAIL_CAPTURE_CONTENT``).

A message nobody matched is dropped: no row, no hash, no log line. With the lead rule on
(``CONSENTRY_MAIL_CAPTURE_LEAD_RULE``), an inbound message from an unknown sender creates
a lead instead (the lead retention clock applies) and is filed under it.

Which message and which thread a record belongs to are keyed hashes (HMAC under a key
derived from the master key, per mailbox owner), never a Message-ID: a second sync or a
second copy (the mailbox and the BCC receiver) finds the first and adds nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import html
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime

from email_validator import EmailNotValidError

from server.datamap import MAIL, normalize_email
from server.gateway import Actor, Gateway
from server.gateway.errors import Forbidden

JOB = "mail-capture"
MAIL_RESOURCE = MAIL.resource
_KEY_INFO = b"consentry/mail-capture/v1"
_BODY_LIMIT = MAIL.field("body").max_length
_SUBJECT_LIMIT = MAIL.field("subject").max_length
_LIST_LIMIT = MAIL.field("correspondents").max_length
_TAG = re.compile(r"<[^>]+>")
_BLANKS = re.compile(r"\n{3,}")
_MESSAGE_ID = re.compile(r"<[^<>\s]+>")


@dataclass(frozen=True)
class Mailbox:
    """Whose mail this is and what it is captured for (a connected mailbox, or the SMTP
    receiver filing mail under its owner)."""

    id: str | None
    owner_id: int
    own_addresses: frozenset[str]
    purpose: str


@dataclass(frozen=True)
class Filed:
    """What capturing one message did: records written (one per person), and whether
    anyone matched at all (counts only: nothing here names anyone)."""

    written: int
    matched: bool
    duplicate: bool = False
    lead_created: bool = False


@dataclass(frozen=True)
class Parsed:
    message_key_source: str
    thread_source: str
    occurred_at: dt.datetime
    sender: tuple[str, str]  # (display name, normalised address); address "" if none
    others: tuple[tuple[str, str], ...]  # To and Cc
    subject: str
    body: str
    correspondents: str
    attachments: str


def _address(raw: str) -> str:
    try:
        return normalize_email(raw)
    except (EmailNotValidError, ValueError):
        return ""


def _people(message: Message, *headers: str) -> list[tuple[str, str]]:
    values = [str(v) for h in headers for v in message.get_all(h, [])]
    found = []
    for name, raw in getaddresses(values):
        address = _address(raw)
        if address:
            found.append((name.strip(), address))
    return found


def _text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset or a broken encoding
        return ""
    text = str(content)
    if part.get_content_subtype() == "html":
        text = html.unescape(_TAG.sub(" ", text))
    text = "\n".join(line.rstrip() for line in text.replace("\r\n", "\n").split("\n"))
    return _BLANKS.sub("\n\n", text).strip()


def _size(n: int) -> str:
    return f"{n} B" if n < 1024 else f"{round(n / 1024)} KB"


def _attachments(message: EmailMessage) -> str:
    lines = []
    for part in message.iter_attachments():
        payload = part.get_payload(decode=True)
        size = len(payload) if isinstance(payload, bytes) else 0
        lines.append(f"{part.get_filename() or '(unnamed)'} ({_size(size)})")
    return "\n".join(lines)[:_LIST_LIMIT]


def _when(message: Message) -> dt.datetime:
    raw = message.get("Date")
    try:
        moment = parsedate_to_datetime(str(raw)) if raw else None
    except (TypeError, ValueError):
        moment = None
    if moment is None:
        return dt.datetime.now(dt.UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(dt.UTC)


def _listed(label: str, people: Iterable[tuple[str, str]]) -> str:
    shown = ", ".join(f"{n} <{a}>" if n else a for n, a in people)
    return f"{label}: {shown}" if shown else ""


def parse(message: EmailMessage, raw: bytes) -> Parsed:
    """What capture keeps of a message, in memory only."""
    senders = _people(message, "From")
    sender = senders[0] if senders else ("", "")
    to, cc = _people(message, "To"), _people(message, "Cc")
    message_id = " ".join(_MESSAGE_ID.findall(str(message.get("Message-ID", ""))))
    references = _MESSAGE_ID.findall(str(message.get("References", "")))
    replying_to = _MESSAGE_ID.findall(str(message.get("In-Reply-To", "")))
    root = (references or replying_to or [message_id])[0]
    digest = hashlib.sha256(raw).hexdigest()
    correspondents = "\n".join(
        line for line in (_listed("From", senders), _listed("To", to), _listed("Cc", cc)) if line
    )
    return Parsed(
        message_key_source=message_id or f"sha256:{digest}",
        thread_source=root or message_id or f"sha256:{digest}",
        occurred_at=_when(message),
        sender=sender,
        others=tuple(to + cc),
        subject=str(message.get("Subject", "")).strip()[:_SUBJECT_LIMIT],
        body=_text_of(message)[:_BODY_LIMIT],
        correspondents=correspondents[:_LIST_LIMIT],
        attachments=_attachments(message),
    )


class MailCapture:
    """Files messages under the people they are about (the gateway does every write)."""

    def __init__(
        self,
        gateway: Gateway,
        *,
        content: dict[str, str] | None = None,
        lead_rule: bool = False,
        staff_addresses: Collection[str] = (),
    ) -> None:
        self.gateway = gateway
        self.content = dict(content or {})
        self.lead_rule = lead_rule
        self.staff_addresses = frozenset(a.lower() for a in staff_addresses)
        self.actor = Actor.system(JOB)
        self._key = gateway.derived_key(_KEY_INFO)

    def _keyed(self, kind: str, owner_id: int, value: str) -> str:
        data = f"{kind}|{owner_id}|{value}".encode()
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()[:48]

    def full_content(self, purpose: str) -> bool:
        return self.content.get(purpose) == "full"

    async def capture(self, message: EmailMessage, raw: bytes, mailbox: Mailbox) -> Filed:
        parsed = parse(message, raw)
        own = mailbox.own_addresses | self.staff_addresses
        outbound = parsed.sender[1] in own
        counterparts = [p for p in (parsed.sender, *parsed.others) if p[1] and p[1] not in own]
        people = await self._match(counterparts, mailbox.purpose)
        lead_created = False
        if not people:
            if not (self.lead_rule and not outbound and parsed.sender[1]):
                return Filed(written=0, matched=False)
            people = [await self._new_lead(parsed.sender, mailbox)]
            lead_created = True
        message_key = self._keyed("message", mailbox.owner_id, parsed.message_key_source)
        thread_key = self._keyed("thread", mailbox.owner_id, parsed.thread_source)
        already = await self._existing(message_key, mailbox.purpose)
        shared = await self._thread_shared(thread_key, mailbox)
        full = self.full_content(mailbox.purpose)
        written = 0
        for resource, record_id in people:
            if record_id in already:
                continue
            values = {
                "record_type": resource,
                "record_id": record_id,
                "direction": "outbound" if outbound else "inbound",
                "occurred_at": parsed.occurred_at.isoformat(),
                "subject": parsed.subject if full else None,
                "body": parsed.body if full else None,
                "correspondents": parsed.correspondents or None,
                "attachments": parsed.attachments or None,
                "visibility": "shared" if shared else "private",
                "thread_key": thread_key,
                "message_key": message_key,
                "mailbox_id": mailbox.id,
            }
            await self.gateway.create(
                self.actor,
                MAIL_RESOURCE,
                values,
                purpose=mailbox.purpose,
                owner_id=mailbox.owner_id,
            )
            written += 1
        return Filed(
            written=written,
            matched=True,
            duplicate=written == 0,
            lead_created=lead_created,
        )

    async def _match(self, people: list[tuple[str, str]], purpose: str) -> list[tuple[str, str]]:
        """(record type, record id) of each person found, one record per person (a
        converted lead's contact before the lead: the same subject)."""
        found: dict[str, tuple[str, str]] = {}
        for address in dict.fromkeys(a for _, a in people):
            for resource, record_id, subject in await self.gateway.locate_people(
                self.actor, "email", address, purpose=purpose
            ):
                found.setdefault(subject, (resource, record_id))
        return list(found.values())

    async def _new_lead(self, sender: tuple[str, str], mailbox: Mailbox) -> tuple[str, str]:
        name, address = sender
        first, _, last = (name or address.split("@", 1)[0]).strip().partition(" ")
        lead = await self.gateway.create(
            self.actor,
            "lead",
            {
                "first_name": first[:100] or "(unknown)",
                "last_name": last.strip()[:100] or "(e-mail)",
                "email": address,
                "source": "email",
            },
            purpose=mailbox.purpose,
            owner_id=mailbox.owner_id,
        )
        return "lead", lead.id

    async def _existing(self, message_key: str, purpose: str) -> set[str]:
        page = await self.gateway.list(
            self.actor,
            MAIL_RESOURCE,
            purpose=purpose,
            filters={"message_key": message_key},
            page_size=100,
        )
        return {str(r.values.get("record_id")) for r in page.items}

    async def _thread_shared(self, thread_key: str, mailbox: Mailbox) -> bool:
        page = await self.gateway.list(
            self.actor,
            MAIL_RESOURCE,
            purpose=mailbox.purpose,
            filters={"thread_key": thread_key, "visibility": "shared"},
            page_size=1,
        )
        return page.total > 0


async def share_thread(gateway: Gateway, actor: Actor, mail_id: str, *, shared: bool) -> int:
    """Share (or make private again) every captured mail of the thread ``mail_id`` is in,
    that ``actor`` owns. The gateway finds the records through the actor's own scope, so
    somebody else's private mail is 404 and only the owner can change it. Returns how many
    records changed."""
    record = await gateway.read(actor, MAIL_RESOURCE, mail_id)
    if record.owner_id != actor.user_id:
        raise NotOwner("only the mailbox owner can share or unshare this thread")
    thread = record.values.get("thread_key")
    wanted = "shared" if shared else "private"
    changed = 0
    page_number = 1
    while True:
        page = await gateway.list(
            actor,
            MAIL_RESOURCE,
            filters={"thread_key": thread, "owner_id": actor.user_id},
            page=page_number,
            page_size=100,
        )
        for item in page.items:
            if item.values.get("visibility") != wanted:
                await gateway.update(actor, MAIL_RESOURCE, item.id, {"visibility": wanted})
                changed += 1
        if page_number * page.page_size >= page.total:
            return changed
        page_number += 1


class NotOwner(Forbidden):
    """A colleague may read a shared thread, but only its owner shares or unshares it."""
