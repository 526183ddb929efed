"""The append-only audit log: who did what to which record, for which purpose, never values."""

from audit.events import Action, AuditEvent, Outcome
from audit.log import AuditLog

__all__ = ["Action", "AuditEvent", "AuditLog", "Outcome"]
