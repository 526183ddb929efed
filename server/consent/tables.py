"""Consent tables: the purposes registry, privacy notices, the ledger and its derived state.

No row here holds a name or an e-mail address: people appear only by their pseudonymous
``subject_id`` (the same UUID the gateway's records carry), an IP address only as a keyed
hash, and free-text evidence only encrypted under the person's data key.
``privacy_notice`` and ``consent_event`` are evidence and append-only (database
triggers, and on PostgreSQL the application role's grants: ``server.dbroles``).
``consent_state`` is derived from ``consent_event`` and rewritten in the same transaction
as every ledger insert, so it never disagrees with the ledger. Only
:class:`server.consent.service.ConsentEngine` writes to these tables.
"""

from __future__ import annotations

from piccolo.columns import UUID, Boolean, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table


class ConsentPurpose(Table, tablename="consent_purpose"):
    """One purpose of processing and its legal basis (values of ``LegalBasis``)."""

    # Piccolo adds the ``id`` primary key itself; this annotation only informs mypy.
    id: Serial

    name = Varchar(length=64, unique=True)
    legal_basis = Varchar(length=32)
    description = Text()
    channels = Text(default="[]")  # JSON list of channel codes; [] = not channel-bound
    retention = Text()
    direct_marketing = Boolean(default=False)  # an Art. 21(2) objection blocks it
    active = Boolean(default=True)
    updated_at = Timestamptz()
    updated_by = Varchar(length=64)


class PrivacyNotice(Table, tablename="privacy_notice"):
    """One published version of the privacy notice. Append-only: a new text is a new row."""

    id: Serial

    version = Integer(unique=True)
    title = Varchar(length=200)
    text = Text()
    content_hash = Varchar(length=64)  # sha256 hex of ``text`` (UTF-8)
    published_at = Timestamptz()
    published_by = Varchar(length=64)


class ConsentEvent(Table, tablename="consent_event"):
    """The consent ledger: one row per grant, withdrawal, expiry or objection. Append-only."""

    id: Serial

    subject_id = UUID(index=True)
    purpose = Varchar(length=64)  # a registry purpose, or an objection scope
    channel = Varchar(length=16)
    kind = Varchar(length=16)  # granted | withdrawn | expired | objected | lifted
    source = Varchar(length=16)  # web_form | portal | phone | import | staff | email_link | system
    # JSON object: keyed hashes, times and codes; caller-supplied text (reference, form_id,
    # import_batch, user agents) only as {"sealed": "cs1..."} under the person's data key,
    # so erasure reaches it (server.consent.service.SEALED_EVIDENCE).
    evidence = Text(default="{}")
    notice_version = Integer(null=True, default=None)
    actor_id = Varchar(length=64)  # "user:12", "subject", "system:consent-expiry"
    occurred_at = Timestamptz(index=True)
    expires_at = Timestamptz(null=True, default=None)


class ConsentState(Table, tablename="consent_state"):
    """The current state per (subject, purpose, channel): the last ledger event's outcome.

    Unique on (subject_id, purpose, channel) (index created by the migration). Objections
    are rows too: purpose ``direct_marketing`` (or the objected purpose), channel ``any``,
    state ``objected``.
    """

    id: Serial

    subject_id = UUID(index=True)
    purpose = Varchar(length=64)
    channel = Varchar(length=16)
    state = Varchar(length=16)  # the ``kind`` of the last event
    since = Timestamptz()
    expires_at = Timestamptz(null=True, default=None)
    last_event_id = Integer()


class ConsentToken(Table, tablename="consent_token"):
    """A pending double opt-in: the confirmation link's token, stored only as an HMAC."""

    id: Serial

    token_hash = Varchar(length=64, unique=True)
    subject_id = UUID(index=True)
    purpose = Varchar(length=64)
    channel = Varchar(length=16)
    notice_version = Integer()
    source = Varchar(length=16)
    evidence = Text(default="{}")  # the request's evidence, completed on confirmation
    created_at = Timestamptz()
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
