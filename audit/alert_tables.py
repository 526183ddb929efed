"""Tables for audit alerts: the rules, the alerts they raised, and how far evaluation got.

Unlike the audit log these rows change (a rule is edited, an alert is acknowledged), so
they are ordinary tables; every change to them is written to the audit log in the same
transaction by the alerts package (:mod:`audit.alerts`), the only code that writes here.
No row holds customer data: actor ids, counts, sequence numbers and short codes only.
"""

from __future__ import annotations

from piccolo.columns import Boolean, Integer, Serial, Timestamptz, Varchar
from piccolo.table import Table


class AlertRule(Table, tablename="audit_alert_rule"):
    """One configurable rule. ``kind`` picks the detector; the other columns tune it."""

    # Piccolo adds the ``id`` primary key itself; this annotation only informs mypy (an
    # explicit column would make every later ``--auto`` migration try to add it again).
    id: Serial

    kind = Varchar(length=32)  # bulk_read | off_hours | denial_burst | large_export
    name = Varchar(length=100)
    threshold = Integer()
    window_minutes = Integer()
    # Working hours (off_hours rules): local time in ``timezone``, start inclusive, end
    # exclusive, on ``work_days`` ("mon-fri", "mon,wed,fri", ...).
    work_start_hour = Integer(default=7)
    work_end_hour = Integer(default=20)
    work_days = Varchar(length=40, default="mon-fri")
    timezone = Varchar(length=64, default="UTC")
    enabled = Boolean(default=True)
    created_by = Varchar(length=64)
    created_at = Timestamptz()
    updated_by = Varchar(length=64)
    updated_at = Timestamptz()


class AuditAlert(Table, tablename="audit_alert"):
    """Suspicious activity by one actor that one rule matched, over one window of time.

    ``dedup_key`` (rule, actor, first event of the window) is unique, so the same activity
    can never be reported twice, however many workers evaluate at once.
    """

    # Piccolo adds the ``id`` primary key itself; this annotation only informs mypy (an
    # explicit column would make every later ``--auto`` migration try to add it again).
    id: Serial

    dedup_key = Varchar(length=120, unique=True)
    rule_id = Integer(index=True)
    kind = Varchar(length=32)
    actor_id = Varchar(length=64)
    actor_role = Varchar(length=32)
    window_start = Timestamptz()
    window_end = Timestamptz()
    matched = Integer()  # subjects, actions, denials or rows, depending on ``kind``
    first_seq = Integer()
    last_seq = Integer()
    created_at = Timestamptz()
    notified_at = Timestamptz(null=True, default=None)
    notify_error = Varchar(length=32, default="")  # short code, e.g. "smtp_not_configured"
    acknowledged_by = Varchar(length=64, null=True, default=None)
    acknowledged_at = Timestamptz(null=True, default=None)
    acknowledgement = Varchar(length=32, default="")  # one of ACKNOWLEDGEMENTS, never free text


class AlertCursor(Table, tablename="audit_alert_cursor"):
    """The last audit sequence number evaluated (one row). Evaluation resumes after it."""

    # Piccolo adds the ``id`` primary key itself; this annotation only informs mypy (an
    # explicit column would make every later ``--auto`` migration try to add it again).
    id: Serial

    last_seq = Integer(default=0)
    evaluated_at = Timestamptz(null=True, default=None)
