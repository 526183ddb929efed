"""What every part of the data-subject workflow shares: one error shape and actor roles.

Requests, erasures, holds and restrictions all refuse with a machine-readable ``code``
(the CLI's exit line, the admin's flash message and the tests key on it) and a one-line
message that never repeats what the caller sent.
"""

from __future__ import annotations

from policy.enforcer import SYSTEM_ROLE


class DsrError(Exception):
    """A data-subject operation that cannot be done; ``code`` is machine-readable."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def role_of(actor_id: str) -> str:
    """The audit role of a workflow actor id that is not a staff member's."""
    if actor_id == "subject":
        return "data_subject"
    return SYSTEM_ROLE if actor_id.startswith("system:") else ""
