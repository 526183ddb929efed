"""The consent evidence is append-only; one state row per subject, purpose and channel;
the default purposes.

``privacy_notice`` and ``consent_event`` get the same guards as the audit table: triggers
reject UPDATE and DELETE on both engines, and TRUNCATE on PostgreSQL. The trigger function
is (re)created here so this app does not depend on the order apps migrate in.

The five default purposes are seeded here, with explicit columns, so that later changes to
the table class cannot change what this migration does. Administrators change them later
through ``ConsentEngine.update_purpose`` (audited).
"""

import datetime as dt
import json

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.querystring import QueryString

ID = "2026-11-29T17:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "consent evidence is append-only; state key; default purposes"

APPEND_ONLY = ("privacy_notice", "consent_event")

COMMON = [
    "CREATE UNIQUE INDEX consent_state_key ON consent_state (subject_id, purpose, channel)",
    "CREATE INDEX consent_state_audience_idx ON consent_state (purpose, state)",
    "CREATE INDEX consent_event_subject_idx ON consent_event (subject_id, id)",
]

SQLITE = [
    statement
    for table in APPEND_ONLY
    for statement in (
        f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only: UPDATE rejected'); END""",
        f"""CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
            BEGIN SELECT RAISE(ABORT, '{table} is append-only: DELETE rejected'); END""",
    )
]

POSTGRES = [
    """CREATE OR REPLACE FUNCTION consentry_append_only() RETURNS trigger
       LANGUAGE plpgsql AS $$
       BEGIN
         RAISE EXCEPTION '% is append-only: % rejected', TG_TABLE_NAME, TG_OP
           USING ERRCODE = 'insufficient_privilege';
       END $$""",
] + [
    statement
    for table in APPEND_ONLY
    for statement in (
        f"""CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION consentry_append_only()""",
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION consentry_append_only()""",
    )
]

# name, legal basis, description, channels, retention, direct marketing
DEFAULT_PURPOSES = [
    (
        "marketing",
        "legitimate_interests",
        "Planning campaigns: segments and audience sizes over the few fields marketing may "
        "see. Contacting anyone needs their own consent (marketing_email, marketing_phone).",
        [],
        "For the duration of the customer relationship; never after an objection.",
        True,
    ),
    (
        "marketing_email",
        "consent",
        "Sending newsletters and offers by e-mail.",
        ["email"],
        "Until consent is withdrawn or expires; the consent evidence is kept 3 years after.",
        True,
    ),
    (
        "marketing_phone",
        "consent",
        "Offers by telephone call or text message.",
        ["phone", "sms"],
        "Until consent is withdrawn or expires; the consent evidence is kept 3 years after.",
        True,
    ),
    (
        "profiling",
        "consent",
        "Analysing interests and behaviour to tailor offers (never for automated decisions).",
        [],
        "Profiles are deleted when consent is withdrawn, or after 2 years without activity.",
        False,
    ),
    (
        "third_party_sharing",
        "consent",
        "Passing contact details to named partners for their own offers.",
        [],
        "Until consent is withdrawn; partners are told of a withdrawal.",
        True,
    ),
    (
        "service_communication",
        "contract",
        "Messages needed to deliver what the customer ordered: invoices, changes of service.",
        ["email", "post", "sms"],
        "For the duration of the contract, then 3 years.",
        False,
    ),
]


async def forwards() -> MigrationManager:
    manager = MigrationManager(migration_id=ID, app_name="consent", description=DESCRIPTION)

    async def install() -> None:
        engine = engine_finder()
        assert engine is not None
        for statement in COMMON + (SQLITE if engine.engine_type == "sqlite" else POSTGRES):
            await engine.run_ddl(statement)
        now = dt.datetime.now(dt.UTC)
        for name, basis, description, channels, retention, direct in DEFAULT_PURPOSES:
            await engine.run_querystring(
                QueryString(
                    "INSERT INTO consent_purpose (name, legal_basis, description, channels, "
                    "retention, direct_marketing, active, updated_at, updated_by) "
                    "VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {})",
                    name,
                    basis,
                    description,
                    json.dumps(channels),
                    retention,
                    direct,
                    True,
                    now,
                    "system:migration",
                )
            )

    manager.add_raw(install)
    return manager
