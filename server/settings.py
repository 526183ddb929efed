"""One typed settings object, read once from ``CONSENTRY_*`` environment variables.

Everything configurable lives here so that a reviewer can see the whole surface in one
screen, and so that tests can build a ``Settings`` explicitly instead of patching globals.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path

PREFIX = "CONSENTRY_"


DEMO_CONTROLLER_NAME = "Consentry Demo Ltd (demo data)"
# The demo's deals are in GBP, EUR and USD: illustrative rates (not today's), so the demo's
# customer values are in one currency. A real deployment sets its own or none.
DEMO_SCORE_RATES = "GBP=1.17,USD=0.92"
MISSING_CONTROLLER = (
    "CONSENTRY_CONTROLLER_NAME is not set: name the organization responsible for the "
    "customers' data (customers see it in the portal and in e-mails); --demo sets a demo name"
)


class ConfigurationError(Exception):
    """A setting is missing or malformed; the message says how to fix it."""


def _flag(name: str, value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigurationError(f"{PREFIX}{name}: expected a boolean (true/false), got {value!r}")


def _positive_int(name: str, value: str | None, default: int) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigurationError(
            f"{PREFIX}{name}: expected a whole number, got {value!r}"
        ) from None
    if number < 1:
        raise ConfigurationError(f"{PREFIX}{name}: must be at least 1, got {number}")
    return number


# Small groups never identify anyone (docs/reports.md): no deployment may show a report
# cell counting fewer people than this, whatever it configures.
MIN_GROUP_SIZE_FLOOR = 3


def _min_group_size(value: str | None) -> int:
    number = _positive_int("REPORT_MIN_GROUP_SIZE", value, 5)
    if number < MIN_GROUP_SIZE_FLOOR:
        raise ConfigurationError(
            f"{PREFIX}REPORT_MIN_GROUP_SIZE: must be at least {MIN_GROUP_SIZE_FLOOR} "
            f"(a report cell of fewer people could identify them), got {number}"
        )
    return number


MAIL_CAPTURE_CONTENT_DEFAULT: tuple[tuple[str, str], ...] = (
    ("customer_relationship", "full"),
    ("customer_support", "full"),
)


def _mail_capture_content(value: str | None) -> tuple[tuple[str, str], ...]:
    """``purpose:full|metadata`` pairs, comma-separated; unlisted purposes: metadata only."""
    if value is None:
        return MAIL_CAPTURE_CONTENT_DEFAULT
    chosen: dict[str, str] = {}
    for item in value.split(","):
        if not item.strip():
            continue
        purpose, _, mode = item.partition(":")
        if mode.strip() not in {"full", "metadata"} or not purpose.strip():
            raise ConfigurationError(
                f"{PREFIX}MAIL_CAPTURE_CONTENT: expected purpose:full or purpose:metadata "
                f"pairs separated by commas, got {item.strip()!r}"
            )
        chosen[purpose.strip()] = mode.strip()
    return tuple(chosen.items())


def _port_or_off(name: str, value: str | None) -> int:
    if value is None or value.strip() in {"", "0"}:
        return 0
    number = _positive_int(name, value, 0)
    if number > 65535:
        raise ConfigurationError(f"{PREFIX}{name}: not a TCP port, got {number}")
    return number


def _positive_float(name: str, value: str | None, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigurationError(f"{PREFIX}{name}: expected a number, got {value!r}") from None
    if not number > 0 or number == float("inf"):
        raise ConfigurationError(f"{PREFIX}{name}: must be a positive number, got {value!r}")
    return number


def _currency_code(name: str, value: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise ConfigurationError(
            f"{PREFIX}{name}: expected a three-letter currency code (EUR), got {value!r}"
        )
    return code


def _rates(value: str | None) -> tuple[tuple[str, Decimal], ...]:
    """ "GBP=1.17,USD=0.92": what one unit of each currency is worth in the score currency."""
    if value is None:
        return ()
    found: dict[str, Decimal] = {}
    for part in value.split(","):
        if not part.strip():
            continue
        code, sep, number = part.partition("=")
        if not sep:
            raise ConfigurationError(
                f"{PREFIX}SCORE_RATES: expected CURRENCY=RATE pairs (GBP=1.17,USD=0.92), "
                f"got {part.strip()!r}"
            )
        try:
            rate = Decimal(number.strip())
        except InvalidOperation:
            rate = Decimal(0)
        if not rate.is_finite() or rate <= 0:
            raise ConfigurationError(
                f"{PREFIX}SCORE_RATES: the rate of {code.strip()} must be a positive number, "
                f"got {number.strip()!r}"
            )
        found[_currency_code("SCORE_RATES", code)] = rate
    return tuple(sorted(found.items()))


@dataclass(frozen=True)
class Settings:
    home: Path = Path("consentry-data")
    database_url: str = ""
    # Connections each process keeps: SQLite's reader connections (plus its one writer),
    # PostgreSQL's asyncpg pool (opened in full when the server starts).
    db_pool_size: int = 10
    master_key_file: Path | None = None
    master_key_env: str | None = field(default=None, repr=False)
    # How long backups are kept: a retired KEK version is destroyed this long after its
    # rotation finished (`consentry keys prune`, and the daily housekeeping).
    backup_retention_days: int = 35
    # Rotate the KEK in the daily housekeeping once the active version is this old (0: off;
    # then rotate with `consentry keys rotate` from cron). Needs a writable key file.
    kek_rotation_days: int = 0
    # Who was erased, kept with the keys and never in a data backup (docs/backups.md).
    erasure_register_file: Path | None = None
    # A person whose last legal basis lapsed is erased by the retention run this many
    # days after their erasure review was opened (server/dsr/lapse.py), unless a basis
    # came back or compliance rejected the review meanwhile.
    basis_lapse_grace_days: int = 30
    session_secret: str | None = field(default=None, repr=False)
    demo: bool = False
    cookie_secure: bool = True
    session_idle_minutes: int = 60
    session_absolute_hours: int = 12
    default_phone_region: str = "GB"
    log_level: str = "INFO"
    log_json: bool = True
    # Audit sealing: the Ed25519 signing key lives outside the database, like the master key.
    audit_signing_key_file: Path | None = None
    audit_signing_key_env: str | None = field(default=None, repr=False)
    seal_interval_ms: int = 250  # how often a worker looks for unsealed events
    # Signed heads are appended here (JSON lines), ideally on another volume or host, so a
    # fresh `consentry audit verify` can catch rows and heads deleted together.
    audit_witness_file: Path | None = None
    # An entry unsigned for longer than this degrades /ready and raises an alert.
    audit_stall_seconds: int = 10
    # PostgreSQL: the role the application connects as (INSERT/SELECT only on audit tables);
    # `consentry migrate` re-grants it after migrating when set.
    app_role: str | None = None
    # Outgoing e-mail (alerts now; double opt-in and portal links later). Unset: no e-mail.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_username: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    # Implicit TLS (SMTPS, RFC 8314): TLS from the first byte, as on port 465 (the default
    # there). ``smtp_ca_file``: a PEM bundle to trust instead of the system's (private CA).
    smtp_tls: bool = False
    smtp_ca_file: Path | None = None
    mail_from: str = "consentry@localhost"
    alert_recipients: tuple[str, ...] = ()
    # Who the controller is, for the record of processing (Art. 30).
    # Required outside demo mode: customers see it in the portal, e-mails and exports
    # (``consentry serve`` refuses to start without it).
    controller_name: str = ""
    controller_contact: str = "privacy@example.com (set CONSENTRY_CONTROLLER_CONTACT)"
    dpo_contact: str = ""
    # Staff-fulfilled access and portability requests: a compliance officer reviews what
    # the export withholds about other people (counts and fields) before releasing it.
    # Off: "Mark fulfilled" releases at once (the review page stays available).
    export_review: bool = True
    public_url: str = "http://127.0.0.1:8000"  # base of links in e-mails
    # The public lead form (POST /api/v1/public/leads): who owns what it captures, how fast
    # a person can fill it in at the quickest, and how many submissions one client address
    # makes before it has to wait.
    web_form_owner_id: int = 0
    web_form_team: str = "sales"
    web_form_min_seconds: int = 3
    web_form_free_submissions: int = 10
    # Calls an API token may make per minute (counted in the database, across workers).
    api_token_rate_per_minute: int = 600
    # Report builder (docs/reports.md): the smallest group a report shows (never below
    # MIN_GROUP_SIZE_FLOOR), and the differential-privacy budget (epsilon) each role may
    # spend per calendar month on noisy releases.
    report_min_group_size: int = 5
    dp_epsilon_per_month: float = 5.0
    # Private networks a user-entered address (a webhook URL, a mailbox or calendar host)
    # may reach; by default only public addresses (server/outbound.py). CIDR ranges.
    outbound_allow: tuple[str, ...] = ()
    # Customer value (docs/analytics-scores.md): the one currency scores count value in,
    # and what one unit of each other currency is worth in it ("GBP=1.17,USD=0.92"). A won
    # amount in a currency without a rate is never added: the scores list it apart.
    score_currency: str = "EUR"
    score_rates: tuple[tuple[str, Decimal], ...] = ()
    # Mailbox capture (docs/mail-capture.md). Per purpose a mailbox captures under: "full"
    # keeps the subject and body (encrypted under the person's key), anything else keeps
    # metadata only (direction, time, correspondents, attachment names and sizes).
    # (purpose, "full" | "metadata") pairs: a tuple, so the settings stay hashable.
    mail_capture_content: tuple[tuple[str, str], ...] = MAIL_CAPTURE_CONTENT_DEFAULT
    # Unmatched inbound mail: dropped without a trace (off), or a new lead (on).
    mail_capture_lead_rule: bool = False
    # The built-in SMTP receiver for mail BCC'd or forwarded to the logging address: off
    # (0) unless a port is set; started by `consentry serve` or `consentry mail receive`.
    smtp_receiver_port: int = 0
    smtp_receiver_host: str = "127.0.0.1"
    capture_address: str = ""
    # The service desk's address on the same receiver: mail to it opens or continues a
    # case (server.servicedesk.inbound). Replies go out from CONSENTRY_MAIL_FROM.
    support_address: str = ""
    # Whose captured mail the receiver files it under when the sender is not a staff user.
    capture_owner_id: int = 0
    mail_sync_interval_seconds: int = 300

    def __post_init__(self) -> None:
        if self.db_pool_size < 1:
            raise ConfigurationError(f"db_pool_size must be at least 1, got {self.db_pool_size}")
        if self.report_min_group_size < MIN_GROUP_SIZE_FLOOR:
            raise ConfigurationError(
                f"report_min_group_size must be at least {MIN_GROUP_SIZE_FLOOR}, "
                f"got {self.report_min_group_size}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(PREFIX + name)
            return value if value not in (None, "") else None

        home = Path(get("HOME") or "consentry-data")
        key_file = get("MASTER_KEY_FILE")
        register_file = get("ERASURE_REGISTER_FILE")
        idle = _positive_int("SESSION_IDLE_MINUTES", get("SESSION_IDLE_MINUTES"), 60)
        absolute = _positive_int("SESSION_ABSOLUTE_HOURS", get("SESSION_ABSOLUTE_HOURS"), 12)
        signing_key_file = get("AUDIT_SIGNING_KEY_FILE")
        recipients = tuple(
            address.strip()
            for address in (get("ALERT_RECIPIENTS") or "").split(",")
            if address.strip()
        )
        return cls(
            home=home,
            database_url=get("DATABASE_URL") or "",
            db_pool_size=_positive_int("DB_POOL_SIZE", get("DB_POOL_SIZE"), 10),
            master_key_file=Path(key_file) if key_file else None,
            master_key_env=get("MASTER_KEY"),
            backup_retention_days=_positive_int(
                "BACKUP_RETENTION_DAYS", get("BACKUP_RETENTION_DAYS"), 35
            ),
            erasure_register_file=Path(register_file) if register_file else None,
            basis_lapse_grace_days=_positive_int(
                "BASIS_LAPSE_GRACE_DAYS", get("BASIS_LAPSE_GRACE_DAYS"), 30
            ),
            kek_rotation_days=_positive_int("KEK_ROTATION_DAYS", get("KEK_ROTATION_DAYS"), 1)
            if get("KEK_ROTATION_DAYS") not in (None, "0")
            else 0,
            session_secret=get("SESSION_SECRET"),
            demo=_flag("DEMO", get("DEMO"), False),
            cookie_secure=_flag("COOKIE_SECURE", get("COOKIE_SECURE"), True),
            session_idle_minutes=idle,
            session_absolute_hours=absolute,
            default_phone_region=(get("PHONE_REGION") or "GB").upper(),
            log_level=(get("LOG_LEVEL") or "INFO").upper(),
            log_json=_flag("LOG_JSON", get("LOG_JSON"), True),
            audit_signing_key_file=Path(signing_key_file) if signing_key_file else None,
            audit_signing_key_env=get("AUDIT_SIGNING_KEY"),
            seal_interval_ms=_positive_int("SEAL_INTERVAL_MS", get("SEAL_INTERVAL_MS"), 250),
            audit_witness_file=Path(witness) if (witness := get("AUDIT_WITNESS_FILE")) else None,
            audit_stall_seconds=_positive_int(
                "AUDIT_STALL_SECONDS", get("AUDIT_STALL_SECONDS"), 10
            ),
            app_role=get("APP_ROLE"),
            smtp_host=get("SMTP_HOST"),
            smtp_port=_positive_int("SMTP_PORT", get("SMTP_PORT"), 25),
            smtp_username=get("SMTP_USERNAME"),
            smtp_password=get("SMTP_PASSWORD"),
            smtp_starttls=_flag("SMTP_STARTTLS", get("SMTP_STARTTLS"), False),
            smtp_tls=_flag(
                "SMTP_TLS",
                get("SMTP_TLS"),
                get("SMTP_PORT") == "465"
                and not _flag("SMTP_STARTTLS", get("SMTP_STARTTLS"), False),
            ),
            smtp_ca_file=Path(ca) if (ca := get("SMTP_CA_FILE")) else None,
            mail_from=get("MAIL_FROM") or "consentry@localhost",
            alert_recipients=recipients,
            controller_name=(get("CONTROLLER_NAME") or "").strip()
            or (DEMO_CONTROLLER_NAME if _flag("DEMO", get("DEMO"), False) else ""),
            controller_contact=get("CONTROLLER_CONTACT")
            or ("privacy@demo.example" if _flag("DEMO", get("DEMO"), False) else "")
            or cls.controller_contact,
            dpo_contact=get("DPO_CONTACT") or "",
            export_review=_flag("EXPORT_REVIEW", get("EXPORT_REVIEW"), True),
            public_url=(get("PUBLIC_URL") or "http://127.0.0.1:8000").rstrip("/"),
            web_form_owner_id=_positive_int("WEB_FORM_OWNER_ID", get("WEB_FORM_OWNER_ID"), 1)
            if get("WEB_FORM_OWNER_ID")
            else 0,
            web_form_team=get("WEB_FORM_TEAM") or "sales",
            web_form_min_seconds=_positive_int(
                "WEB_FORM_MIN_SECONDS", get("WEB_FORM_MIN_SECONDS"), 3
            ),
            web_form_free_submissions=_positive_int(
                "WEB_FORM_FREE_SUBMISSIONS", get("WEB_FORM_FREE_SUBMISSIONS"), 10
            ),
            api_token_rate_per_minute=_positive_int(
                "API_TOKEN_RATE_PER_MINUTE", get("API_TOKEN_RATE_PER_MINUTE"), 600
            ),
            report_min_group_size=_min_group_size(get("REPORT_MIN_GROUP_SIZE")),
            dp_epsilon_per_month=_positive_float(
                "DP_EPSILON_PER_MONTH", get("DP_EPSILON_PER_MONTH"), 5.0
            ),
            outbound_allow=tuple(
                r.strip() for r in (get("OUTBOUND_ALLOW") or "").split(",") if r.strip()
            ),
            score_currency=_currency_code("SCORE_CURRENCY", get("SCORE_CURRENCY") or "EUR"),
            score_rates=_rates(
                get("SCORE_RATES")
                or (DEMO_SCORE_RATES if _flag("DEMO", get("DEMO"), False) else None)
            ),
            mail_capture_content=_mail_capture_content(get("MAIL_CAPTURE_CONTENT")),
            mail_capture_lead_rule=_flag(
                "MAIL_CAPTURE_LEAD_RULE", get("MAIL_CAPTURE_LEAD_RULE"), False
            ),
            smtp_receiver_port=_port_or_off("SMTP_RECEIVER_PORT", get("SMTP_RECEIVER_PORT")),
            smtp_receiver_host=get("SMTP_RECEIVER_HOST") or "127.0.0.1",
            capture_address=(get("CAPTURE_ADDRESS") or "").strip().lower(),
            support_address=(get("SUPPORT_ADDRESS") or "").strip().lower(),
            capture_owner_id=_positive_int("CAPTURE_OWNER_ID", get("CAPTURE_OWNER_ID"), 1)
            if get("CAPTURE_OWNER_ID")
            else 0,
            mail_sync_interval_seconds=_positive_int(
                "MAIL_SYNC_INTERVAL_SECONDS", get("MAIL_SYNC_INTERVAL_SECONDS"), 300
            ),
        )

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]  # dataclasses.replace is untyped in kwargs

    @property
    def resolved_database_url(self) -> str:
        """The database URL; by default a SQLite file inside the data directory."""
        return self.database_url or f"sqlite:///{self.home / 'consentry.sqlite3'}"

    @property
    def resolved_master_key_file(self) -> Path:
        return self.master_key_file or self.home / "master.key"

    @property
    def resolved_erasure_register_file(self) -> Path:
        """Beside the master key file by default: it travels with the keys, not the data."""
        return self.erasure_register_file or (
            self.resolved_master_key_file.parent / "erasure-register.jsonl"
        )

    @property
    def resolved_audit_signing_key_file(self) -> Path:
        return self.audit_signing_key_file or self.home / "audit-signing.key"

    @property
    def session_secret_file(self) -> Path:
        return self.home / "session.secret"

    @property
    def is_postgres(self) -> bool:
        return self.resolved_database_url.startswith(("postgresql://", "postgres://"))


_current: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current


def set_settings(settings: Settings) -> Settings:
    """Install explicit settings (the CLI after parsing flags, tests)."""
    global _current
    _current = settings
    return settings
