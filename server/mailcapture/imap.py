"""Syncing a staff mailbox over IMAP: new messages only, by UID, resumable.

Per mailbox the table keeps the folder's UIDVALIDITY and the last UID done (the
watermark). A run asks the server for the UIDs above the watermark, fetches them in
order (``BODY.PEEK[]``: nothing is marked read), files each through
:class:`server.mailcapture.capture.MailCapture` and commits the watermark after every
batch. A run that dies half-way resumes from the last committed batch; the messages of the
unfinished batch are fetched again and their message keys keep them from being filed
twice. A changed UIDVALIDITY starts the folder again from its first UID, with the same
guard. A run does at most ``max_messages``; the next one carries on.

Errors are kept as a short reason on the mailbox (shown on the Mailboxes page), never the
server's own words (they can quote an address) and never the login.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
from dataclasses import dataclass
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage

import aioimaplib

from server.gateway import GatewayError
from server.logs import get_logger
from server.mailcapture.capture import Mailbox as CaptureMailbox
from server.mailcapture.capture import MailCapture
from server.mailcapture.service import Mailboxes, MailboxView
from server.outbound import DestinationRefused

log = get_logger("consentry.mailcapture")

BATCH = 20
MAX_MESSAGES_PER_RUN = 500
TIMEOUT_SECONDS = 20.0
_UIDVALIDITY = re.compile(rb"UIDVALIDITY (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")


class SyncFailed(Exception):
    """A reason fit to show staff: no server text, no address, no login."""


@dataclass(frozen=True)
class SyncReport:
    seen: int = 0
    captured: int = 0
    skipped: int = 0
    done: bool = True  # False: more messages wait for the next run
    error: str = ""


def parse_message(raw: bytes) -> EmailMessage:
    message = message_from_bytes(raw, policy=email_policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def _connect(mailbox: MailboxView) -> aioimaplib.IMAP4:
    try:
        client: aioimaplib.IMAP4
        if mailbox.security == "ssl":
            client = aioimaplib.IMAP4_SSL(
                host=mailbox.host,
                port=mailbox.port,
                timeout=TIMEOUT_SECONDS,
                ssl_context=ssl.create_default_context(),
            )
        else:
            client = aioimaplib.IMAP4(host=mailbox.host, port=mailbox.port, timeout=TIMEOUT_SECONDS)
        await asyncio.wait_for(client.wait_hello_from_server(), TIMEOUT_SECONDS)
    except (OSError, TimeoutError, aioimaplib.AioImapException) as exc:
        raise SyncFailed("cannot connect to the IMAP server (host, port or TLS)") from exc
    if client.protocol is None or client.protocol.state != aioimaplib.NONAUTH:
        raise SyncFailed("cannot connect to the IMAP server (host, port or TLS)")
    return client


async def _open(mailboxes: Mailboxes, mailbox: MailboxView) -> tuple[aioimaplib.IMAP4, int]:
    """Connected, logged in and the folder selected; returns the folder's UIDVALIDITY."""
    try:  # checked again at each connection: the name may resolve elsewhere by now
        await mailboxes.destinations.check(mailbox.host, mailbox.port)
    except DestinationRefused as refused:
        raise SyncFailed(refused.reason) from None
    login = await mailboxes.login(mailbox.id)
    client = await _connect(mailbox)
    try:
        answer = await client.login(login.username, login.password)
        if answer.result != "OK":
            raise SyncFailed("the server refused the login (user name or app password)")
        answer = await client.select(mailbox.folder)
        if answer.result != "OK":
            raise SyncFailed("the folder does not exist on the server")
        validity = 0
        for line in answer.lines:
            found = _UIDVALIDITY.search(bytes(line))
            if found:
                validity = int(found.group(1))
        return client, validity
    except BaseException:
        await _close(client)
        raise


async def _close(client: aioimaplib.IMAP4) -> None:
    with contextlib.suppress(Exception):  # already gone: nothing to tidy
        await asyncio.wait_for(client.logout(), 5)


async def check_connection(mailboxes: Mailboxes, mailbox: MailboxView) -> str:
    """ "" if the mailbox can be reached, logged into and its folder opened; else why not."""
    try:
        client, _ = await _open(mailboxes, mailbox)
    except SyncFailed as exc:
        return str(exc)
    except Exception as exc:
        return f"the connection failed ({type(exc).__name__})"
    await _close(client)
    return ""


async def _new_uids(client: aioimaplib.IMAP4, after: int) -> list[int]:
    answer = await client.uid_search("UID", f"{after + 1}:*", charset=None)
    if answer.result != "OK":
        raise SyncFailed("the server refused to list new messages")
    uids: list[int] = []
    for line in answer.lines[:-1]:  # the last line is the server's "Search completed"
        text = bytes(line).decode("ascii", "replace")
        uids.extend(int(part) for part in text.split() if part.isdigit())
    # "n:*" always names the newest message, even one below n (RFC 3501 6.4.8)
    return sorted(u for u in set(uids) if u > after)


async def _fetch(client: aioimaplib.IMAP4, uid: int) -> bytes | None:
    answer = await client.uid("fetch", str(uid), "(UID BODY.PEEK[])")
    if answer.result != "OK":
        raise SyncFailed("the server refused to send a message")
    for item in answer.lines:
        if isinstance(item, bytearray):
            return bytes(item)
    return None  # expunged meanwhile


async def sync_mailbox(
    mailboxes: Mailboxes,
    capture: MailCapture,
    mailbox_id: str,
    *,
    batch: int = BATCH,
    max_messages: int = MAX_MESSAGES_PER_RUN,
    claimed: bool = False,
) -> SyncReport:
    """One run over one mailbox (claimed first, unless the caller already has: another
    worker's run in progress makes this one a no-op). Never raises for the server's
    faults: they end up on the mailbox."""
    if not claimed and not await mailboxes.claim(mailbox_id):
        return SyncReport(done=False, error="a sync of this mailbox is already running")
    seen = captured = skipped = 0
    error = ""
    done = True
    try:
        mailbox = await mailboxes.load(mailbox_id)
        if mailbox is None:
            return SyncReport(error="no such mailbox")
        client, validity = await _open(mailboxes, mailbox)
        try:
            watermark = mailbox.last_uid
            if validity != mailbox.uid_validity:
                await mailboxes.reset_watermark(mailbox_id, validity)
                watermark = 0
            uids = await _new_uids(client, watermark)
            done = len(uids) <= max_messages
            owner = CaptureMailbox(
                id=mailbox.id,
                owner_id=mailbox.owner_id,
                own_addresses=frozenset({mailbox.address}),
                purpose=mailbox.purpose,
            )
            todo = uids[:max_messages]
            for start in range(0, len(todo), batch):
                b_seen = b_captured = b_skipped = 0
                for uid in todo[start : start + batch]:
                    raw = await _fetch(client, uid)
                    b_seen += 1
                    if raw is None:
                        b_skipped += 1
                        continue
                    try:
                        filed = await capture.capture(parse_message(raw), raw, owner)
                    except GatewayError as exc:  # this message cannot be filed: skip it,
                        # or it would stop the mailbox at this UID for ever
                        log.warning("captured message refused", error=type(exc).__name__)
                        b_skipped += 1
                        continue
                    if filed.written:
                        b_captured += 1
                    else:
                        b_skipped += 1
                last = todo[min(start + batch, len(todo)) - 1]
                await mailboxes.progress(
                    mailbox_id, last_uid=last, seen=b_seen, captured=b_captured, skipped=b_skipped
                )
                seen, captured, skipped = seen + b_seen, captured + b_captured, skipped + b_skipped
        finally:
            await _close(client)
    except SyncFailed as exc:
        error = str(exc)
    except Exception as exc:
        error = f"the sync stopped ({type(exc).__name__}); the next run resumes"
        log.warning("mailbox sync failed", error=type(exc).__name__)
    finally:
        await mailboxes.finish(mailbox_id, error=error)
    return SyncReport(seen=seen, captured=captured, skipped=skipped, done=done, error=error)
