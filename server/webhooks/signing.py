"""Standard Webhooks signatures (https://www.standardwebhooks.com): HMAC-SHA256 over
``{webhook-id}.{webhook-timestamp}.{body}`` with the endpoint's secret, sent as
``webhook-signature: v1,<base64>``. The secret is ``whsec_`` + base64 of 32 random bytes,
shown once when the endpoint is made and kept sealed by the vault.

Composed from ``cryptography``'s HMAC; receivers verify with any Standard Webhooks library
(docs/webhooks.md shows the ``standardwebhooks`` package and a few lines of stdlib).
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC

SECRET_PREFIX = "whsec_"  # noqa: S105  # the standard's prefix, not a secret
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def new_message_id() -> str:
    return "msg_" + secrets.token_hex(16)


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    mac = HMAC(secret_key(secret), hashes.SHA256())
    mac.update(f"{message_id}.{timestamp}.".encode() + body)
    return "v1," + base64.b64encode(mac.finalize()).decode()


@dataclass(frozen=True)
class SignedHeaders:
    message_id: str
    timestamp: int
    signature: str

    def as_dict(self) -> dict[str, str]:
        return {
            "webhook-id": self.message_id,
            "webhook-timestamp": str(self.timestamp),
            "webhook-signature": self.signature,
            "content-type": "application/json",
        }


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> SignedHeaders:
    return SignedHeaders(message_id, timestamp, signature(secret, message_id, timestamp, body))
