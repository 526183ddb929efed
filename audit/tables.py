"""The audit tables. UPDATE and DELETE are rejected by database triggers (see migrations),
and on PostgreSQL the application role is granted only INSERT and SELECT on them."""

from __future__ import annotations

from piccolo.columns import Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class AuditRecord(Table, tablename="audit"):
    seq = Integer(unique=True)
    ts = Timestamptz()
    actor_id = Varchar(length=64)
    actor_role = Varchar(length=32)
    action = Varchar(length=32)
    resource_type = Varchar(length=32)
    resource_id = Varchar(length=64, null=True, default=None)
    subject_ids = Text()  # JSON array
    fields = Text()  # JSON array
    purpose = Varchar(length=64)
    outcome = Varchar(length=16)
    reason = Varchar(length=64)
    request_id = Varchar(length=64)
    detail = Text()  # JSON object
    prev_hash = Varchar(length=64)
    hash = Varchar(length=64)
    # HMAC-SHA256 (hex) of the canonical entry under a key outside the database; "" for
    # entries written before MACs existed (see audit.entry_mac).
    mac = Varchar(length=64, default="")


class AuditCheckpoint(Table, tablename="audit_checkpoint"):
    """A signed tree head: the Merkle root over events 1..tree_size, signed with Ed25519.

    ``frontier`` holds the roots of the perfect subtrees that make up the tree (at most
    log2(size) hashes), so the next sealer can extend the tree without reading old events,
    and an incremental verifier can resume from here. It is not signed itself: a verifier
    folds it and compares the result with the signed root.
    """

    tree_size = Integer(unique=True)
    root_hash = Varchar(length=64)
    frontier = Text()  # JSON array of hex hashes, largest subtree first
    signed_at = Timestamptz()
    key_id = Varchar(length=32)
    signature = Text()  # base64 Ed25519 signature over the canonical tree head
