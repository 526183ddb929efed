"""Everything a request needs, built once per process from the settings."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import partial
from pathlib import Path
from typing import Any

from litestar.datastructures import State
from litestar.di import Provide

from audit.alerts.engine import AlertEngine
from audit.log import AuditLog
from audit.signing import SigningKeyMissing, TreeHeadSigner, load_signing_key, write_signing_key
from audit.trail import AuditTrail
from audit.witness import WitnessFile
from policy.enforcer import PolicyEngine
from server.analytics.model import ValueRates
from server.analytics.service import CustomerScores
from server.auth.directory import ActiveStaff
from server.auth.service import StaffAccounts
from server.auth.tokens import ApiTokens
from server.campaigns.service import Campaigns
from server.consent.model import SUBJECT_ACTOR
from server.consent.service import ConsentEngine
from server.dsr.erasure import Erasure
from server.dsr.erasure_runs import ErasureRuns
from server.dsr.export import SubjectExports
from server.dsr.holds import LegalHolds
from server.dsr.lapse import BasisReview
from server.dsr.receipts import fulfil_erasure_with_receipt
from server.dsr.registers import merge_blockers
from server.dsr.requests import DataRequest, DataSubjectRequests
from server.dsr.restriction import Restrictions
from server.dsr.retention import Retention
from server.feedback.service import Feedback, build_feedback
from server.gateway import Gateway
from server.knowledge.service import KnowledgeBase
from server.mail import Mailer
from server.mailcapture.service import Mailboxes
from server.outbound import Destinations
from server.outbox.service import MailOutbox, PurposeMail
from server.pipelines.service import Pipelines
from server.portal.service import Portal
from server.recipients.notices import AcknowledgementTokens, RecipientNotices
from server.recipients.service import Recipients
from server.reports.builder import ReportBuilder
from server.reports.privacy import PrivacyLedger
from server.servicedesk.service import ServiceDesk
from server.settings import ConfigurationError, Settings
from server.vault import (
    EnvKeyProvider,
    FileKeyProvider,
    KeyProvider,
    MasterKeyMissing,
    Vault,
    write_key_file,
)
from server.vault.register import ErasureRegister
from server.vault.rotation import KeyRotation
from server.webhooks.outbox import EventOutbox
from server.webhooks.queue import WebhookSender
from server.webhooks.service import Webhooks
from server.wiring import Later


@dataclass(frozen=True)
class Services:
    settings: Settings
    gateway: Gateway
    accounts: StaffAccounts
    audit: AuditLog
    policy: PolicyEngine
    audit_trail: AuditTrail
    mailer: Mailer
    alerts: AlertEngine
    consent: ConsentEngine
    requests: DataSubjectRequests
    portal: Portal
    erasure: Erasure  # with .holds and .restrictions
    retention: Retention
    pipelines: Pipelines
    campaigns: Campaigns
    tokens: ApiTokens  # API tokens: personal and service accounts (server.auth.tokens)
    webhooks: Webhooks
    recipients: Recipients
    analytics: CustomerScores  # customer scores under profiling (server.analytics)
    # Per-feature services that keep nothing per request, built here once so handlers
    # take them by name (issue 18) instead of building them from the whole container.
    report_builder: ReportBuilder  # ad-hoc aggregates (server.reports.builder)
    feedback: Feedback  # surveys and their answers (server.feedback)
    knowledge: KnowledgeBase  # help articles, staff and portal (server.knowledge)
    mailboxes: Mailboxes  # staff mailboxes captured from (server.mailcapture)
    service_desk: ServiceDesk  # cases, queues and SLAs (server.servicedesk)
    exports: SubjectExports  # a person's signed export (server.dsr.export)
    # Where user-entered hosts may make the server connect (server/outbound.py).
    destinations: Destinations = field(default_factory=Destinations)
    # KEK rotation and pruning; None when the master key comes from CONSENTRY_MASTER_KEY
    # (one secret, one version: rotate by moving to a key file).
    key_rotation: KeyRotation | None = None
    # Alert and request e-mails that failed are retried from here (server/outbox).
    mail_outbox: MailOutbox | None = None
    # Erasures started in the console, run in the background (server/dsr/erasure_runs.py).
    erasure_runs: ErasureRuns | None = None


def service_dependencies() -> dict[str, Provide]:
    """Each service as a Litestar dependency named as its field here: a handler asks for
    ``gateway: NamedDependency[Gateway]``, never for the whole container. The providers
    hand out the instances ``create_app`` built once and keeps in ``app.state.services``
    (no per-request construction, no thread hop). Apps built without services (tests
    that only list routes) declare the same names, so handlers still resolve."""
    return {f.name: Provide(_provider(f.name), sync_to_thread=False) for f in fields(Services)}


def _provider(name: str) -> Callable[[State], Any]:
    def provide(state: State) -> Any:
        return getattr(state.services, name)

    return provide


def load_key_provider(settings: Settings) -> KeyProvider:
    """The master key source. In demo mode a missing key file is created on the spot."""
    path = settings.resolved_master_key_file
    if settings.demo and not settings.master_key_env and not path.exists():
        write_key_file(path)
    try:
        if settings.master_key_env:
            return EnvKeyProvider(settings.master_key_env)
        return FileKeyProvider(path)
    except MasterKeyMissing as exc:
        raise ConfigurationError(str(exc)) from None


def load_audit_signer(settings: Settings) -> TreeHeadSigner:
    """The Ed25519 key that signs tree heads; in demo mode a missing key file is created."""
    path = settings.resolved_audit_signing_key_file
    if settings.demo and not settings.audit_signing_key_env and not path.exists():
        write_signing_key(path)
    try:
        return load_signing_key(path, settings.audit_signing_key_env)
    except SigningKeyMissing as exc:
        raise ConfigurationError(str(exc)) from None


def ensure_session_secret(path: Path) -> None:
    """Create the session secret file (mode 0600) if it does not exist yet."""
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(48) + "\n")


def load_session_secret(settings: Settings) -> bytes:
    if settings.session_secret:
        return settings.session_secret.encode()
    path = settings.session_secret_file
    if settings.demo:
        ensure_session_secret(path)
    if not path.exists():
        raise ConfigurationError(
            f"no session secret: set CONSENTRY_SESSION_SECRET or create {path} "
            "with `consentry keys init`"
        )
    return path.read_text().strip().encode()


def build_services(settings: Settings) -> Services:
    """Every service, built once and completely: each gets its collaborators through its
    constructor and nothing is assigned onto it afterwards (tests/test_code_shape.py).
    Where two services need each other, the one built first gets a ``Later`` of the other
    (server/wiring.py), set here as soon as that one exists."""
    keys = load_key_provider(settings)
    session_secret = load_session_secret(settings)
    signer = load_audit_signer(settings)
    vault = Vault(
        keys,
        default_phone_region=settings.default_phone_region,
        register=ErasureRegister(settings.resolved_erasure_register_file),
    )
    # Art. 19 acknowledgement links hang off their own derived key (stable across rotation).
    ack_tokens = AcknowledgementTokens(vault.derived_key(b"consentry/recipients/ack/v1"))
    outbox = EventOutbox(RecipientNotices(ack_tokens))
    # Every entry is MAC'd under a key derived from the signing key: outside the database.
    # Events appended in a change's transaction also feed the webhook/notice outbox.
    audit = AuditLog(signer.entry_mac(), outbox=outbox.record)
    policy = PolicyEngine()
    # The services the ones below need before they can be built (cycles: server/wiring.py).
    built: Later[Services] = Later("the services")
    alerts_later: Later[AlertEngine] = Later("the alert engine")
    pipelines_later: Later[Pipelines] = Later("the pipelines")
    lapse_later: Later[BasisReview] = Later("the basis review")
    portal_later: Later[Portal] = Later("the portal")
    mailer = Mailer(settings)
    # Consent links and IP hashes get their own subkey of the master key's index root: it
    # never rotates (blind indexes depend on it too), so an unsubscribe link sent years
    # ago keeps working after session secrets or KEKs are rotated.
    consent_secret = vault.derived_key(b"consentry/consent/v1")
    consent = ConsentEngine(
        audit, mailer, settings, consent_secret, vault,
        # When a person's last consent goes, nothing else keeping them: erasure review.
        lapse_listeners=[lapse_later.calls(lambda review: review.consider)],
    )  # fmt: skip
    restrictions = Restrictions(audit)
    gateway = Gateway(
        vault, policy, audit, ActiveStaff(),
        default_region=settings.default_phone_region,
        subject_basis=consent,  # purposes resting on each person's consent ask it
        restrictions=restrictions,  # restricted people reach only storage purposes
        merge_blockers=merge_blockers,  # holds, open requests, erasure (server.dsr)
        # Deal stages belong to the deal's pipeline (configuration): checked on every write.
        record_rules={"deal": pipelines_later.calls(lambda p: p.deal_rule)},
    )  # fmt: skip
    pipelines = Pipelines(audit, policy, gateway)
    pipelines_later.set(pipelines)
    mail_outbox = MailOutbox(
        mailer,
        gateway,
        audit,
        on_settled={"alert": alerts_later.calls(lambda a: a.delivery_settled)},
    )
    alerts = AlertEngine(audit, PurposeMail(mail_outbox, "alert"), settings)
    alerts_later.set(alerts)
    accounts = StaffAccounts(
        audit,
        session_secret,
        idle_minutes=settings.session_idle_minutes,
        absolute_hours=settings.session_absolute_hours,
        sealing=gateway,
        policy=policy,
    )
    witness = settings.audit_witness_file
    trail = AuditTrail(
        signer,
        state_file=settings.home / "audit-verified.json",
        mac=audit.mac,
        witness=WitnessFile(witness) if witness else None,
    )
    scores = CustomerScores(  # profiling (server.analytics)
        gateway,
        consent,
        gateway,
        audit,
        rates=ValueRates(settings.score_currency, dict(settings.score_rates)),
    )
    erasure = Erasure(gateway, audit, LegalHolds(audit), restrictions)
    requests = DataSubjectRequests(
        gateway, audit, mailer, settings, outbox=mail_outbox,
        fulfillers={
            # A finished erasure e-mails its signed receipt with the fulfilment notice.
            "erasure": built.calls(
                lambda s: partial(fulfil_erasure_with_receipt, s.erasure, s.audit_trail, s.settings)
            ),
            "restriction": partial(restrict_for_request, restrictions),
            # Staff-fulfilled access and portability requests: an expiring link.
            "access": portal_later.calls(lambda p: p.send_download_link),
            "portability": portal_later.calls(lambda p: p.send_download_link),
        },
    )  # fmt: skip
    lapse = BasisReview(
        gateway, consent, requests, erasure.holds,
        grace_days=settings.basis_lapse_grace_days, stage_keys=pipelines.stage_keys_of_kind,
    )  # fmt: skip
    lapse_later.set(lapse)
    exports = SubjectExports(consent, gateway, scores, settings, trail, audit)
    # The customer portal: its links, cookies and throttle keys hang off one derived key.
    portal = Portal(
        gateway, audit, mailer, settings, requests, vault.derived_key(b"consentry/portal/v1"),
        exporter=partial(export_for_subject, exports),
    )  # fmt: skip
    portal_later.set(portal)
    # Hosts typed by users (webhook URLs, mailboxes, calendars): public addresses only,
    # unless the deployment trusts a private range (server/outbound.py).
    destinations = Destinations(settings.outbound_allow)
    feedback = build_feedback(gateway, policy, audit, consent, mail_outbox, settings)
    services = Services(
        settings, gateway, accounts, audit, policy, trail, mailer, alerts, consent, requests,
        portal, erasure=erasure,
        retention=Retention(
            gateway, erasure, audit, stage_keys=pipelines.stage_keys_of_kind, lapse=lapse
        ),
        pipelines=pipelines,
        campaigns=Campaigns(
            audit, policy, gateway, consent, mailer, scores,
            survey_links=feedback.campaign_link,
        ),
        # Token secrets are kept as HMACs under their own subkey of the index root.
        tokens=ApiTokens(
            audit,
            policy,
            vault.derived_key(b"consentry/api-tokens/v1"),
            rate_per_minute=settings.api_token_rate_per_minute,
        ),
        webhooks=Webhooks(
            audit, WebhookSender(gateway, destinations=destinations), destinations
        ),
        destinations=destinations,
        recipients=Recipients(audit, mailer, ack_tokens, settings.public_url),
        analytics=scores,
        feedback=feedback,
        exports=exports,
        service_desk=ServiceDesk(gateway, audit, mail_outbox, settings, policy, requests),
        mailboxes=Mailboxes(gateway, audit, destinations),
        knowledge=KnowledgeBase(audit, policy, default_region=settings.default_phone_region),
        report_builder=ReportBuilder(
            gateway,
            PrivacyLedger(settings.dp_epsilon_per_month),
            settings.report_min_group_size,
        ),
        key_rotation=KeyRotation(vault, keys, audit) if isinstance(keys, FileKeyProvider) else None,
        mail_outbox=mail_outbox,
        erasure_runs=ErasureRuns(requests, erasure),
    )  # fmt: skip
    built.set(services)
    return services


async def restrict_for_request(restrictions: Restrictions, request: DataRequest, by: str) -> None:
    """The ``restriction`` fulfiller: the person is restricted until someone lifts it."""
    await restrictions.restrict(
        request.subject_id, "data_subject_request", by=by, request_id=request.id
    )


async def export_for_subject(exports: SubjectExports, subject_id: str) -> bytes:
    """The signed export ZIP a person downloads from the portal (audited as theirs)."""
    bundle = await exports.build(subject_id, requested_by=SUBJECT_ACTOR)
    return bundle.zip_bytes
