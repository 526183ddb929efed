"""Audit alerts: rules that watch the audit log for misuse, and the alerts they raise.

The threat is a curious or compromised staff account: reading far more customers than the
job needs, working on customer data at 3 a.m., probing what it may not see, or exporting
a large part of the database. Each of those leaves audit events; a rule turns a pattern of
them into an alert that compliance officers see in the console and get by e-mail.

The package, bottom to top:

- :mod:`audit.alerts.model`: what every part shares - the system actor and purpose, the
  errors, who changes things (``Changer``), stored times, the alert lock, and the audit
  of the system's own changes to alerts;
- :mod:`audit.alerts.rules`: the kinds of rule, their settings and validation, the default
  rules, and the rule book that stores them (each change audited);
- :mod:`audit.alerts.raised`: what a raised alert says (kinds, labels, units,
  acknowledgements, e-mail status) and reading alerts;
- :mod:`audit.alerts.evaluation`: running the rules over new audit events - sliding
  windows, episodes, the cursor and the batches under the lock;
- :mod:`audit.alerts.notification`: e-mailing new alerts and recording the outcome;
- :mod:`audit.alerts.engine`: ``AlertEngine``, which puts them together for the workers,
  the sealer and the compliance console.

Every change to rules and alerts is audited in the transaction of the change. The names
below are re-exported so that ``from audit.alerts import ...`` keeps working; new code
imports from the module that defines a name.
"""

from __future__ import annotations

from audit.alerts.engine import AlertEngine
from audit.alerts.evaluation import BATCH_SIZE, CONTEXT_ROWS, MAX_BATCHES_PER_RUN, Evaluator
from audit.alerts.model import (
    PG_ALERT_LOCK,
    PURPOSE,
    SYSTEM_ACTOR,
    AlertError,
    AlertNotFound,
    Changer,
    RuleInvalid,
    locked_transaction,
)
from audit.alerts.notification import AlertMailer, AlertNotifier, AlertSettings, MailOutcome
from audit.alerts.raised import (
    ACKNOWLEDGEMENTS,
    ALERTS_PAGE_SIZE,
    EMAIL_STATUS_TEXT,
    INTEGRITY_RULE_ID,
    KIND_LABELS,
    RETRYING,
    SEALER_ACTOR,
    UNITS,
    Alert,
    AlertPage,
)
from audit.alerts.rules import (
    CUSTOMER_DATA_ACTIONS,
    DAYS,
    DEFAULT_RULES,
    MAX_NAME,
    MAX_THRESHOLD,
    MAX_WINDOW_MINUTES,
    READ_ACTIONS,
    Rule,
    RuleBook,
    RuleKind,
    RuleSettings,
    format_work_days,
    parse_work_days,
)

__all__ = [
    "ACKNOWLEDGEMENTS",
    "ALERTS_PAGE_SIZE",
    "BATCH_SIZE",
    "CONTEXT_ROWS",
    "CUSTOMER_DATA_ACTIONS",
    "DAYS",
    "DEFAULT_RULES",
    "EMAIL_STATUS_TEXT",
    "INTEGRITY_RULE_ID",
    "KIND_LABELS",
    "MAX_BATCHES_PER_RUN",
    "MAX_NAME",
    "MAX_THRESHOLD",
    "MAX_WINDOW_MINUTES",
    "PG_ALERT_LOCK",
    "PURPOSE",
    "READ_ACTIONS",
    "RETRYING",
    "SEALER_ACTOR",
    "SYSTEM_ACTOR",
    "UNITS",
    "Alert",
    "AlertEngine",
    "AlertError",
    "AlertMailer",
    "AlertNotFound",
    "AlertNotifier",
    "AlertPage",
    "AlertSettings",
    "Changer",
    "Evaluator",
    "MailOutcome",
    "Rule",
    "RuleBook",
    "RuleInvalid",
    "RuleKind",
    "RuleSettings",
    "format_work_days",
    "locked_transaction",
    "parse_work_days",
]
