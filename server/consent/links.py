"""The keys and codecs behind consent links and hashed evidence.

One secret (HKDF of the session secret, see ``build_services``) is split into labelled
subkeys, so a confirmation-token hash, a withdrawal-link signature and an IP hash can
never be swapped for one another:

- confirmation tokens are random; the database keeps only HMAC(token key, token), so a
  leaked ``consent_token`` table confirms nothing;
- withdrawal links are stateless: ``w1.<payload>.<mac>``, where the payload names the
  subject, purpose and channel. They never expire (withdrawing must stay as easy as
  consenting, Art. 7(3)) and cannot be forged or re-pointed at another person;
- preference-center links are stateless too: ``p1.<payload>.<mac>``, the payload naming
  the subject and an expiry time. Unlike a withdrawal link, one opens every choice of a
  person (give consent as well as withdraw it), so it expires (30 days by default) and is
  signed with a key of its own: a withdrawal link can never be replayed as one;
- IP addresses are evidence only as HMAC(ip key, address): provable ("this request came
  from the address you claim") without keeping the address.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from server.gateway.sealing import derive_key

WITHDRAW_PREFIX = "w1"
PREFERENCE_PREFIX = "p1"
MAX_TOKEN_LENGTH = 256


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class WithdrawalTarget:
    subject_id: str
    purpose: str
    channel: str


class LinkKeys:
    """The labelled subkeys of the consent secret and what is computed with them."""

    def __init__(self, secret: bytes) -> None:
        self._token_key = derive_key(secret, b"consentry/consent/confirm-token/v1")
        self._withdraw_key = derive_key(secret, b"consentry/consent/withdraw-link/v1")
        self._ip_key = derive_key(secret, b"consentry/consent/ip-hash/v1")
        self._preference_key = derive_key(secret, b"consentry/consent/preference-link/v1")

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(32)

    def token_hash(self, token: str) -> str:
        return hmac.new(self._token_key, token.encode(), hashlib.sha256).hexdigest()

    def ip_hash(self, address: str) -> str:
        return hmac.new(self._ip_key, address.strip().encode(), hashlib.sha256).hexdigest()

    def withdrawal_token(self, subject_id: str, purpose: str, channel: str) -> str:
        payload = f"{uuid.UUID(subject_id)}|{purpose}|{channel}".encode()
        mac = hmac.new(self._withdraw_key, payload, hashlib.sha256).digest()
        return f"{WITHDRAW_PREFIX}.{_b64(payload)}.{_b64(mac)}"

    def read_withdrawal_token(self, token: str) -> WithdrawalTarget | None:
        """The target of a genuine link; None for anything forged, altered or malformed."""
        fields = _verified_fields(token, WITHDRAW_PREFIX, self._withdraw_key)
        if fields is None or len(fields) != 3:
            return None
        return WithdrawalTarget(*fields)

    def preference_token(self, subject_id: str, expires_at: dt.datetime) -> str:
        """A signed preference-center token for ``subject_id``, valid until ``expires_at``."""
        payload = f"{uuid.UUID(subject_id)}|{int(expires_at.timestamp())}".encode()
        mac = hmac.new(self._preference_key, payload, hashlib.sha256).digest()
        return f"{PREFERENCE_PREFIX}.{_b64(payload)}.{_b64(mac)}"

    def read_preference_token(self, token: str, now: dt.datetime) -> str | None:
        """The subject id of a genuine, unexpired preference token; None otherwise (forged,
        altered, expired and malformed alike)."""
        fields = _verified_fields(token, PREFERENCE_PREFIX, self._preference_key)
        if fields is None or len(fields) != 2:
            return None
        subject, expiry = fields
        try:
            if int(expiry) <= now.timestamp():
                return None
            return str(uuid.UUID(subject))
        except ValueError:
            return None


def _verified_fields(token: str, prefix: str, key: bytes) -> list[str] | None:
    """The ``|``-separated payload of ``<prefix>.<payload>.<mac>`` if the mac is genuine."""
    if not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != prefix:
        return None
    try:
        payload, mac = _unb64(parts[1]), _unb64(parts[2])
    except (binascii.Error, ValueError):
        return None
    expected = hmac.new(key, payload, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, expected):
        return None
    return payload.decode("utf-8", "replace").split("|")
