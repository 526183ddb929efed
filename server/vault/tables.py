"""Vault tables. Only ``server.vault`` may import this module (import-linter contract)."""

from __future__ import annotations

from piccolo.columns import UUID, Integer, Serial, Text, Timestamptz, Varchar
from piccolo.table import Table


class DataSubject(Table, tablename="data_subject"):
    """A person (or sole trader) whose data we hold; ``id`` is the pseudonym used in audit."""

    id = UUID(primary_key=True)
    kind = Varchar(length=32)
    created_at = Timestamptz()
    erased_at = Timestamptz(null=True, default=None)


class SubjectKey(Table, tablename="subject_key"):
    """A subject's data key, wrapped under a KEK. Deleting the row crypto-shreds the subject."""

    # Piccolo adds the ``id`` primary key itself; this annotation only informs mypy.
    id: Serial

    subject_id = UUID(index=True)
    version = Integer()
    kek_id = Varchar(length=64)
    wrapped_key = Text()
    created_at = Timestamptz()
