"""What the gateway refuses with. Messages name fields and rules, never submitted values."""

from __future__ import annotations


class GatewayError(Exception):
    status_code = 400

    def __init__(self, message: str, *, problems: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or {}
        self.audited = False  # set once the refusal is in the audit log, so it is logged once


class NotFound(GatewayError):
    """The record does not exist *for this actor*: out-of-scope looks exactly like absent."""

    status_code = 404


class Forbidden(GatewayError):
    status_code = 403


class InvalidInput(GatewayError):
    status_code = 400


class Conflict(GatewayError):
    status_code = 409
