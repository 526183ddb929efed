"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile: 64 MiB, t=3,
p=4 - stronger than OWASP's minimum of 19 MiB, t=2, p=1)."""

from __future__ import annotations

import re
import secrets

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id, RFC_9106_LOW_MEMORY parameters

MIN_LENGTH = 12  # ASVS 5 V6.2.1 for staff; no composition rules (V6.2.5)
MAX_LENGTH = 128  # ASVS asks for at least 64
MIN_GUESSABILITY_SCORE = 3  # zxcvbn: 3 = "safely unguessable" (~10^8 guesses and more)
# A hash of a random password, verified against when there is no usable hash (unknown
# e-mail, a forced reset pending, a locked account), so that a failed login takes the same
# time whatever the state of the account.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class WeakPassword(ValueError):
    """A password the rules refuse; the message says why and never repeats it."""


def personal_words(email: str, display_name: str = "") -> tuple[str, ...]:
    """The words of someone's e-mail and name, which a password must not lean on."""
    local = email.split("@")[0]
    words = {email, local, display_name, *re.split(r"[^\w]+", local + " " + display_name)}
    return tuple(w for w in words if len(w) >= 3)


def check_password_rules(password: str, user_inputs: tuple[str, ...] = ()) -> None:
    """ASVS 5 rules for staff passwords; ``user_inputs`` (e-mail, name) count as guessable."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"password must be at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"password must be at most {MAX_LENGTH} characters")
    # zxcvbn knows the 30,000 most common passwords, keyboard runs, sequences, repeats,
    # dates and dictionary words; it judges guessability without composition rules.
    from zxcvbn import zxcvbn

    estimate = zxcvbn(password, user_inputs=list(user_inputs))
    if estimate["score"] < MIN_GUESSABILITY_SCORE:
        hint = estimate["feedback"].get("warning") or "it is too easy to guess"
        raise WeakPassword(f"choose a less guessable password: {hint.rstrip('.')}.")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def _is_argon2_hash(stored_hash: str) -> bool:
    """Whether argon2 would do real work on this hash (markers such as the one a forced
    reset leaves are refused by argon2 at once, which answers measurably faster)."""
    try:
        extract_parameters(stored_hash)
    except InvalidHashError:
        return False
    return True


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Exactly one argon2 verification, whatever is stored: a missing or unusable hash is
    replaced by the dummy one, so the time taken tells nothing about the account."""
    usable = stored_hash if stored_hash is not None and _is_argon2_hash(stored_hash) else None
    try:
        return _hasher.verify(usable or _DUMMY_HASH, password) and usable is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    return _hasher.check_needs_rehash(stored_hash)


def generate_password() -> str:
    return secrets.token_urlsafe(15)  # 20 characters, ~120 bits
