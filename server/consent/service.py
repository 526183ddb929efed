# Over 800 lines: ConsentEngine is the one writer of the append-only consent ledger; every
# change (grant, withdraw, object, expiry, double opt-in, links, preference center) goes
# through its one append path. The link flows are the split to make next (issue 18).
"""``ConsentEngine``: consent as provable evidence and as an enforceable rule.

The ledger (``consent_event``) is the truth; ``consent_state`` is its current reading per
subject, purpose and channel, rewritten in the same transaction as every ledger insert,
together with the audit event. ``has_basis`` answers "may we do this for this person
now?" for one subject; ``subjects_with_basis`` answers it for everyone at once, as SQL the
gateway can put in a WHERE clause, so an audience is computed by the database and a
withdrawal takes effect at the next query.

Personal values never enter these tables or the audit log: subjects are pseudonymous
UUIDs, IP addresses are keyed hashes, and the e-mail address given to
``request_double_opt_in`` is used to send one message and then forgotten.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from piccolo.columns import Column
from piccolo.columns.combination import Where
from piccolo.query import Select

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import SYSTEM_ROLE
from server import db
from server.analytics.store import forget_scores
from server.consent.links import LinkKeys
from server.consent.model import (
    ANY_CHANNEL,
    CHANNELS,
    DIRECT_MARKETING,
    NOT_GIVEN,
    OBJECTABLE,
    PROFILING,
    SUBJECT_ACTOR,
    Basis,
    ChannelChoice,
    ConsentError,
    ConsentEventKind,
    ConsentRecord,
    ConsentStatus,
    LinkInvalid,
    Notice,
    OptInRequest,
    PreferenceAction,
    PreferenceView,
    PurposeChoice,
    PurposeInfo,
    Source,
)
from server.consent.tables import (
    ConsentEvent,
    ConsentPurpose,
    ConsentState,
    ConsentToken,
    PrivacyNotice,
)
from server.datamap import LegalBasis
from server.logs import get_logger
from server.mail import Mailer
from server.settings import Settings

PG_EXPIRY_LOCK = 0x0C0A_C0E7  # advisory lock: one consent-expiry writer at a time

CONFIRMATION_LIFETIME = dt.timedelta(hours=48)
# A preference link opens every choice of a person, including giving consent: it expires.
# Every message we send carries a fresh one, so 30 days covers the time people keep mail.
PREFERENCE_LINK_LIFETIME = dt.timedelta(days=30)
EXPIRY_ACTOR = "system:consent-expiry"
# Reason codes the lapse listeners hear (and the erasure review records).
LAST_CONSENT_WITHDRAWN = "last_consent_withdrawn"
LAST_CONSENT_EXPIRED = "last_consent_expired"
log = get_logger("consentry.consent")
MAX_USER_AGENT = 200
MAX_NOTICE_TITLE = 200
MAX_NOTICE_TEXT = 200_000
_REFERENCE = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
# Evidence a caller may supply. ``ip`` is accepted only to be replaced by its keyed hash.
_REFERENCE_EVIDENCE = frozenset({"form_id", "import_batch", "reference"})
# ``note``: staff's account of how the person asked (lifting an objection needs one).
_TEXT_EVIDENCE = frozenset({"user_agent", "confirm_user_agent", "note"})
_TIME_EVIDENCE = frozenset({"requested_at"})
# Caller-supplied text could carry a name ("call:jane.smith", a forged user agent), and the
# ledger is append-only: erasure cannot reach into it. So these values are kept encrypted
# under the person's data key, as ``{"sealed": "cs1..."}``; erasure shreds the key and
# with it every one of them. Everything else in evidence is a code, a keyed hash or a time.
SEALED_EVIDENCE = _REFERENCE_EVIDENCE | _TEXT_EVIDENCE
EVIDENCE_LABEL = "consent_evidence"
ERASED_EVIDENCE = "[erased]"
_HASH_EVIDENCE = frozenset({"ip_hash", "confirm_ip_hash"})
# Evidence only the engine writes: a caller cannot claim a double opt-in that did not happen.
_ENGINE_EVIDENCE = frozenset({"double_opt_in", "confirmed_at"})
_PURPOSE_CHANGES = frozenset(
    {"legal_basis", "description", "channels", "retention", "direct_marketing", "active"}
)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class EvidenceSealer(Protocol):
    """Encryption under a person's data key (the vault, as wired in ``build_services``)."""

    async def seal_for_subject(self, subject_id: str, label: str, plaintext: str) -> str | None:
        """Ciphertext, or None if the person has no key."""
        ...

    async def open_for_subject(self, subject_id: str, label: str, token: str) -> str | None:
        """Plaintext, or None once the person's key is shredded."""
        ...


def _subject(subject_id: str) -> str:
    try:
        return str(uuid.UUID(str(subject_id)))
    except ValueError:
        raise ConsentError("invalid_subject", "subject id is not a valid id") from None


def _source(source: str) -> Source:
    try:
        return Source(source)
    except ValueError:
        raise ConsentError("unknown_source", "unknown consent source") from None


def _role_of(actor_id: str) -> str:
    if actor_id == SUBJECT_ACTOR:
        return "data_subject"
    if actor_id.startswith("system:"):
        return SYSTEM_ROLE
    return ""


async def purposes_on_record(subject_id: str) -> set[str]:
    """The purposes a person has any consent state for (granted, withdrawn, expired or
    objected): who they were processed for, even after an erasure (the ledger stays as
    evidence). Used to tell which recipients received their data (Art. 19)."""
    rows = await ConsentState.select(ConsentState.purpose).where(
        ConsentState.subject_id == uuid.UUID(subject_id)
    )
    return {str(r["purpose"]) for r in rows}


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AudienceFilter:
    """Who has a basis for one purpose, as a sub-select the gateway filters with.

    A sub-select rather than a set of ids: the database does the work however large the
    audience, and the answer is as fresh as the query that uses it. ``include`` says how
    to use ``query`` (a single-column select of subject ids): consent-based purposes admit
    only the subjects it returns; other bases admit everyone except them (the objectors).
    """

    purpose: str
    include: bool
    query: Select[Any]

    def where(self, subject_column: Column) -> Where:
        """The WHERE clause for a table's ``subject_id`` column."""
        if self.include:
            return subject_column.is_in(self.query)
        return subject_column.not_in(self.query)

    async def admits(self, subject_id: str) -> bool:
        rows = await self.query
        listed = {str(row["subject_id"]) for row in rows}
        return (_subject(subject_id) in listed) is self.include

    async def subject_ids(self) -> set[str]:
        """The ids ``query`` returns (the audience when ``include``, else the excluded)."""
        return {str(row["subject_id"]) for row in await self.query}


LapseListener = Callable[[str, str], Awaitable[object]]
"""Told (subject id, reason code) after a consent was withdrawn or expired and committed."""


class ConsentEngine:
    """The only code that writes the consent tables. Built once per process."""

    def __init__(
        self,
        audit: AuditLog,
        mailer: Mailer,
        settings: Settings,
        secret: bytes,
        sealer: EvidenceSealer,
        *,
        lapse_listeners: Sequence[LapseListener] = (),
    ) -> None:
        self._audit = audit
        self._mailer = mailer
        self._sealer = sealer
        self._public_url = settings.public_url.rstrip("/")
        self._controller = settings.controller_name
        self._keys = LinkKeys(secret)
        # Told (subject id, reason code) after a consent was withdrawn or expired and that
        # change is committed: the last-basis review (server/dsr/lapse.py) listens here.
        self.lapse_listeners: list[LapseListener] = list(lapse_listeners)

    async def _lapsed(self, subject_id: str, reason: str) -> None:
        """Tell the listeners; never undo or fail the withdrawal for their sake."""
        for listener in self.lapse_listeners:
            try:
                await listener(subject_id, reason)
            except Exception as exc:  # the withdrawal stands; the review is logged as lost
                log.error("consent lapse listener failed", error=type(exc).__name__)

    # -- the purposes registry ---------------------------------------------------------

    @staticmethod
    def _purpose_of(row: Mapping[str, Any]) -> PurposeInfo:
        return PurposeInfo(
            name=str(row["name"]),
            legal_basis=LegalBasis(row["legal_basis"]),
            description=str(row["description"]),
            channels=tuple(json.loads(row["channels"] or "[]")),
            retention=str(row["retention"]),
            direct_marketing=bool(row["direct_marketing"]),
            active=bool(row["active"]),
            updated_at=row["updated_at"],
            updated_by=str(row["updated_by"]),
        )

    async def purposes(self) -> list[PurposeInfo]:
        rows = await ConsentPurpose.select().order_by(ConsentPurpose.name)
        return [self._purpose_of(row) for row in rows]

    async def purpose(self, name: str) -> PurposeInfo:
        row = await ConsentPurpose.select().where(ConsentPurpose.name == name).first()
        if row is None:
            raise ConsentError("unknown_purpose", "unknown purpose")
        return self._purpose_of(row)

    async def update_purpose(
        self,
        name: str,
        changes: Mapping[str, Any],
        *,
        by: str,
        by_role: str = "",
        request_id: str = "",
    ) -> PurposeInfo:
        """Change a purpose's legal basis, texts, channels or flags (audited by field name)."""
        unknown = set(changes) - _PURPOSE_CHANGES
        if unknown or not changes:
            raise ConsentError("invalid_change", "only registry fields of a purpose can change")
        values: dict[Column | str, Any] = {}
        if "legal_basis" in changes:
            try:
                values[ConsentPurpose.legal_basis] = LegalBasis(changes["legal_basis"]).value
            except ValueError:
                raise ConsentError("unknown_legal_basis", "unknown legal basis") from None
        for text_field in ("description", "retention"):
            if text_field in changes:
                text = changes[text_field]
                if not isinstance(text, str) or not text.strip() or len(text) > 2000:
                    raise ConsentError("invalid_text", f"{text_field} must be 1-2000 characters")
                values[getattr(ConsentPurpose, text_field)] = text.strip()
        if "channels" in changes:
            channels = changes["channels"]
            if not isinstance(channels, list | tuple) or not set(channels) <= CHANNELS:
                raise ConsentError("unknown_channel", "channels must come from the known list")
            values[ConsentPurpose.channels] = json.dumps(sorted(set(channels)))
        for flag in ("direct_marketing", "active"):
            if flag in changes:
                if not isinstance(changes[flag], bool):
                    raise ConsentError("invalid_flag", f"{flag} must be true or false")
                values[getattr(ConsentPurpose, flag)] = changes[flag]
        values[ConsentPurpose.updated_at] = _now()
        values[ConsentPurpose.updated_by] = by
        async with db.write_transaction():
            await self.purpose(name)
            await ConsentPurpose.update(values).where(ConsentPurpose.name == name)
            await self._audit.append(
                audit_event(
                    actor_id=by,
                    actor_role=by_role or _role_of(by),
                    action="consent.purpose_update",
                    resource_type="consent_purpose",
                    resource_id=name,
                    fields=tuple(sorted(changes)),
                    outcome=Outcome.ALLOWED,
                    request_id=request_id,
                )
            )
        return await self.purpose(name)

    # -- privacy notices ---------------------------------------------------------------

    @staticmethod
    def _notice_of(row: Mapping[str, Any]) -> Notice:
        return Notice(
            version=int(row["version"]),
            title=str(row["title"]),
            text=str(row["text"]),
            content_hash=str(row["content_hash"]),
            published_at=row["published_at"],
            published_by=str(row["published_by"]),
        )

    async def publish_notice(
        self, title: str, text: str, *, by: str, by_role: str = "", request_id: str = ""
    ) -> Notice:
        """Publish a new version; earlier versions stay, unchanged, as evidence."""
        title = " ".join(title.split())
        if not title or len(title) > MAX_NOTICE_TITLE:
            raise ConsentError("invalid_title", "the title must be 1-200 characters")
        if not text.strip() or len(text) > MAX_NOTICE_TEXT:
            raise ConsentError("invalid_text", "the notice text must be 1-200000 characters")
        async with db.write_transaction():
            last = (
                await PrivacyNotice.select(PrivacyNotice.version)
                .order_by(PrivacyNotice.version, ascending=False)
                .first()
            )
            version = 1 if last is None else int(last["version"]) + 1
            row: dict[str, Any] = {
                "version": version,
                "title": title,
                "text": text,
                "content_hash": content_hash(text),
                "published_at": _now(),
                "published_by": by,
            }
            await PrivacyNotice.insert(PrivacyNotice(**row)).run()
            await self._audit.append(
                audit_event(
                    actor_id=by,
                    actor_role=by_role or _role_of(by),
                    action="consent.notice_publish",
                    resource_type="privacy_notice",
                    resource_id=str(version),
                    outcome=Outcome.ALLOWED,
                    request_id=request_id,
                )
            )
        return self._notice_of(row)

    async def notice(self, version: int) -> Notice | None:
        row = await PrivacyNotice.select().where(PrivacyNotice.version == version).first()
        return None if row is None else self._notice_of(row)

    async def current_notice(self) -> Notice | None:
        row = await PrivacyNotice.select().order_by(PrivacyNotice.version, ascending=False).first()
        return None if row is None else self._notice_of(row)

    # -- the ledger ----------------------------------------------------------------------

    def ip_hash(self, address: str) -> str:
        """The keyed hash that stands in for an IP address in evidence."""
        return self._keys.ip_hash(address)

    def _evidence(self, evidence: Mapping[str, Any] | None) -> dict[str, Any]:
        """Caller-supplied evidence, checked: known keys, short codes, no raw IP address."""
        clean: dict[str, Any] = {}
        for key, value in (evidence or {}).items():
            if key in _ENGINE_EVIDENCE:
                raise ConsentError("reserved_evidence", f"{key} is recorded by the engine only")
            if key == "ip":
                clean["ip_hash"] = self.ip_hash(str(value))
            elif key in _HASH_EVIDENCE:
                if not isinstance(value, str) or not _HEX64.fullmatch(value):
                    raise ConsentError("invalid_evidence", f"{key} must be a keyed hash")
                clean[key] = value
            elif key in _REFERENCE_EVIDENCE:
                if not isinstance(value, str) or not _REFERENCE.fullmatch(value):
                    raise ConsentError("invalid_evidence", f"{key} must be a short reference")
                clean[key] = value
            elif key in _TEXT_EVIDENCE:
                if not isinstance(value, str):
                    raise ConsentError("invalid_evidence", f"{key} must be text")
                clean[key] = " ".join(value.split())[:MAX_USER_AGENT]
            elif key in _TIME_EVIDENCE:
                try:
                    dt.datetime.fromisoformat(str(value))
                except ValueError:
                    raise ConsentError(
                        "invalid_evidence", f"{key} must be an ISO 8601 date or date-time"
                    ) from None
                clean[key] = str(value)
            else:
                raise ConsentError("unknown_evidence", "evidence field not recognised")
        return clean

    async def seal_evidence(self, subject_id: str, evidence: Mapping[str, Any]) -> dict[str, Any]:
        """Evidence as the ledger keeps it: free text encrypted under the person's key.

        A person without a key (erased) keeps no free text at all: it is left out rather
        than refused, because a withdrawal or an objection must always be recordable."""
        sealed: dict[str, Any] = {}
        for key, value in evidence.items():
            if key in SEALED_EVIDENCE and isinstance(value, str):
                token = await self._sealer.seal_for_subject(
                    subject_id, f"{EVIDENCE_LABEL}.{key}", value
                )
                if token is not None:
                    sealed[key] = {"sealed": token}
            else:
                sealed[key] = value
        return sealed

    async def readable_evidence(
        self, subject_id: str, evidence: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Evidence as people read it: sealed values opened, ``[erased]`` once the
        person's key is shredded."""
        readable: dict[str, Any] = {}
        for key, value in evidence.items():
            if isinstance(value, dict) and isinstance(value.get("sealed"), str):
                plain = await self._sealer.open_for_subject(
                    subject_id, f"{EVIDENCE_LABEL}.{key}", value["sealed"]
                )
                readable[key] = ERASED_EVIDENCE if plain is None else plain
            else:
                readable[key] = value
        return readable

    @staticmethod
    def _record_of(row: Mapping[str, Any]) -> ConsentRecord:
        return ConsentRecord(
            id=int(row["id"]),
            subject_id=str(row["subject_id"]),
            purpose=str(row["purpose"]),
            channel=str(row["channel"]),
            kind=ConsentEventKind(row["kind"]),
            source=str(row["source"]),
            evidence=json.loads(row["evidence"] or "{}"),
            notice_version=row["notice_version"],
            actor_id=str(row["actor_id"]),
            occurred_at=row["occurred_at"],
            expires_at=row["expires_at"],
        )

    async def _append(
        self,
        *,
        subject_id: str,
        purpose: str,
        channel: str,
        kind: ConsentEventKind,
        source: Source,
        evidence: Mapping[str, Any],
        notice_version: int | None,
        actor_id: str,
        actor_role: str,
        expires_at: dt.datetime | None,
        request_id: str,
        now: dt.datetime | None = None,
    ) -> ConsentRecord:
        """Ledger row + state row + audit event: one transaction (the caller's, if any).
        Free-text evidence is sealed under the person's key (``SEALED_EVIDENCE``); the
        record returned carries it readable."""
        readable = await self.readable_evidence(subject_id, evidence)
        sealed = await self.seal_evidence(subject_id, readable)
        row: dict[str, Any] = {
            "subject_id": uuid.UUID(subject_id),
            "purpose": purpose,
            "channel": channel,
            "kind": kind.value,
            "source": source.value,
            "evidence": json.dumps(sealed, sort_keys=True),
            "notice_version": notice_version,
            "actor_id": actor_id,
            "occurred_at": now or _now(),
            "expires_at": expires_at,
        }
        async with db.write_transaction():
            inserted = await ConsentEvent.insert(ConsentEvent(**row)).returning(ConsentEvent.id)
            row["id"] = int(inserted[0]["id"])
            state = ConsentState(
                subject_id=row["subject_id"],
                purpose=purpose,
                channel=channel,
                state=kind.value,
                since=row["occurred_at"],
                expires_at=expires_at,
                last_event_id=row["id"],
            )
            await ConsentState.insert(state).on_conflict(
                target=(ConsentState.subject_id, ConsentState.purpose, ConsentState.channel),
                action="DO UPDATE",
                values=[
                    ConsentState.state,
                    ConsentState.since,
                    ConsentState.expires_at,
                    ConsentState.last_event_id,
                ],
            )
            if kind is not ConsentEventKind.GRANTED and purpose in (PROFILING, DIRECT_MARKETING):
                # No basis for profiling any more: the person's scores go at once, in this
                # transaction (a scoring run re-checks the basis when it writes).
                await forget_scores(subject_id)
            detail: dict[str, int | str] = {"channel": channel, "source": source.value}
            if notice_version is not None:
                detail["notice_version"] = notice_version
            await self._audit.append(
                audit_event(
                    actor_id=actor_id,
                    actor_role=actor_role or _role_of(actor_id),
                    action=f"consent.{_ACTIONS[kind]}",
                    resource_type="consent",
                    resource_id=str(row["id"]),
                    subject_ids=(subject_id,),
                    purpose=purpose,
                    outcome=Outcome.ALLOWED,
                    request_id=request_id,
                    detail=detail,
                )
            )
        kept = {k: v for k, v in readable.items() if k in sealed}
        return self._record_of({**row, "evidence": json.dumps(kept)})

    async def grant(
        self,
        subject_id: str,
        purpose: str,
        channel: str | None = None,
        *,
        source: str,
        notice_version: int,
        actor_id: str,
        evidence: Mapping[str, Any] | None = None,
        expires_at: dt.datetime | None = None,
        actor_role: str = "",
        request_id: str = "",
    ) -> ConsentRecord:
        """Record consent given under privacy notice ``notice_version``. A grant while one
        is in force renews it (new notice version, new expiry)."""
        return await self._grant(
            _subject(subject_id),
            purpose,
            channel,
            source=_source(source),
            notice_version=notice_version,
            actor_id=actor_id,
            evidence=self._evidence(evidence),
            expires_at=expires_at,
            actor_role=actor_role,
            request_id=request_id,
        )

    async def _grant(
        self,
        subject_id: str,
        purpose: str,
        channel: str | None,
        *,
        source: Source,
        notice_version: int,
        actor_id: str,
        evidence: dict[str, Any],
        expires_at: dt.datetime | None,
        actor_role: str,
        request_id: str,
    ) -> ConsentRecord:
        info = await self.purpose(purpose)
        if not info.needs_consent:
            raise ConsentError("consent_not_basis", "this purpose does not rest on consent")
        if not info.active:
            raise ConsentError("purpose_inactive", "this purpose is no longer offered")
        recorded_channel = info.channel_for(channel)
        if source is Source.SYSTEM:
            raise ConsentError("unknown_source", "consent cannot come from the system")
        if not isinstance(notice_version, int) or await self.notice(notice_version) is None:
            raise ConsentError("unknown_notice", "no privacy notice with this version")
        now = _now()
        if expires_at is not None and (expires_at.tzinfo is None or expires_at <= now):
            raise ConsentError("invalid_expiry", "an expiry must be a future, timezone-aware time")
        return await self._append(
            subject_id=subject_id,
            purpose=info.name,
            channel=recorded_channel,
            kind=ConsentEventKind.GRANTED,
            source=source,
            evidence=evidence,
            notice_version=notice_version,
            actor_id=actor_id,
            actor_role=actor_role,
            expires_at=expires_at,
            request_id=request_id,
            now=now,
        )

    async def withdraw(
        self,
        subject_id: str,
        purpose: str,
        channel: str | None = None,
        *,
        source: str,
        actor_id: str,
        evidence: Mapping[str, Any] | None = None,
        actor_role: str = "",
        request_id: str = "",
    ) -> ConsentRecord | None:
        """Withdraw consent; effective at once. Withdrawing what is not in force records
        nothing and returns None (so a repeated click is harmless). Once committed, the
        lapse listeners hear of it (a caller holding a transaction tells them itself)."""
        record = await self._withdraw(
            subject_id,
            purpose,
            channel,
            source=source,
            actor_id=actor_id,
            evidence=evidence,
            actor_role=actor_role,
            request_id=request_id,
        )
        if record is not None and not db.in_transaction():
            await self._lapsed(record.subject_id, LAST_CONSENT_WITHDRAWN)
        return record

    async def _withdraw(
        self,
        subject_id: str,
        purpose: str,
        channel: str | None = None,
        *,
        source: str,
        actor_id: str,
        evidence: Mapping[str, Any] | None = None,
        actor_role: str = "",
        request_id: str = "",
    ) -> ConsentRecord | None:
        subject = _subject(subject_id)
        info = await self.purpose(purpose)
        recorded_channel = info.channel_for(channel)
        clean = self._evidence(evidence)
        async with db.write_transaction():
            # Pending confirmations die with the withdrawal: no old link re-grants later.
            await ConsentToken.update({ConsentToken.used_at: _now()}).where(
                (ConsentToken.subject_id == uuid.UUID(subject))
                & (ConsentToken.purpose == info.name)
                & (ConsentToken.channel == recorded_channel)
                & ConsentToken.used_at.is_null()
            )
            current = await self._state_row(subject, info.name, recorded_channel)
            if current is None or current.state is not ConsentEventKind.GRANTED:
                return None
            return await self._append(
                subject_id=subject,
                purpose=info.name,
                channel=recorded_channel,
                kind=ConsentEventKind.WITHDRAWN,
                source=_source(source),
                evidence=clean,
                notice_version=None,
                actor_id=actor_id,
                actor_role=actor_role,
                expires_at=None,
                request_id=request_id,
            )

    async def object(
        self,
        subject_id: str,
        scope: str = DIRECT_MARKETING,
        *,
        source: str,
        actor_id: str,
        evidence: Mapping[str, Any] | None = None,
        actor_role: str = "",
        request_id: str = "",
    ) -> ConsentRecord:
        """Record an Art. 21 objection: to direct marketing (absolute: it also blocks every
        direct-marketing purpose and profiling, whatever grants exist), or to one purpose
        resting on legitimate interests or a public task."""
        subject = _subject(subject_id)
        if scope != DIRECT_MARKETING:
            info = await self.purpose(scope)
            if info.legal_basis not in OBJECTABLE:
                raise ConsentError(
                    "objection_not_applicable",
                    "objections apply to direct marketing and to purposes resting on "
                    "legitimate interests or a public task; withdraw consent instead",
                )
        return await self._append(
            subject_id=subject,
            purpose=scope,
            channel=ANY_CHANNEL,
            kind=ConsentEventKind.OBJECTED,
            source=_source(source),
            evidence=self._evidence(evidence),
            notice_version=None,
            actor_id=actor_id,
            actor_role=actor_role,
            expires_at=None,
            request_id=request_id,
        )

    async def lift_objection(
        self,
        subject_id: str,
        scope: str = DIRECT_MARKETING,
        *,
        source: str,
        actor_id: str,
        evidence: Mapping[str, Any] | None = None,
        actor_role: str = "",
        request_id: str = "",
    ) -> ConsentRecord | None:
        """Lift an objection (``scope`` is ``direct_marketing`` or a purpose name): a ledger
        event like any other change, effective at once. Lifting what is not in force
        records nothing and returns None (a repeated click is harmless).

        Staff lift one only on the person's word, so anyone but the person themself must
        give evidence of it (``evidence["note"]``: where and when they asked); the note is
        sealed under the person's key like all free-text evidence.
        """
        subject = _subject(subject_id)
        if scope != DIRECT_MARKETING:
            scope = (await self.purpose(scope)).name
        clean = self._evidence(evidence)
        if actor_id != SUBJECT_ACTOR and not str(clean.get("note") or "").strip():
            raise ConsentError(
                "evidence_required",
                "say how the person asked to lift their objection (the evidence is required)",
            )
        async with db.write_transaction():
            current = await self._state_row(subject, scope, ANY_CHANNEL)
            if current is None or current.state is not ConsentEventKind.OBJECTED:
                return None
            return await self._append(
                subject_id=subject,
                purpose=scope,
                channel=ANY_CHANNEL,
                kind=ConsentEventKind.LIFTED,
                source=_source(source),
                evidence=clean,
                notice_version=None,
                actor_id=actor_id,
                actor_role=actor_role,
                expires_at=None,
                request_id=request_id,
            )

    async def expire_due(self, now: dt.datetime | None = None) -> int:
        """Record ``expired`` for every grant whose expiry has passed; returns how many.

        ``has_basis`` already treats such grants as expired; this makes the ledger say so
        (and the dashboard count it). Safe to run from several workers: each state row is
        re-read inside a transaction that holds the expiry lock (PostgreSQL; SQLite's
        write lock does the same), so a grant expires once.
        """
        now = now or _now()
        due = await ConsentState.select(
            ConsentState.subject_id, ConsentState.purpose, ConsentState.channel
        ).where(
            (ConsentState.state == ConsentEventKind.GRANTED.value)
            & ConsentState.expires_at.is_not_null()
            & (ConsentState.expires_at <= now)
        )
        expired = 0
        for row in due:
            subject = str(row["subject_id"])
            async with db.write_transaction():
                if not db.is_sqlite():  # SQLite's write lock already serialises workers
                    await ConsentState.raw("SELECT pg_advisory_xact_lock({})", PG_EXPIRY_LOCK)
                current = await self._state_row(subject, row["purpose"], row["channel"])
                if current is None or current.state is not ConsentEventKind.GRANTED:
                    continue
                if current.expires_at is None or current.expires_at > now:
                    continue
                await self._append(
                    subject_id=subject,
                    purpose=str(row["purpose"]),
                    channel=str(row["channel"]),
                    kind=ConsentEventKind.EXPIRED,
                    source=Source.SYSTEM,
                    evidence={"expired_at": current.expires_at.isoformat()},
                    notice_version=None,
                    actor_id=EXPIRY_ACTOR,
                    actor_role=SYSTEM_ROLE,
                    expires_at=None,
                    request_id="",
                )
                expired += 1
            await self._lapsed(subject, LAST_CONSENT_EXPIRED)
        return expired

    async def lapses_since(self, since: dt.datetime) -> list[tuple[str, str, dt.datetime]]:
        """(subject id, reason code, when) of every withdrawal or expiry recorded since
        ``since``, latest per person: what the daily last-basis sweep looks at again, in
        case a lapse listener failed when it happened."""
        rows = await (
            ConsentEvent.select(
                ConsentEvent.subject_id, ConsentEvent.kind, ConsentEvent.occurred_at
            )
            .where(
                (ConsentEvent.occurred_at >= since)
                & ConsentEvent.kind.is_in(
                    [ConsentEventKind.WITHDRAWN.value, ConsentEventKind.EXPIRED.value]
                )
            )
            .order_by(ConsentEvent.occurred_at)
        )
        latest: dict[str, tuple[str, str, dt.datetime]] = {}
        for row in rows:
            subject = str(row["subject_id"])
            reason = (
                LAST_CONSENT_WITHDRAWN
                if row["kind"] == ConsentEventKind.WITHDRAWN.value
                else LAST_CONSENT_EXPIRED
            )
            latest[subject] = (subject, reason, row["occurred_at"])
        return list(latest.values())

    # -- reading the state ---------------------------------------------------------------

    @staticmethod
    def _status_of(row: Mapping[str, Any]) -> ConsentStatus:
        return ConsentStatus(
            purpose=str(row["purpose"]),
            channel=str(row["channel"]),
            state=ConsentEventKind(row["state"]),
            since=row["since"],
            expires_at=row["expires_at"],
        )

    async def _state_row(self, subject: str, purpose: str, channel: str) -> ConsentStatus | None:
        row = (
            await ConsentState.select()
            .where(
                (ConsentState.subject_id == uuid.UUID(subject))
                & (ConsentState.purpose == purpose)
                & (ConsentState.channel == channel)
            )
            .first()
        )
        return None if row is None else self._status_of(row)

    async def state(self, subject_id: str) -> list[ConsentStatus]:
        """The current state per purpose and channel, objections included."""
        rows = (
            await ConsentState.select()
            .where(ConsentState.subject_id == uuid.UUID(_subject(subject_id)))
            .order_by(ConsentState.purpose)
            .order_by(ConsentState.channel)
        )
        return [self._status_of(row) for row in rows]

    @staticmethod
    def _objection_scopes(info: PurposeInfo) -> list[str]:
        """The objection rows that block ``info``."""
        scopes = [info.name]
        if info.direct_marketing or info.name == PROFILING:
            scopes.append(DIRECT_MARKETING)
        return scopes

    async def has_basis(
        self,
        subject_id: str,
        purpose: str,
        channel: str | None = None,
        now: dt.datetime | None = None,
    ) -> Basis:
        """May ``purpose`` be pursued for this subject now (on ``channel``, or on any)?"""
        subject = _subject(subject_id)
        info = await self.purpose(purpose)
        if not info.active:
            return Basis(False, "purpose_inactive")
        if channel is not None:
            info.channel_for(channel)
        now = now or _now()
        objected = await ConsentState.exists().where(
            (ConsentState.subject_id == uuid.UUID(subject))
            & ConsentState.purpose.is_in(self._objection_scopes(info))
            & (ConsentState.state == ConsentEventKind.OBJECTED.value)
        )
        if objected:
            return Basis(False, "objected")
        if not info.needs_consent:
            return Basis(True, info.legal_basis.value)
        query = ConsentState.select().where(
            (ConsentState.subject_id == uuid.UUID(subject)) & (ConsentState.purpose == info.name)
        )
        if channel is not None:
            query = query.where(ConsentState.channel == info.channel_for(channel))
        states = [self._status_of(row) for row in await query]
        if any(s.in_force(now) for s in states):
            return Basis(True, "consent_granted")
        if not states:
            return Basis(False, "no_consent")
        latest = max(states, key=lambda s: s.since)
        if latest.state is ConsentEventKind.GRANTED:  # granted, but past its expiry
            return Basis(False, "expired")
        return Basis(
            False, "withdrawn" if latest.state is ConsentEventKind.WITHDRAWN else latest.state.value
        )

    async def subjects_with_basis(
        self, purpose: str, channel: str | None = None, now: dt.datetime | None = None
    ) -> AudienceFilter:
        """The subjects ``purpose`` may be pursued for, as SQL (see :class:`AudienceFilter`)."""
        info = await self.purpose(purpose)
        now = now or _now()
        objectors = ConsentState.select(ConsentState.subject_id).where(
            ConsentState.purpose.is_in(self._objection_scopes(info))
            & (ConsentState.state == ConsentEventKind.OBJECTED.value)
        )
        if not info.active:  # nobody: an empty inclusion list
            nobody = ConsentState.select(ConsentState.subject_id).where(ConsentState.id == -1)
            return AudienceFilter(info.name, True, nobody)
        if not info.needs_consent:
            return AudienceFilter(info.name, False, objectors)
        granted = ConsentState.select(ConsentState.subject_id).where(
            (ConsentState.purpose == info.name)
            & (ConsentState.state == ConsentEventKind.GRANTED.value)
            & (ConsentState.expires_at.is_null() | (ConsentState.expires_at > now))
            & ConsentState.subject_id.not_in(objectors)
        )
        if channel is not None:
            granted = granted.where(ConsentState.channel == info.channel_for(channel))
        return AudienceFilter(info.name, True, granted.distinct())

    async def audience_size(
        self, purpose: str, channel: str | None = None, now: dt.datetime | None = None
    ) -> int:
        """How many subjects a consent-based purpose may reach now. Other bases reach every
        record but the objectors, which only the gateway can count."""
        audience = await self.subjects_with_basis(purpose, channel, now)
        if not audience.include:
            raise ConsentError(
                "not_consent_based", "this purpose's audience is counted by the gateway"
            )
        return len(await audience.subject_ids())

    # -- double opt-in and links -----------------------------------------------------------

    def withdrawal_link(self, subject_id: str, purpose: str, channel: str) -> str:
        """A signed link that withdraws one consent in one click, without logging in."""
        token = self._keys.withdrawal_token(_subject(subject_id), purpose, channel)
        return f"{self._public_url}/consent/withdraw/{token}"

    def confirmation_link(self, token: str) -> str:
        return f"{self._public_url}/consent/confirm/{token}"

    async def request_double_opt_in(
        self,
        subject_id: str,
        email: str,
        purpose: str,
        channel: str = "email",
        *,
        notice_version: int,
        source: str,
        evidence: Mapping[str, Any] | None = None,
        actor_id: str = SUBJECT_ACTOR,
        actor_role: str = "",
        request_id: str = "",
    ) -> OptInRequest:
        """E-mail a confirmation link; consent is recorded only when it is confirmed.

        ``email`` is used for this one message and is not stored anywhere. The message
        also carries the one-click withdrawal link, so saying no is as easy as yes.
        """
        subject = _subject(subject_id)
        info = await self.purpose(purpose)
        if not info.needs_consent or not info.active:
            raise ConsentError("consent_not_basis", "this purpose does not take consent")
        recorded_channel = info.channel_for(channel)
        notice = await self.notice(notice_version) if isinstance(notice_version, int) else None
        if notice is None:
            raise ConsentError("unknown_notice", "no privacy notice with this version")
        clean = self._evidence(evidence)
        clean.setdefault("requested_at", _now().isoformat())
        clean = await self.seal_evidence(subject, clean)  # the token row is no exception
        token = self._keys.new_token()
        now = _now()
        expires_at = now + CONFIRMATION_LIFETIME
        async with db.write_transaction():
            await ConsentToken.insert(
                ConsentToken(
                    token_hash=self._keys.token_hash(token),
                    subject_id=uuid.UUID(subject),
                    purpose=info.name,
                    channel=recorded_channel,
                    notice_version=notice.version,
                    source=_source(source).value,
                    evidence=json.dumps(clean, sort_keys=True),
                    created_at=now,
                    expires_at=expires_at,
                )
            ).run()
            await self._audit.append(
                audit_event(
                    actor_id=actor_id,
                    actor_role=actor_role or _role_of(actor_id),
                    action="consent.optin_request",
                    resource_type="consent",
                    subject_ids=(subject,),
                    purpose=info.name,
                    outcome=Outcome.ALLOWED,
                    request_id=request_id,
                    detail={"channel": recorded_channel, "notice_version": notice.version},
                )
            )
        withdraw = self.withdrawal_link(subject, info.name, recorded_channel)
        text = _confirmation_text(
            controller=self._controller,
            purpose=info,
            notice=notice,
            confirm=self.confirmation_link(token),
            withdraw=withdraw,
            preferences=self.preference_link(subject, now),
            expires_at=expires_at,
        )
        # RFC 8058: mail clients show their own "unsubscribe" button and POST to the link;
        # here it also cancels the pending confirmation (``withdraw`` does that).
        headers = {
            "List-Unsubscribe": f"<{withdraw}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        result = await self._mailer.send(
            email, f"Please confirm: {info.description}", text, headers=headers
        )
        return OptInRequest(mail_status=result.status.value, expires_at=expires_at)

    async def _live_token(self, token: str) -> dict[str, Any] | None:
        if not token or len(token) > 128:
            return None
        row: dict[str, Any] | None = (
            await ConsentToken.select()
            .where(ConsentToken.token_hash == self._keys.token_hash(token))
            .first()
        )
        if row is None or row["used_at"] is not None or row["expires_at"] <= _now():
            return None
        return row

    async def confirmation_purpose(self, token: str) -> PurposeInfo | None:
        """The purpose a live confirmation link is for (for its page); None if not live."""
        row = await self._live_token(token)
        return None if row is None else await self.purpose(str(row["purpose"]))

    async def confirm(
        self, token: str, *, evidence: Mapping[str, Any] | None = None, request_id: str = ""
    ) -> ConsentRecord:
        """Redeem a confirmation link: records the grant, with ``double_opt_in`` evidence.
        Works once; every failure raises the same :class:`LinkInvalid`."""
        # What the confirming request looked like, next to what the original request did.
        renamed = {"ip_hash": "confirm_ip_hash", "user_agent": "confirm_user_agent"}
        extra = {renamed.get(k, k): v for k, v in self._evidence(evidence).items()}
        now = _now()
        async with db.write_transaction():
            row = await self._live_token(token)
            if row is None:
                raise LinkInvalid()
            claimed = await (
                ConsentToken.update({ConsentToken.used_at: now})
                .where((ConsentToken.id == row["id"]) & ConsentToken.used_at.is_null())
                .returning(ConsentToken.id)
            )
            if not claimed:  # another request redeemed it a moment ago
                raise LinkInvalid()
            recorded = json.loads(row["evidence"] or "{}")
            recorded.update(extra)
            recorded.update({"double_opt_in": True, "confirmed_at": now.isoformat()})
            return await self._grant(
                str(row["subject_id"]),
                str(row["purpose"]),
                str(row["channel"]),
                source=Source(row["source"]),
                notice_version=int(row["notice_version"]),
                actor_id=SUBJECT_ACTOR,
                evidence=recorded,
                expires_at=None,
                actor_role="",
                request_id=request_id,
            )

    async def withdrawal_purpose(self, token: str) -> PurposeInfo | None:
        """The purpose a genuine withdrawal link is for (for its page); None if forged."""
        target = self._keys.read_withdrawal_token(token)
        if target is None:
            return None
        try:
            return await self.purpose(target.purpose)
        except ConsentError:
            return None

    async def withdraw_by_link(
        self, token: str, *, evidence: Mapping[str, Any] | None = None, request_id: str = ""
    ) -> ConsentRecord | None:
        """Withdraw through a signed link. Idempotent: a second click changes nothing."""
        target = self._keys.read_withdrawal_token(token)
        if target is None:
            raise LinkInvalid()
        try:
            return await self.withdraw(
                target.subject_id,
                target.purpose,
                target.channel,
                source=Source.EMAIL_LINK.value,
                actor_id=SUBJECT_ACTOR,
                evidence=evidence,
                request_id=request_id,
            )
        except ConsentError as exc:
            if exc.code in {"unknown_purpose", "unknown_channel", "invalid_subject"}:
                raise LinkInvalid() from None  # a genuine link to a purpose since removed
            raise

    # -- the preference center -----------------------------------------------------------

    def preference_link(self, subject_id: str, now: dt.datetime | None = None) -> str:
        """A signed link to the person's preference center (valid 30 days), for any e-mail
        we send them: there they see and change every consent without logging in."""
        expires_at = (now or _now()) + PREFERENCE_LINK_LIFETIME
        token = self._keys.preference_token(_subject(subject_id), expires_at)
        return f"{self._public_url}/preferences/{token}"

    def preference_subject(self, token: str, now: dt.datetime | None = None) -> str | None:
        """The subject a genuine, unexpired preference token is for; None otherwise."""
        return self._keys.read_preference_token(token, now or _now())

    async def preference_view(
        self, token: str, now: dt.datetime | None = None
    ) -> PreferenceView | None:
        """What the preference center shows for ``token`` (None: the link is not valid).

        Every active purpose with the person's state per channel, whether an objection
        blocks it, and the current privacy notice. Nothing here identifies the person: the
        page must be safe to show to whoever holds the link.
        """
        now = now or _now()
        subject = self.preference_subject(token, now)
        if subject is None:
            return None
        statuses = {(s.purpose, s.channel): s for s in await self.state(subject)}
        objected = {
            purpose for (purpose, _), s in statuses.items() if s.state is ConsentEventKind.OBJECTED
        }
        choices: list[PurposeChoice] = []
        for info in await self.purposes():
            if not info.active:
                continue
            channels: list[ChannelChoice] = []
            for channel in info.channels or (ANY_CHANNEL,):
                status = statuses.get((info.name, channel))
                if status is None:
                    channels.append(ChannelChoice(channel, NOT_GIVEN, None, None))
                    continue
                state = status.state.value
                if status.state is ConsentEventKind.GRANTED and not status.in_force(now):
                    state = (
                        ConsentEventKind.EXPIRED.value
                    )  # past its expiry, before expire_due has run
                channels.append(ChannelChoice(channel, state, status.since, status.expires_at))
            choices.append(
                PurposeChoice(
                    purpose=info,
                    channels=tuple(channels),
                    blocked=bool(objected & set(self._objection_scopes(info))),
                    objectable=info.legal_basis in OBJECTABLE,
                    objected_itself=info.name in objected,
                )
            )
        return PreferenceView(
            purposes=tuple(choices),
            notice=await self.current_notice(),
            objected_direct_marketing=DIRECT_MARKETING in objected,
        )

    async def change_preferences(
        self,
        token: str,
        action: str,
        purpose: str = "",
        channel: str = "",
        *,
        notice_version: int | None = None,
        evidence: Mapping[str, Any] | None = None,
        request_id: str = "",
    ) -> list[ConsentRecord]:
        """Apply one button of the preference center, as the person (actor ``subject``,
        source ``pref_center``). Returns the ledger events recorded; empty when nothing
        needed changing (a repeated click). A bad link raises :class:`LinkInvalid`.

        A grant names the notice version the page showed; it must still be the current
        one, so nobody is recorded as agreeing to a text they were not shown.
        """
        subject = self.preference_subject(token)
        if subject is None:
            raise LinkInvalid()
        try:
            act = PreferenceAction(action)
        except ValueError:
            raise ConsentError("unknown_action", "this choice is not offered") from None
        source = Source.PREFERENCE_CENTER.value
        if act is PreferenceAction.GRANT:
            granted = await self._grant_shown(
                subject, purpose, channel, notice_version, evidence, request_id
            )
            return [granted]
        if act is PreferenceAction.WITHDRAW:
            withdrawn = await self.withdraw(
                subject,
                purpose,
                channel or None,
                source=source,
                actor_id=SUBJECT_ACTOR,
                evidence=evidence,
                request_id=request_id,
            )
            return [] if withdrawn is None else [withdrawn]
        if act is PreferenceAction.WITHDRAW_ALL:
            return await self._withdraw_all(subject, evidence, request_id)
        if act is PreferenceAction.LIFT_OBJECTION:
            lifted = await self.lift_objection(
                subject,
                purpose or DIRECT_MARKETING,
                source=source,
                actor_id=SUBJECT_ACTOR,
                evidence=evidence,
                request_id=request_id,
            )
            return [] if lifted is None else [lifted]
        scope = DIRECT_MARKETING if act is PreferenceAction.OBJECT_DIRECT_MARKETING else purpose
        async with db.write_transaction():
            already = await self._state_row(subject, scope, ANY_CHANNEL)
            if already is not None and already.state is ConsentEventKind.OBJECTED:
                return []
            objection = await self.object(
                subject,
                scope,
                source=source,
                actor_id=SUBJECT_ACTOR,
                evidence=evidence,
                request_id=request_id,
            )
        return [objection]

    async def _grant_shown(
        self,
        subject: str,
        purpose: str,
        channel: str,
        notice_version: int | None,
        evidence: Mapping[str, Any] | None,
        request_id: str,
    ) -> ConsentRecord:
        """A grant from the preference center: only under the notice the page showed, and
        not for a purpose the person objected to."""
        current = await self.current_notice()
        if current is None or notice_version != current.version:
            raise ConsentError(
                "notice_changed", "the privacy notice has changed: please read it again"
            )
        info = await self.purpose(purpose)
        if await ConsentState.exists().where(
            (ConsentState.subject_id == uuid.UUID(subject))
            & ConsentState.purpose.is_in(self._objection_scopes(info))
            & (ConsentState.state == ConsentEventKind.OBJECTED.value)
        ):
            raise ConsentError("objected", "your objection covers this purpose")
        granted = await self.grant(
            subject,
            info.name,
            channel or None,
            source=Source.PREFERENCE_CENTER.value,
            notice_version=current.version,
            actor_id=SUBJECT_ACTOR,
            evidence=evidence,
            request_id=request_id,
        )
        return granted

    async def _withdraw_all(
        self, subject: str, evidence: Mapping[str, Any] | None, request_id: str
    ) -> list[ConsentRecord]:
        """Every consent the person holds, withdrawn in one transaction (all or nothing)."""
        records: list[ConsentRecord] = []
        async with db.write_transaction():  # all or nothing
            for status in await self.state(subject):
                if status.state is not ConsentEventKind.GRANTED:
                    continue
                record = await self._withdraw(
                    subject,
                    status.purpose,
                    status.channel,
                    source=Source.PREFERENCE_CENTER.value,
                    actor_id=SUBJECT_ACTOR,
                    evidence=evidence,
                    request_id=request_id,
                )
                if record is not None:
                    records.append(record)
        if records and not db.in_transaction():
            await self._lapsed(subject, LAST_CONSENT_WITHDRAWN)
        return records

    async def ledger(
        self, subject_id: str, *, actor_id: str, actor_role: str = "", request_id: str = ""
    ) -> list[ConsentRecord]:
        """Every ledger event of one person, newest first (the 360 page, the portal's
        receipts), evidence left sealed. Audited as ``consent.ledger_read`` (counts only)."""
        subject = _subject(subject_id)
        rows = (
            await ConsentEvent.select()
            .where(ConsentEvent.subject_id == uuid.UUID(subject))
            .order_by(ConsentEvent.id, ascending=False)
        )
        async with db.write_transaction():
            await self._audit.append(
                audit_event(
                    actor_id=actor_id,
                    actor_role=actor_role or _role_of(actor_id),
                    action="consent.ledger_read",
                    resource_type="consent",
                    subject_ids=(subject,),
                    outcome=Outcome.ALLOWED,
                    request_id=request_id,
                    detail={"events": len(rows)},
                )
            )
        return [self._record_of(row) for row in rows]

    # -- proof ---------------------------------------------------------------------------

    async def proof(
        self, subject_id: str, *, actor_id: str, actor_role: str = "", request_id: str = ""
    ) -> dict[str, Any]:
        """The subject's consent history (Art. 7(1)): every ledger event, the full text and
        hash of each notice a grant referred to, and the current state. Audited."""
        subject = _subject(subject_id)
        rows = (
            await ConsentEvent.select()
            .where(ConsentEvent.subject_id == uuid.UUID(subject))
            .order_by(ConsentEvent.id)
        )
        records = [self._record_of(row) for row in rows]
        versions = sorted({r.notice_version for r in records if r.notice_version is not None})
        notices: dict[int, Notice] = {}
        if versions:
            for row in await PrivacyNotice.select().where(PrivacyNotice.version.is_in(versions)):
                notices[int(row["version"])] = self._notice_of(row)
        events: list[dict[str, Any]] = []
        for record in records:
            event: dict[str, Any] = {
                "id": record.id,
                "purpose": record.purpose,
                "channel": record.channel,
                "kind": record.kind.value,
                "source": record.source,
                "evidence": await self.readable_evidence(subject, record.evidence),
                "notice_version": record.notice_version,
                "actor": record.actor_id,
                "occurred_at": record.occurred_at.isoformat(),
                "expires_at": record.expires_at.isoformat() if record.expires_at else None,
            }
            if record.notice_version is not None:
                event["notice"] = notices[record.notice_version].as_json()
            events.append(event)
        state = [
            {
                "purpose": s.purpose,
                "channel": s.channel,
                "state": s.state.value,
                "since": s.since.isoformat(),
                "expires_at": s.expires_at.isoformat() if s.expires_at else None,
            }
            for s in await self.state(subject)
        ]
        async with db.write_transaction():
            await self._audit.append(
                audit_event(
                    actor_id=actor_id,
                    actor_role=actor_role or _role_of(actor_id),
                    action="consent.export",
                    resource_type="consent",
                    subject_ids=(subject,),
                    outcome=Outcome.ALLOWED,
                    request_id=request_id,
                    detail={"events": len(events)},
                )
            )
        return {
            "subject_id": subject,
            "generated_at": _now().isoformat(),
            "events": events,
            "state": state,
        }


_ACTIONS = {
    ConsentEventKind.GRANTED: "grant",
    ConsentEventKind.WITHDRAWN: "withdraw",
    ConsentEventKind.EXPIRED: "expire",
    ConsentEventKind.OBJECTED: "object",
    ConsentEventKind.LIFTED: "lift_objection",
}


def _confirmation_text(
    *,
    controller: str,
    purpose: PurposeInfo,
    notice: Notice,
    confirm: str,
    withdraw: str,
    preferences: str,
    expires_at: dt.datetime,
) -> str:
    lines: Sequence[str] = (
        "Hello,",
        "",
        f"please confirm that {controller} may process your data for this purpose:",
        "",
        f"    {purpose.description}",
        "",
        "Confirm here (the page asks you to press a button):",
        confirm,
        "",
        f"The link works once, until {expires_at:%Y-%m-%d %H:%M} UTC. If you did not ask "
        "for this, ignore this message: nothing is recorded without your confirmation.",
        "",
        f"Privacy notice, version {notice.version}: {notice.title}",
        "",
        "You can withdraw your consent at any time, in one click, without logging in:",
        withdraw,
        "",
        "See and change all your choices (valid for 30 days):",
        preferences,
    )
    return "\n".join(lines) + "\n"
