"""The consent vocabulary and the values the engine answers with.

Every code here is a short, fixed string: these values go into the ledger, the audit log
and error messages, none of which may carry personal data.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server.datamap import LegalBasis


class ConsentEventKind(enum.StrEnum):
    GRANTED = "granted"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"
    OBJECTED = "objected"
    # An objection lifted (by the person, or by staff with evidence that they asked): the
    # objection's state row says so, and processing on the purpose's basis may resume.
    LIFTED = "lifted"


class Source(enum.StrEnum):
    WEB_FORM = "web_form"
    PORTAL = "portal"
    PHONE = "phone"
    IMPORT = "import"
    STAFF = "staff"
    EMAIL_LINK = "email_link"
    # The preference center (``/preferences/<token>``). Spelled short because the ledger's
    # ``source`` column is VARCHAR(16): "preference_center" would not fit on PostgreSQL.
    PREFERENCE_CENTER = "pref_center"
    SYSTEM = "system"  # expiry: nobody did anything, time passed


CHANNELS = frozenset({"email", "phone", "sms", "post", "web"})
ANY_CHANNEL = "any"  # purposes that are not bound to a channel; objections
DIRECT_MARKETING = "direct_marketing"  # the Art. 21(2) objection scope
PROFILING = (
    "profiling"  # blocked by a direct-marketing objection too (Art. 21(2): "... and profiling")
)
# Bases that an Art. 21(1) objection can be raised against.
OBJECTABLE = frozenset({LegalBasis.LEGITIMATE_INTERESTS, LegalBasis.PUBLIC_TASK})
SUBJECT_ACTOR = "subject"  # the person themself (a link, the portal)


class ConsentError(ValueError):
    """Refused consent input. ``code`` is machine-readable; the message is safe to show and
    never repeats what was submitted."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class LinkInvalid(ConsentError):
    """A confirmation or withdrawal link that does not work. One message for every cause
    (unknown, forged, expired, used), so a link reveals nothing about who exists."""

    def __init__(self) -> None:
        super().__init__(
            "link_invalid", "this link is invalid, has expired or has already been used"
        )


@dataclass(frozen=True)
class PurposeInfo:
    name: str
    legal_basis: LegalBasis
    description: str
    channels: tuple[str, ...]
    retention: str
    direct_marketing: bool
    active: bool
    updated_at: dt.datetime
    updated_by: str

    @property
    def needs_consent(self) -> bool:
        return self.legal_basis is LegalBasis.CONSENT

    def channel_for(self, channel: str | None) -> str:
        """The channel an event is recorded under (validated against the registry)."""
        if not self.channels:
            if channel not in (None, ANY_CHANNEL):
                raise ConsentError("unknown_channel", "this purpose is not bound to a channel")
            return ANY_CHANNEL
        if channel is None:
            if len(self.channels) == 1:
                return self.channels[0]
            raise ConsentError("channel_required", "this purpose needs a channel")
        if channel not in self.channels:
            raise ConsentError("unknown_channel", "channel not offered for this purpose")
        return channel


@dataclass(frozen=True)
class Notice:
    version: int
    title: str
    text: str
    content_hash: str
    published_at: dt.datetime
    published_by: str

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "title": self.title,
            "text": self.text,
            "content_hash": self.content_hash,
            "published_at": self.published_at.isoformat(),
        }


@dataclass(frozen=True)
class ConsentRecord:
    """One ledger event."""

    id: int
    subject_id: str
    purpose: str
    channel: str
    kind: ConsentEventKind
    source: str
    evidence: Mapping[str, Any]
    notice_version: int | None
    actor_id: str
    occurred_at: dt.datetime
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class ConsentStatus:
    """The current state for one subject, purpose and channel."""

    purpose: str
    channel: str
    state: ConsentEventKind
    since: dt.datetime
    expires_at: dt.datetime | None

    def in_force(self, now: dt.datetime) -> bool:
        return self.state is ConsentEventKind.GRANTED and (
            self.expires_at is None or self.expires_at > now
        )


@dataclass(frozen=True)
class Basis:
    """Whether a purpose may be pursued for a subject, and the short code saying why."""

    ok: bool
    reason: str  # consent_granted | no_consent | withdrawn | expired | objected | <legal basis>

    def __bool__(self) -> bool:
        return self.ok


@dataclass(frozen=True)
class OptInRequest:
    """What ``request_double_opt_in`` did: the e-mail outcome (never the address)."""

    mail_status: str  # server.mail.MailStatus value
    expires_at: dt.datetime


class PreferenceAction(enum.StrEnum):
    """What a person can do on the preference center page, one button each."""

    GRANT = "grant"  # one purpose on one channel
    WITHDRAW = "withdraw"  # one purpose on one channel
    WITHDRAW_ALL = "withdraw_all"  # every consent in force, at once (Art. 7(3))
    OBJECT_DIRECT_MARKETING = "object_direct_marketing"  # Art. 21(2), absolute
    OBJECT = "object"  # Art. 21(1): one purpose resting on legitimate interests/public task
    LIFT_OBJECTION = "lift_objection"  # one objection (direct marketing or one purpose) lifted


NOT_GIVEN = "none"  # the state of a purpose and channel nobody has recorded anything for


@dataclass(frozen=True)
class ChannelChoice:
    """A person's current state for one purpose on one channel, as the page shows it."""

    channel: str
    state: str  # granted | withdrawn | expired | objected | none
    since: dt.datetime | None
    expires_at: dt.datetime | None


@dataclass(frozen=True)
class PurposeChoice:
    """One active purpose on the preference center, with the person's state per channel."""

    purpose: PurposeInfo
    channels: tuple[ChannelChoice, ...]
    blocked: bool  # an objection covers this purpose: no grant counts while it stands
    objectable: bool  # Art. 21(1) applies (legitimate interests or public task)
    objected_itself: bool = False  # an objection to this very purpose (the person may lift it)


@dataclass(frozen=True)
class PreferenceView:
    """Everything the preference center shows: purposes and states, no personal values."""

    purposes: tuple[PurposeChoice, ...]
    notice: Notice | None  # the current privacy notice (None: none published yet)
    objected_direct_marketing: bool
