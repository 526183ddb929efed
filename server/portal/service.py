"""``Portal``: what a data subject can do for themself, signed in by an e-mailed link.

Identity is proven by control of the address on file: ``/portal`` takes an address and,
if a person's record carries it (any of the data map's ``PERSON_TYPES``: a contact, or a
lead who only filled in the website's form), e-mails a one-time link. Whether anyone was found never
shows: the page is the same, and the lookup and the e-mail happen after the answer was
sent (``deliver_sign_in_link`` runs as a background task), so the response time says
nothing either. Attempts are throttled per address and per client address with the
staff sign-in throttle's table and rules, under keys of the portal's own.

Secrets: one key derived from the vault's index root (``consentry/portal/v1``) is split
into labelled subkeys for sign-in links, download links, session cookies and throttle
keys. The database holds HMACs of links and cookies only, so a copy of it signs nobody in.

Everything the person does is a data-subject request in ``DataSubjectRequests``, logged
with channel ``portal`` and verification ``email_link``; reading and correcting their
record goes through the gateway as ``system:portal`` under the ``compliance`` purpose.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from audit.events import Outcome, audit_event
from audit.log import AuditLog
from policy.enforcer import SYSTEM_ROLE
from server import db
from server.auth.throttle import LoginThrottler
from server.consent.model import SUBJECT_ACTOR
from server.datamap import (
    InvalidValues,
    RecordType,
    clean_values,
    normalize_email,
    self_correctable,
)
from server.dsr.people import OwnRecord, own_record
from server.dsr.requests import DataRequest, DataSubjectRequests, RequestChange, RequestError
from server.gateway import Actor, Gateway, GatewayError
from server.gateway.sealing import derive_key
from server.logs import get_logger
from server.mail import Mailer, MailResult
from server.portal.tables import PortalSession, PortalToken
from server.settings import Settings

PORTAL_JOB = "portal"
PORTAL_ACTOR_ID = f"system:{PORTAL_JOB}"
SUBJECT_ROLE = "data_subject"
PURPOSE = "compliance"  # Art. 12-22 requests are a legal obligation of the controller

SIGN_IN = "sign_in"
DOWNLOAD = "download"
SIGN_IN_LIFETIME = dt.timedelta(minutes=15)
DOWNLOAD_LIFETIME = dt.timedelta(days=7)
# "Download my data" pressed again this soon after an answered request serves that same
# request again instead of logging (and e-mailing about) a new one.
REPEAT_DOWNLOAD = dt.timedelta(minutes=10)
# One answer at a time per person in this worker (a double click waits, then finds it).
_DOWNLOAD_LOCKS: dict[str, asyncio.Lock] = {}
MAX_LOCKS = 10_000
MAX_OUTSTANDING_LINKS = 5  # unused sign-in links per person; more requests send nothing
SESSION_IDLE = dt.timedelta(minutes=30)
SESSION_ABSOLUTE = dt.timedelta(hours=8)
ADDRESS_FREE_ATTEMPTS = 5  # link requests per e-mail address before a lock (1, 2, 4 ... min)
CLIENT_FREE_ATTEMPTS = 20  # per client address: an office may share one
MAX_TOKEN_LENGTH = 128

# The request kinds a person files from the portal for compliance to review.
REVIEWED_KINDS = ("erasure", "restriction", "objection")
DOWNLOAD_KINDS = ("access", "portability")

log = get_logger("consentry.portal")

Exporter = Callable[[str], Awaitable[bytes]]
"""Builds the signed export ZIP of one subject (``server.dsr.export.build_export``),
audited as requested by the subject."""


class PortalError(Exception):
    """Something the person asked for that cannot be done; the message is for them and
    never repeats what they typed."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class PortalIdentity:
    """A signed-in person: the subject, and the record their link was sent for (a contact
    or a lead; what they see and correct is their own record now: ``own_record``)."""

    subject_id: str
    record_id: str
    session_token: str = ""


def _shown(rt: RecordType) -> tuple[str, ...]:
    """What the correction page reads: the correctable fields and the address."""
    return (*self_correctable(rt), "email")


@dataclass(frozen=True)
class CorrectionResult:
    changed: tuple[str, ...]  # field names
    request: DataRequest | None


@dataclass(frozen=True)
class Download:
    request_id: str
    expires_at: dt.datetime


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)


class PortalKeys:
    """The labelled subkeys of the portal secret."""

    def __init__(self, secret: bytes) -> None:
        self._sign_in = derive_key(secret, b"consentry/portal/sign-in-link/v1")
        self._download = derive_key(secret, b"consentry/portal/download-link/v1")
        self._session = derive_key(secret, b"consentry/portal/session/v1")
        self.throttle = derive_key(secret, b"consentry/portal/throttle/v1")

    def token_hash(self, kind: str, token: str) -> str:
        key = {SIGN_IN: self._sign_in, DOWNLOAD: self._download}[kind]
        return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()

    def session_hash(self, token: str) -> str:
        return hmac.new(self._session, token.encode(), hashlib.sha256).hexdigest()


def _plausible(token: str) -> bool:
    return 0 < len(token) <= MAX_TOKEN_LENGTH


class Portal:
    """The portal's service: links, sessions and the person's requests. One per process."""

    def __init__(
        self,
        gateway: Gateway,
        audit: AuditLog,
        mailer: Mailer,
        settings: Settings,
        requests: DataSubjectRequests,
        secret: bytes,
        *,
        exporter: Exporter | None = None,
    ) -> None:
        self._gateway = gateway
        self._audit = audit
        self._mailer = mailer
        self._requests = requests
        self._keys = PortalKeys(secret)
        self._throttle = LoginThrottler(self._keys.throttle)
        self._public_url = settings.public_url.rstrip("/")
        self._controller = settings.controller_name
        self._contact = settings.controller_contact
        self.actor = Actor.system(PORTAL_JOB)
        # The person's signed bundle (server.dsr.export); without one, no downloads.
        self.exporter = exporter

    async def purge_expired(self, now: dt.datetime | None = None) -> tuple[int, int]:
        """Delete links and sessions that can no longer be used; (links, sessions) removed.

        An expired link or session signs nobody in (an expired link already gets the same
        page as a forged one), but each row still ties a subject id to a moment of contact
        with the portal, and nothing needs it: the audit log keeps the record of every
        sign-in and download. Run daily with the retention rules.
        """
        moment = now or _now()
        links = (
            await PortalToken.delete()
            .where(PortalToken.expires_at < moment)
            .returning(PortalToken.id)
        )
        sessions = (
            await PortalSession.delete()
            .where(
                (PortalSession.expires_at < moment)
                | (PortalSession.last_seen_at < moment - SESSION_IDLE)
            )
            .returning(PortalSession.id)
        )
        return len(links), len(sessions)

    # -- asking for a sign-in link ---------------------------------------------------------

    async def admit_link_request(self, address: str, client: str) -> str | None:
        """Count one link request; the normalized address if it may go ahead, else None.

        Raises :class:`PortalError` for something that is not an e-mail address (saying
        so reveals nothing). Over the limit (per address or per client) the caller shows
        the same page and sends nothing.
        """
        try:
            normalized = normalize_email(address.strip())
        except ValueError:
            raise PortalError(
                "invalid_email", "Enter your e-mail address, like name@example.com."
            ) from None
        keys = [self._throttle.account_key(normalized)]
        if client:
            keys.append(self._throttle.address_key(client))
        blocked = await self._throttle.wait_seconds(*keys) > 0
        await self._throttle.record_failure(keys[0], ADDRESS_FREE_ATTEMPTS)
        if client:
            await self._throttle.record_failure(keys[1], CLIENT_FREE_ATTEMPTS)
        if blocked:
            log.info("portal link request throttled")
            return None
        return normalized

    async def deliver_sign_in_link(self, address: str) -> None:
        """Find who holds ``address`` and e-mail each of them a sign-in link.

        Runs after the answer was sent; it never raises (there is nobody to tell), and
        logs failures by type only.
        """
        try:
            found = await self._gateway.locate_people(self.actor, "email", address, purpose=PURPOSE)
            first: dict[str, str] = {}  # one link per person, not per record
            for _, record_id, subject_id in found:
                first.setdefault(subject_id, record_id)
            for subject_id, record_id in first.items():
                await self._send_sign_in_link(address, subject_id, record_id)
        except Exception as exc:  # a background task: log it, never crash
            log.error("portal sign-in link not sent", error=type(exc).__name__)

    async def _send_sign_in_link(self, address: str, subject_id: str, record_id: str) -> None:
        now = _now()
        outstanding = await PortalToken.count().where(
            (PortalToken.kind == SIGN_IN)
            & (PortalToken.subject_id == uuid.UUID(subject_id))
            & PortalToken.used_at.is_null()
            & (PortalToken.expires_at > now)
        )
        if outstanding >= MAX_OUTSTANDING_LINKS:
            await self._record("portal.sign_in_link", subject_id, Outcome.DENIED, "too_many_links")
            return
        token = await self._mint(SIGN_IN, subject_id, record_id, None, now + SIGN_IN_LIFETIME)
        link = f"{self._public_url}/portal/enter/{token}"
        text = "\n".join(
            [
                "Hello,",
                "",
                "Someone (we hope you) asked to sign in to our privacy portal, where you can",
                "download your data, correct it, or ask us to erase it or stop using it.",
                "",
                f"Sign in: {link}",
                "",
                "The link works once, for 15 minutes. If you did not ask for it, ignore this",
                "message: nothing happens without the link.",
                "",
                self._controller,
                f"Contact: {self._contact}",
            ]
        )
        result = await self._mailer.send(address, "Your sign-in link to our privacy portal", text)
        await self._record_mail("portal.sign_in_link", subject_id, result)

    async def _mint(
        self,
        kind: str,
        subject_id: str,
        record_id: str,
        request_id: str | None,
        expires_at: dt.datetime,
    ) -> str:
        token = secrets.token_urlsafe(32)
        await PortalToken.insert(
            PortalToken(
                token_hash=self._keys.token_hash(kind, token),
                kind=kind,
                subject_id=uuid.UUID(subject_id),
                contact_id=record_id,
                request_id=uuid.UUID(request_id) if request_id else None,
                created_at=_now(),
                expires_at=expires_at,
                used_at=None,
            )
        ).run()
        return token

    # -- signing in ------------------------------------------------------------------------

    async def sign_in_link_is_live(self, token: str) -> bool:
        """Whether the link could still sign someone in (the GET page; consumes nothing)."""
        if not _plausible(token):
            return False
        row = (
            await PortalToken.select(PortalToken.id)
            .where(
                (PortalToken.token_hash == self._keys.token_hash(SIGN_IN, token))
                & (PortalToken.kind == SIGN_IN)
                & PortalToken.used_at.is_null()
                & (PortalToken.expires_at > _now())
            )
            .first()
        )
        return row is not None

    async def sign_in(self, token: str, *, request_id: str = "") -> PortalIdentity | None:
        """Consume a sign-in link and open a session; None for a forged, used or expired
        link. The link is spent by one conditional UPDATE, so two clicks cannot both win."""
        if not _plausible(token):
            return None
        now = _now()
        session_token = secrets.token_urlsafe(32)
        async with db.write_transaction():
            spent = await (
                PortalToken.update({PortalToken.used_at: now})
                .where(
                    (PortalToken.token_hash == self._keys.token_hash(SIGN_IN, token))
                    & (PortalToken.kind == SIGN_IN)
                    & PortalToken.used_at.is_null()
                    & (PortalToken.expires_at > now)
                )
                .returning(PortalToken.subject_id, PortalToken.contact_id)
            )
            if not spent:
                return None
            subject_id, contact_id = str(spent[0]["subject_id"]), str(spent[0]["contact_id"])
            await PortalSession.insert(
                PortalSession(
                    token_hash=self._keys.session_hash(session_token),
                    subject_id=uuid.UUID(subject_id),
                    contact_id=contact_id,
                    created_at=now,
                    last_seen_at=now,
                    expires_at=now + SESSION_ABSOLUTE,
                )
            ).run()
            await self._append("portal.sign_in", subject_id, Outcome.ALLOWED, "", request_id)
        return PortalIdentity(subject_id, contact_id, session_token)

    async def session(self, token: str) -> PortalIdentity | None:
        """The person signed in with this cookie, if the session is still alive; each use
        pushes the idle timeout back."""
        if not _plausible(token):
            return None
        now = _now()
        key = self._keys.session_hash(token)
        row = await PortalSession.select().where(PortalSession.token_hash == key).first()
        if row is None:
            return None
        if _utc(row["expires_at"]) <= now or now - _utc(row["last_seen_at"]) > SESSION_IDLE:
            await PortalSession.delete().where(PortalSession.token_hash == key)
            return None
        await PortalSession.update({PortalSession.last_seen_at: now}).where(
            PortalSession.token_hash == key
        )
        return PortalIdentity(str(row["subject_id"]), str(row["contact_id"]), token)

    async def sign_out(self, identity: PortalIdentity) -> None:
        await PortalSession.delete().where(
            PortalSession.token_hash == self._keys.session_hash(identity.session_token)
        )

    # -- the person's requests -------------------------------------------------------------

    async def requests_of(self, identity: PortalIdentity) -> list[DataRequest]:
        """The person's own requests; not the erasure reviews the system opened itself
        (``server.dsr.lapse``), which they did not ask for."""
        requests = await self._requests.for_subject(identity.subject_id)
        return [r for r in requests if not r.opened_because]

    async def downloads_of(self, identity: PortalIdentity) -> dict[str, Download]:
        """Request id -> the live download link for it (the home page offers a button)."""
        rows = await PortalToken.select(PortalToken.request_id, PortalToken.expires_at).where(
            (PortalToken.kind == DOWNLOAD)
            & (PortalToken.subject_id == uuid.UUID(identity.subject_id))
            & (PortalToken.expires_at > _now())
        )
        downloads: dict[str, Download] = {}
        for row in rows:
            request_id, expires = str(row["request_id"]), _utc(row["expires_at"])
            if request_id not in downloads or downloads[request_id].expires_at < expires:
                downloads[request_id] = Download(request_id, expires)
        return downloads

    async def file_request(
        self, identity: PortalIdentity, kind: str, *, request_id: str = ""
    ) -> DataRequest:
        """Log an erasure, restriction or objection request for compliance to review.

        Refuses a second open request of the same kind: the first one is still running.
        """
        if kind not in REVIEWED_KINDS:
            raise PortalError("unknown_kind", "That is not a request this page offers.")
        for existing in await self.requests_of(identity):
            if existing.kind == kind and existing.open:
                raise PortalError(
                    "duplicate",
                    f"You already have an open request of this kind (reference {existing.id}, "
                    f"due by {existing.deadline:%d %B %Y}). We will answer it; there is no "
                    "need to ask again.",
                )
        change = await self._log(identity, kind, request_id)
        return change.request

    async def _log(
        self, identity: PortalIdentity, kind: str, request_id: str, *, notify: bool = True
    ) -> RequestChange:
        """A request the person made here: verified by the e-mailed sign-in link."""
        return await self._requests.log(
            identity.subject_id,
            kind,
            "portal",
            verification="email_link",
            by=SUBJECT_ACTOR,
            by_role=SUBJECT_ROLE,
            contact_id=identity.record_id,
            request_id=request_id,
            notify=notify,
        )

    async def download_now(self, identity: PortalIdentity, *, request_id: str = "") -> bytes:
        """Answer an access request on the spot: log it, build the signed bundle and mark it
        fulfilled. The bundle is audited as requested by the subject (``dsr.export``)."""
        if self.exporter is None:
            raise PortalError("unavailable", "Downloads are not available right now.")
        # One click, one request, one e-mail: a second click (a double click, an impatient
        # reload) while the first is being answered waits for it and then finds it.
        if len(_DOWNLOAD_LOCKS) > MAX_LOCKS:
            _DOWNLOAD_LOCKS.clear()  # bounded memory; an in-flight answer keeps its own lock
        lock = _DOWNLOAD_LOCKS.setdefault(identity.subject_id, asyncio.Lock())
        async with lock:
            return await self._download_once(identity, request_id)

    async def _download_once(self, identity: PortalIdentity, request_id: str) -> bytes:
        assert self.exporter is not None  # checked by download_now
        now = dt.datetime.now(dt.UTC)
        for existing in await self.requests_of(identity):
            if existing.kind != "access":
                continue
            if existing.open:
                raise PortalError(
                    "in_progress",
                    f"Your request for a copy of your data (reference {existing.id[:8]}) is "
                    "already in progress. We will e-mail you when it is ready; there is no "
                    "need to ask again.",
                )
            if existing.state == "fulfilled" and now - existing.updated_at < REPEAT_DOWNLOAD:
                # Just answered: the same request again, not a new one (and no new e-mail).
                return await self._serve(identity, existing.id, request_id)
        change = await self._log(identity, "access", request_id, notify=False)
        key = change.request.id
        for state in ("in_review", "approved"):
            await self._requests.transition(key, state, by=PORTAL_ACTOR_ID, notify=False)
        bundle = await self.exporter(identity.subject_id)
        # The portal's own fulfiller call sees by == system:portal and sends no link: the
        # person is downloading the bundle right now. This is the one e-mail they get.
        await self._requests.transition(key, "fulfilled", by=PORTAL_ACTOR_ID)
        await self._record(
            "portal.download", identity.subject_id, Outcome.ALLOWED, "", key, request_id
        )
        return bundle

    # -- correcting their record -----------------------------------------------------------

    async def own_record(self, identity: PortalIdentity) -> OwnRecord:
        """The person's own record (a contact, or a lead), with its correctable fields and
        e-mail address, read through the gateway. Raises :class:`PortalError` when there
        is none left (erased while signed in)."""
        found = await own_record(
            self._gateway, self.actor, identity.subject_id, purpose=PURPOSE, fields=_shown
        )
        if found is None:
            raise PortalError("no_record", "We no longer hold a record about you.")
        return found

    async def correct(
        self, identity: PortalIdentity, submitted: Mapping[str, str], *, request_id: str = ""
    ) -> CorrectionResult:
        """Write the fields the person changed through the gateway (audited there) and
        record a ``rectification`` request, fulfilled at once.

        Raises :class:`InvalidValues` (field -> reason, never the value) for bad input.
        """
        current = await self.own_record(identity)
        rt = current.record_type
        values = {name: submitted.get(name, "") for name in self_correctable(rt)}
        cleaned = clean_values(rt, values, partial=True, default_region=self._region)
        changes = {
            name: value for name, value in cleaned.items() if value != current.values.get(name)
        }
        if not changes:
            return CorrectionResult((), None)
        try:
            await self._gateway.update(
                self.actor, rt.resource, current.record_id, changes, purpose=PURPOSE
            )
        except GatewayError as exc:
            if exc.problems:
                raise InvalidValues(dict(exc.problems)) from None
            raise
        logged = await self._log(identity, "rectification", request_id)
        key = logged.request.id
        done = logged
        for state in ("in_review", "approved", "fulfilled"):
            done = await self._requests.transition(key, state, by=PORTAL_ACTOR_ID)
        return CorrectionResult(tuple(sorted(changes)), done.request)

    @property
    def _region(self) -> str:
        return self._gateway.default_region

    # -- download links for requests staff fulfil ------------------------------------------

    async def send_download_link(self, request: DataRequest, by: str) -> None:
        """The fulfiller of ``access`` and ``portability`` requests: e-mail the person a
        link to their bundle, valid 7 days, usable once they are signed in to the portal.

        Raises :class:`RequestError` (the request stays approved) when the link cannot
        reach them. Idempotent enough: a retry sends a fresh link.
        """
        if by == PORTAL_ACTOR_ID:
            return  # answered in the portal itself: the person is downloading it now
        found = await own_record(
            self._gateway, self.actor, request.subject_id, purpose=PURPOSE, fields=_shown
        )
        if found is None:
            raise RequestError("no_contact", "the person's record is gone")
        address = found.email
        if address is None:
            raise RequestError("no_email", "the person has no e-mail address on file")
        expires = _now() + DOWNLOAD_LIFETIME
        async with db.write_transaction():
            token = await self._mint(
                DOWNLOAD, request.subject_id, found.record_id, request.id, expires
            )
            await self._append(
                "portal.download_link", request.subject_id, Outcome.ALLOWED, "", "", request.id
            )
        link = f"{self._public_url}/portal/download/{token}"
        text = "\n".join(
            [
                "Hello,",
                "",
                f"The copy of your data you asked for (reference {request.id}) is ready.",
                "",
                f"Download it: {link}",
                "",
                f"The link works until {expires:%d %B %Y}. To protect your data you will be",
                "asked to sign in to our privacy portal with your e-mail address first.",
                "",
                self._controller,
                f"Contact: {self._contact}",
            ]
        )
        result = await self._mailer.send(address, "Your data is ready to download", text)
        await self._record_mail("portal.download_link_mail", request.subject_id, result)
        if not result.sent:
            raise RequestError(
                "link_not_sent", "the download link could not be e-mailed; try again later"
            )

    async def _download_link(self, identity: PortalIdentity, token: str) -> str | None:
        """The request a live download link answers, if it was sent to this person."""
        if not _plausible(token):
            return None
        row = (
            await PortalToken.select(PortalToken.request_id, PortalToken.subject_id)
            .where(
                (PortalToken.token_hash == self._keys.token_hash(DOWNLOAD, token))
                & (PortalToken.kind == DOWNLOAD)
                & (PortalToken.expires_at > _now())
            )
            .first()
        )
        if row is None or str(row["subject_id"]) != identity.subject_id:
            return None
        return str(row["request_id"])

    async def download_link_is_live(self, identity: PortalIdentity, token: str) -> bool:
        """Whether the link would serve this person a bundle (the GET page; builds and
        records nothing)."""
        return await self._download_link(identity, token) is not None

    async def download_by_link(
        self, identity: PortalIdentity, token: str, *, request_id: str = ""
    ) -> bytes | None:
        """The bundle behind a download link, for the person it was sent to; None for a
        forged or expired link, or one sent to somebody else."""
        dsr_id = await self._download_link(identity, token)
        if dsr_id is None:
            await self._record(
                "portal.download", identity.subject_id, Outcome.DENIED, "link_invalid", "",
                request_id,
            )  # fmt: skip
            return None
        return await self._serve(identity, dsr_id, request_id)

    async def download_for_request(
        self, identity: PortalIdentity, dsr_id: str, *, request_id: str = ""
    ) -> bytes | None:
        """The bundle of one of the person's fulfilled requests while its link is live."""
        download = (await self.downloads_of(identity)).get(dsr_id)
        if download is None:
            return None
        return await self._serve(identity, dsr_id, request_id)

    async def _serve(self, identity: PortalIdentity, dsr_id: str, request_id: str) -> bytes:
        if self.exporter is None:
            raise PortalError("unavailable", "Downloads are not available right now.")
        bundle = await self.exporter(identity.subject_id)
        await self._record(
            "portal.download", identity.subject_id, Outcome.ALLOWED, "", dsr_id, request_id
        )
        return bundle

    async def record_receipt(
        self, identity: PortalIdentity, dsr_id: str | None, *, request_id: str = ""
    ) -> None:
        """The person downloaded a receipt: of a request (``dsr_id``) or of a consent
        change (None); audited under them like their downloads."""
        reason = "request_receipt" if dsr_id else "consent_receipt"
        await self._record(
            "portal.receipt", identity.subject_id, Outcome.ALLOWED, reason, dsr_id or "",
            request_id,
        )  # fmt: skip

    # -- audit -----------------------------------------------------------------------------

    async def _record(
        self,
        action: str,
        subject_id: str,
        outcome: Outcome,
        reason: str,
        resource_id: str = "",
        request_id: str = "",
    ) -> None:
        async with db.write_transaction():
            await self._append(action, subject_id, outcome, reason, request_id, resource_id)

    async def _record_mail(self, action: str, subject_id: str, result: MailResult) -> None:
        outcome = Outcome.ALLOWED if result.sent else Outcome.ERROR
        await self._record(action, subject_id, outcome, "" if result.sent else result.error)

    async def _append(
        self,
        action: str,
        subject_id: str,
        outcome: Outcome,
        reason: str,
        request_id: str = "",
        resource_id: str = "",
    ) -> None:
        """One audit event inside the caller's transaction: ids and codes only."""
        by_subject = action in {"portal.sign_in", "portal.download", "portal.receipt"}
        await self._audit.append(
            audit_event(
                actor_id=SUBJECT_ACTOR if by_subject else PORTAL_ACTOR_ID,
                actor_role=SUBJECT_ROLE if by_subject else SYSTEM_ROLE,
                action=action,
                resource_type="dsr_request" if resource_id else "data_subject",
                resource_id=resource_id or None,
                subject_ids=(subject_id,),
                purpose=PURPOSE,
                outcome=outcome,
                reason=reason,
                request_id=request_id,
            )
        )
