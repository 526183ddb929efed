"""E-mail to the support address becomes a case, or a message on the case it answers.

``receive_support_message(services, message)`` is what the SMTP receiver (or the IMAP
sync) calls for each message to ``CONSENTRY_SUPPORT_ADDRESS``. In order:

1. Automatic mail (``Auto-Submitted`` other than ``no``, ``Precedence: bulk/junk/list``,
   an empty sender) is not kept: answering it would start a mail loop.
2. The sender is found by the e-mail blind index, like the gateway's exact search: only
   a contact's address counts (a case is about a contact). **An unknown sender's mail is
   not stored** - not even as a lead: we hold nothing about someone who never became a
   customer, and the intake answers ``unknown_sender`` so the receiver can bounce it or
   leave it in the mailbox for a person. Nothing of it is logged but the outcome code.
3. A reply is threaded: by the case reference in the subject (``[#C-7KQ2M9XD]``), else by
   ``In-Reply-To`` / ``References`` matching the Message-ID of one of our replies or of the
   person's earlier mail on the case. The case must be about the sender: a reference
   quoted by someone else opens a new case for them instead (a reference is not a key).
4. Anything else opens a new case for the sender's contact, routed to their team's queue.

A message that reads like a data-subject request flags its case for compliance
(``server.servicedesk.detection``).
"""

from __future__ import annotations

import email.message
import email.utils
import html
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from email_validator import EmailNotValidError

from server.datamap import normalize_email
from server.gateway import GatewayError
from server.logs import get_logger
from server.servicedesk.service import (
    MESSAGE_MAX,
    PURPOSE,
    TITLE_MAX,
    DeskError,
    ServiceDesk,
    ref_in,
)

if TYPE_CHECKING:
    from server.gateway import Gateway


class DeskServices(Protocol):
    """What intake needs of the container (``Services`` has it); the desk does not import
    the container, which is built from the desk."""

    @property
    def service_desk(self) -> ServiceDesk: ...

    @property
    def gateway(self) -> Gateway: ...


log = get_logger("consentry.servicedesk.inbound")

OPENED, THREADED = "opened", "threaded"
UNKNOWN_SENDER, AUTOMATIC, NO_SENDER, EMPTY = "unknown_sender", "automatic", "no_sender", "empty"
REFUSED = "refused"  # the gateway refused to open a case for the person
DUPLICATE = "duplicate"  # a Message-ID the case already has
_TAGS = re.compile(r"<(script|style)\b.*?</\1>|<[^>]+>", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Intake:
    """What became of one message: ``opened`` (a new case), ``threaded`` (added to a
    case), ``duplicate`` (already on its case), or why it was not kept
    (``unknown_sender``, ``automatic``, ``no_sender``, ``empty``, ``refused``).
    ``case_id`` and ``ref`` are set when it is on a case."""

    outcome: str
    case_id: str = ""
    ref: str = ""

    @property
    def kept(self) -> bool:
        return self.outcome in {OPENED, THREADED, DUPLICATE}


def _automatic(message: email.message.EmailMessage) -> bool:
    submitted = str(message.get("Auto-Submitted", "no")).strip().lower()
    precedence = str(message.get("Precedence", "")).strip().lower()
    return submitted != "no" or precedence in {"bulk", "junk", "list", "auto_reply"}


def text_of(message: email.message.EmailMessage) -> str:
    """The message's text: its plain part, else its HTML part without the markup."""
    part = message.get_body(preferencelist=("plain", "html"))
    if part is None:
        return ""
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # an unknown charset, a broken encoding
        return ""
    if not isinstance(content, str):
        return ""
    if part.get_content_type() == "text/html":
        content = html.unescape(_TAGS.sub(" ", content))
        content = "\n".join(" ".join(line.split()) for line in content.splitlines())
    return content.strip()[:MESSAGE_MAX]


def _message_ids(value: str) -> list[str]:
    return re.findall(r"<[^<>\s]+>", value)[:50]


async def receive_support_message(
    services: DeskServices, message: email.message.EmailMessage
) -> Intake:
    """Take one e-mail sent to the support address (see the module's docstring)."""
    if _automatic(message):
        log.info("support mail not kept", reason=AUTOMATIC)
        return Intake(AUTOMATIC)
    _, address = email.utils.parseaddr(str(message.get("From", "")))
    try:
        sender = normalize_email(address) if address else ""
    except EmailNotValidError:
        sender = ""
    if not sender:
        log.info("support mail not kept", reason=NO_SENDER)
        return Intake(NO_SENDER)
    desk = services.service_desk
    try:
        people = await services.gateway.locate_people(desk.actor, "email", sender, purpose=PURPOSE)
    except GatewayError:
        people = []
    contacts = [(record_id, subject) for kind, record_id, subject in people if kind == "contact"]
    if not contacts:
        log.info("support mail not kept", reason=UNKNOWN_SENDER)
        return Intake(UNKNOWN_SENDER)
    subject_line = " ".join(str(message.get("Subject", "")).split())
    body = text_of(message)
    if not body and not subject_line:
        return Intake(EMPTY)
    own_id = str(message.get("Message-ID", ""))
    seen = await desk.case_of_message_ids([own_id]) if own_id else None
    if seen:  # delivered twice (a retried SMTP session, an IMAP re-sync): kept once
        log.info("support mail not kept", reason=DUPLICATE)
        return Intake(DUPLICATE, seen, await _ref(desk, seen))
    case_id = await _thread(desk, subject_line, message, {s for _, s in contacts})
    if case_id:
        try:
            await desk.customer_wrote(case_id, body or subject_line, "email")
        except (GatewayError, DeskError):
            case_id = ""  # gone since (erased): the mail opens a new case instead
        else:
            await desk.remember_message_id(case_id, own_id)
            log.info("support mail kept", outcome=THREADED)
            return Intake(THREADED, case_id, await _ref(desk, case_id))
    contact_id = contacts[0][0]  # several contacts share the address: the oldest
    try:
        case, opened = await desk.open_case(
            contact_id,
            title=subject_line[:TITLE_MAX] or "(no subject)",
            channel="email",
            first_message=body or subject_line,
        )
    except GatewayError as exc:  # e.g. the person's processing is restricted (Art. 18)
        log.info("support mail not kept", reason=REFUSED, error=type(exc).__name__)
        return Intake(REFUSED)
    await desk.remember_message_id(case.id, own_id)
    log.info("support mail kept", outcome=OPENED)
    return Intake(OPENED, case.id, str(opened["case_ref"]))


async def _thread(
    desk: ServiceDesk,
    subject_line: str,
    message: email.message.EmailMessage,
    subjects: set[str],
) -> str:
    """The case this message answers, if it is one of the sender's own."""
    candidates: list[str] = []
    ref = ref_in(subject_line)
    if ref:
        row = await desk.desk_by_ref(ref)
        if row is not None:
            candidates.append(str(row["case_id"]))
    replied_to = _message_ids(f"{message.get('In-Reply-To', '')} {message.get('References', '')}")
    by_header = await desk.case_of_message_ids(replied_to)
    if by_header:
        candidates.append(by_header)
    for case_id in candidates:
        row = await desk.desk_row(case_id)
        if row is not None and str(row["subject_id"]) in subjects:
            return case_id
    return ""


async def _ref(desk: ServiceDesk, case_id: str) -> str:
    row = await desk.desk_row(case_id)
    return str(row["case_ref"]) if row else ""
