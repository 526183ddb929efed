"""The one choke point for customer data: policy -> field crypto -> audit."""

from server.gateway.actor import Actor
from server.gateway.errors import Conflict, Forbidden, GatewayError, InvalidInput, NotFound
from server.gateway.gateway import BulkResult, Gateway, Group, Page, Record

__all__ = [
    "Actor",
    "BulkResult",
    "Conflict",
    "Forbidden",
    "Gateway",
    "GatewayError",
    "Group",
    "InvalidInput",
    "NotFound",
    "Page",
    "Record",
]
