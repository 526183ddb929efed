"""The public lead form: what a website's "contact us" form posts to, with no staff login.

Nobody is authenticated here, so the endpoint defends itself:

- **rate limit** per client address, with the login throttle's counters
  (``server.auth.throttle``; keyed HMACs, so no IP address is stored): a few submissions
  are free, then the address waits 1, 2, 4 ... minutes (429 with ``Retry-After``);
- **honeypot**: a field hidden from people (``website``) that bots fill in; such a
  submission is answered like any other and dropped, so the bot learns nothing;
- **minimum fill time**: the page fetches a form token first (a signed timestamp with a
  random nonce); a submission sooner than a person could type, or without a valid token,
  is refused;
- **single use**: a token creates one lead. The lead and a keyed hash of the token
  (``spent_form_token``) are written in one transaction, so every worker sees the token as
  spent and a replay gets the same kind of 400 as an expired token. A submission refused
  for a bad field does not spend it: the visitor corrects the field and sends again.

A valid submission becomes a lead created by ``Actor.system("web-form")`` under
``customer_relationship`` (the person asked to be contacted), owned by the configured
owner and team. The answer is 202 with no values echoed; a bad field gets a 400 naming the
field and the rule, never what was typed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from server import db
from server.auth.throttle import LoginThrottler
from server.datamap import LEAD, shown_name
from server.gateway import Actor, Gateway, InvalidInput
from server.leads.tables import SpentFormToken
from server.logs import get_logger
from server.settings import Settings

ACTOR_JOB = "web-form"  # created as Actor.system(ACTOR_JOB), in the configured team
PURPOSE = "customer_relationship"
SOURCE = "web"
FORM_FIELDS = ("first_name", "last_name", "email", "phone", "company_name", "message")
HONEYPOT = "website"
TOKEN_FIELD = "form_token"  # noqa: S105 - a form field name, not a secret
TOKEN_LIFETIME = dt.timedelta(hours=2)  # a visitor may leave the page open for a while
MAX_TOKEN = 200
_TOKEN_LABEL = b"consentry/lead-form/v1"
NONCE_BYTES = 12  # two visitors opening the form in the same second get different tokens
NOT_VALID = "not valid: fetch a new one from GET /api/v1/public/leads/form-token"
ALREADY_USED = "already used: fetch a new one from GET /api/v1/public/leads/form-token"
log = get_logger("consentry.leads.webform")


class Throttled(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__("too many submissions")
        self.retry_after = retry_after


@dataclass(frozen=True)
class Submitted:
    created: bool  # False when the honeypot caught it (answered the same way)


class FormTokens:
    """Signed issue times: ``<unix seconds>.<nonce>.<HMAC-SHA256 hex>``. The signature is
    what proves the server issued the time; the nonce makes every token a different one, so
    that spending one (:class:`SpentTokens`) spends nobody else's."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, issued: int, nonce: str) -> str:
        message = f"consentry/lead-form|{issued}|{nonce}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def issue(self, now: dt.datetime) -> str:
        issued = int(now.timestamp())
        nonce = secrets.token_urlsafe(NONCE_BYTES)
        return f"{issued}.{nonce}.{self._mac(issued, nonce)}"

    def problem(self, token: Any, now: dt.datetime, min_seconds: int) -> str | None:
        """Why ``token`` is not acceptable now, or None if it is (spent or not)."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN:
            return "missing: fetch one from GET /api/v1/public/leads/form-token"
        parts = token.split(".")
        if len(parts) != 3:
            return NOT_VALID
        issued_text, nonce, mac = parts
        if (
            not issued_text.isdigit()
            or not nonce
            or not hmac.compare_digest(mac, self._mac(int(issued_text), nonce))
        ):
            return NOT_VALID
        age = now.timestamp() - int(issued_text)
        if age < min_seconds:
            return "the form was sent too quickly after it was opened; try again"
        if age > TOKEN_LIFETIME.total_seconds():
            return "expired: reload the form"
        return None

    @staticmethod
    def expires_at(token: str) -> dt.datetime:
        """When a token that passed :meth:`problem` stops being accepted anyway."""
        issued = int(token.partition(".")[0])
        return dt.datetime.fromtimestamp(issued, dt.UTC) + TOKEN_LIFETIME


class SpentTokens:
    """Tokens that have created a lead, shared by every worker through the database.

    Only an HMAC of the token is stored, with the token's own expiry: a row is needed
    until then and no longer (:meth:`purge_expired`, run by the daily housekeeping).
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def token_hash(self, token: str) -> str:
        message = f"consentry/lead-form/spent|{token}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    async def spend(self, token: str, expires_at: dt.datetime) -> bool:
        """Mark ``token`` spent; False if it already was. Call inside the transaction that
        creates the lead: the unique hash makes a concurrent second spend wait for the
        first and then find the row, on SQLite and PostgreSQL alike."""
        inserted = (
            await SpentFormToken.insert(
                SpentFormToken(token_hash=self.token_hash(token), expires_at=expires_at)
            )
            .on_conflict(target=SpentFormToken.token_hash, action="DO NOTHING")
            .returning(SpentFormToken.id)
        )
        return bool(inserted)

    @staticmethod
    async def purge_expired(now: dt.datetime | None = None) -> int:
        """Delete the rows of tokens that are refused as expired anyway; how many."""
        moment = now or dt.datetime.now(dt.UTC)
        removed = (
            await SpentFormToken.delete()
            .where(SpentFormToken.expires_at < moment)
            .returning(SpentFormToken.id)
        )
        return len(removed)


class WebForm:
    """The public lead form: built once by ``build_services`` (it keeps nothing per
    request; spent tokens and throttles live in the database)."""

    def __init__(self, gateway: Gateway, settings: Settings) -> None:
        self._gateway = gateway
        self._settings = settings
        key = gateway.derived_key(_TOKEN_LABEL)
        self.tokens = FormTokens(key)
        self.spent = SpentTokens(key)
        self._throttle = LoginThrottler(key)

    def new_token(self) -> str:
        return self.tokens.issue(dt.datetime.now(dt.UTC))

    async def submit(self, data: Mapping[str, Any], client: str) -> Submitted:
        """Check, then create the lead. Raises :class:`Throttled` or ``InvalidInput``."""
        settings = self._settings
        key = self._throttle.address_key(client or "unknown")
        wait = await self._throttle.wait_seconds(key)
        # Every submission counts, refused or not: a bot that keeps trying waits longer.
        await self._throttle.record_failure(key, settings.web_form_free_submissions)
        if wait > 0:
            log.info("web form throttled")
            raise Throttled(wait)
        if data.get(HONEYPOT):
            log.info("web form honeypot filled; dropped")
            return Submitted(created=False)
        problems: dict[str, str] = {}
        unknown = set(data) - {*FORM_FIELDS, HONEYPOT, TOKEN_FIELD}
        for name in sorted(unknown):
            problems[shown_name(name)] = "unknown field"
        token = data.get(TOKEN_FIELD)
        token_problem = self.tokens.problem(
            token, dt.datetime.now(dt.UTC), settings.web_form_min_seconds
        )
        if token_problem:
            problems[TOKEN_FIELD] = token_problem
        if problems:
            raise InvalidInput(
                "invalid form: " + "; ".join(f"{k}: {v}" for k, v in problems.items()),
                problems=problems,
            )
        values: dict[str, Any] = {
            name: data[name] for name in FORM_FIELDS if data.get(name) not in (None, "")
        }
        values |= {"source": SOURCE, "status": "new"}
        owner_id = await self._configured_owner()
        async with db.write_transaction():
            # The token is spent with the lead or not at all (a refused field rolls it back).
            if not await self.spent.spend(str(token), self.tokens.expires_at(str(token))):
                log.info("web form token already used; refused")
                raise InvalidInput(
                    f"invalid form: {TOKEN_FIELD}: {ALREADY_USED}",
                    problems={TOKEN_FIELD: ALREADY_USED},
                )
            await self._gateway.create(
                Actor.system(ACTOR_JOB, team=settings.web_form_team),
                LEAD.resource,
                values,
                purpose=PURPOSE,
                owner_id=owner_id,
                team=settings.web_form_team,  # the configured team, whoever the owner is
            )
        return Submitted(created=True)

    async def _configured_owner(self) -> int | None:
        """The configured owner, if it is an active staff user. A visitor's lead is never
        refused for the controller's configuration: a missing or disabled owner leaves it
        with the team (and says so in the log, without personal data)."""
        owner = self._settings.web_form_owner_id
        if not owner:
            return None
        if await self._gateway.staff.assignee(owner) is None:
            log.warning("web form owner is not an active staff user; lead left to the team")
            return None
        return owner
