"""The customer-score table: one row per scored person, keyed by their subject id.

The scores themselves (RFM ranks, segment, churn risk and its factors, value, suggestions)
are one JSON document sealed under the person's data key (``Vault.seal_many``), so
erasing the person makes them unreadable everywhere, backups included. The plaintext
columns say only when and by which model version they were computed. Only
:mod:`server.analytics` writes here; the consent engine deletes a person's row when their
basis for profiling ends (:func:`server.analytics.store.forget_scores`).
"""

from __future__ import annotations

from piccolo.columns import UUID, Text, Timestamptz, Varchar
from piccolo.table import Table


class CustomerScore(Table, tablename="customer_score"):
    subject_id = UUID(primary_key=True)
    computed_at = Timestamptz(index=True)
    model = Varchar(length=40)
    sealed = Text()  # the scores, sealed under the person's data key
