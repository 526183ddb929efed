"""What the rest of the application may ask of the vault, through the gateway.

The vault (keys, field crypto, blind indexes) is reachable only from the gateway and the
composition roots (an import contract in ``pyproject.toml``): a feature that must keep a
secret (a TOTP seed, a mailbox login, a webhook secret), seal text under a person's key
(consent evidence, scores, queued mail) or derive a key of its own (portal links, export
pseudonyms) asks the gateway, which hands the vault's answer through and nothing more:
no key material, no data keys, no index roots. The vault's errors a caller must tell
apart are named here too, so nobody imports the vault for an ``except`` clause.
"""

from __future__ import annotations

from collections.abc import Mapping

from server.gateway.core import GatewayCore
from server.vault import MasterKeyMissing
from server.vault.envelope import CiphertextError
from server.vault.keys import derive_key
from server.vault.register import RegisterError

__all__ = ["CiphertextError", "MasterKeyMissing", "RegisterError", "Sealing", "derive_key"]


class Sealing(GatewayCore):
    def derived_key(self, info: bytes) -> bytes:
        """A 256-bit key for one labelled use (``info``), derived from the vault's index
        root, which never rotates: links and pseudonyms that must stay valid for years."""
        return self.vault.derived_key(info)

    def seal_secret(self, label: str, context: str, plaintext: str) -> str:
        """Encrypt an operational secret (not customer data) bound to label and context."""
        return self.vault.seal_secret(label, context, plaintext)

    def open_secret(self, label: str, context: str, token: str) -> str:
        """The plaintext of :meth:`seal_secret` (``CiphertextError`` if it was altered)."""
        return self.vault.open_secret(label, context, token)

    async def seal_for_subject(self, subject_id: str, label: str, plaintext: str) -> str | None:
        """Encrypt text about a person under their data key (erasure makes it unreadable
        everywhere); None if the person has no key (erased or unknown)."""
        return await self.vault.seal_for_subject(subject_id, label, plaintext)

    async def seal_many(self, label: str, plaintexts: Mapping[str, str]) -> dict[str, str]:
        """:meth:`seal_for_subject` for many people (subject id -> token), one key lookup."""
        return await self.vault.seal_many(label, plaintexts)

    async def open_for_subject(self, subject_id: str, label: str, token: str) -> str | None:
        """The plaintext of :meth:`seal_for_subject`; None once the person's key is gone."""
        return await self.vault.open_for_subject(subject_id, label, token)

    async def holds_key(self, subject_id: str) -> bool:
        """Whether the person still has a data key (not yet crypto-shredded)."""
        return await self.vault.holds_key(subject_id)
