"""Field crypto: master key -> per-subject data keys -> field ciphertext, plus blind indexes."""

from server.vault.keys import (
    EnvKeyProvider,
    FileKeyProvider,
    KeyProvider,
    MasterKeyMissing,
    write_key_file,
)
from server.vault.vault import DataKey, Vault

__all__ = [
    "DataKey",
    "EnvKeyProvider",
    "FileKeyProvider",
    "KeyProvider",
    "MasterKeyMissing",
    "Vault",
    "write_key_file",
]
