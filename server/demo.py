"""Demo data: a few hundred realistic, entirely fictional customers, written through the
gateway like any other data (so it is encrypted and audited exactly as real data would be).

Phone numbers come from Ofcom's range reserved for drama (020 7946 0xxx) and e-mail
addresses from the reserved example domains, so no real person can be contacted by mistake.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from faker import Faker

from server.auth.service import StaffAccounts, StaffIdentity
from server.consent.service import ConsentEngine
from server.gateway import Actor, Gateway

DEMO_ADMIN = "admin@staff.example.com"
DEMO_STAFF = (
    ("sales.north@staff.example.com", "sales", "north"),
    ("sales.south@staff.example.com", "sales", "south"),
    ("support.north@staff.example.com", "support", "north"),
    ("marketing@staff.example.com", "marketing", "marketing"),
    ("compliance@staff.example.com", "compliance", "compliance"),
)
# The demo staff whose customers the seed makes (the others own no records).
DEMO_RECORD_OWNERS = frozenset({"sales", "support"})
INDUSTRIES = (
    "Retail",
    "Manufacturing",
    "Software",
    "Logistics",
    "Healthcare",
    "Hospitality",
    "Finance",
    "Education",
    "Energy",
    "Media",
)


@dataclass(frozen=True)
class DemoLogin:
    email: str
    role: str
    password: str


async def ensure_demo_staff(accounts: StaffAccounts) -> list[DemoLogin]:
    """Create the demo staff (first run) or give them fresh one-time passwords (later runs)."""
    logins: list[DemoLogin] = []
    for email, role, team in ((DEMO_ADMIN, "admin", "hq"), *DEMO_STAFF):
        identity = await accounts.find_by_email(email)
        if identity is None:
            _, password = await accounts.create_user(
                email, role, team=team, actor_id="system:demo-seed"
            )
        else:
            password = await accounts.reset_password(identity.user_id, actor_id="system:demo-seed")
        logins.append(DemoLogin(email, role, password))
    return logins


def _demo_organization(rng: random.Random, fake: Faker, phones: Iterator[str]) -> dict[str, Any]:
    """One fictional British company (unique name and domain)."""
    return {
        "name": fake.unique.company(),
        "domain": fake.unique.domain_word() + ".example",
        "industry": rng.choice(INDUSTRIES),
        "employee_count": rng.randint(2, 5000),
        "annual_revenue": rng.randint(50, 50_000) * 1000,
        "phone": next(phones),
        "address_line": fake.street_address(),
        "city": fake.city(),
        "postcode": fake.postcode(),
        "country": "GB",
    }


async def seed_demo_data(
    gateway: Gateway,
    owners: list[StaffIdentity],
    *,
    contacts: int = 300,
    organizations: int = 40,
    seed: int = 2026,
    progress: Callable[[int], None] | None = None,
    consent: ConsentEngine | None = None,
) -> int:
    """Create organizations and contacts owned by the demo sales and support staff, and
    deals, interactions and cases about some of those contacts."""
    fake = Faker("en_GB")
    Faker.seed(seed)
    rng = random.Random(seed)  # noqa: S311 - fictional demo data, not security
    system = Actor.system("demo-seed")
    phones = demo_phones(rng)
    org_ids: list[tuple[str, StaffIdentity]] = []
    for _ in range(organizations):
        owner = rng.choice(owners)
        record = await gateway.create(
            system,
            "organization",
            _demo_organization(rng, fake, phones),
            owner_id=owner.user_id,
            team=owner.team,
        )
        org_ids.append((record.id, owner))
        if progress:
            progress(1)
    subjects: list[str] = []
    people: list[tuple[str, StaffIdentity]] = []
    stages = ("lead", "prospect", "customer", "customer", "former_customer")
    sources = ("web", "event", "referral", "import", "phone", "partner", "manual")
    for i in range(contacts):
        org_id, owner = rng.choice(org_ids)
        first, last = fake.first_name(), fake.last_name()
        contact = await gateway.create(
            system,
            "contact",
            {
                "first_name": first,
                "last_name": last,
                "email": f"{first}.{last}.{i}@example.com".lower().replace("'", ""),
                "phone": next(phones),
                "job_title": fake.job()[:120],
                "birth_date": fake.date_of_birth(minimum_age=18, maximum_age=80).isoformat(),
                "address_line": fake.street_address(),
                "city": fake.city(),
                "postcode": fake.postcode(),
                "country": "GB",
                "notes": fake.sentence(nb_words=12),
                "lifecycle_stage": rng.choice(stages),
                "source": rng.choice(sources),
                "organization_id": org_id,
            },
            owner_id=owner.user_id,
            team=owner.team,
        )
        subjects.append(contact.subject_id)
        people.append((contact.id, owner))
        if progress:
            progress(1)
    duplicated = await seed_demo_duplicates(gateway, system, people)
    activity = await seed_demo_activity(gateway, people, owners, rng, fake)
    if consent is not None:
        await seed_demo_consent(consent, subjects, rng)
    leads = await seed_demo_leads(gateway, owners, rng, fake, phones)
    return organizations + contacts + duplicated + activity + leads


async def seed_demo_duplicates(
    gateway: Gateway, system: Actor, people: list[tuple[str, StaffIdentity]]
) -> int:
    """Two people entered twice, as happens in real CRMs (a nickname, the same phone), so
    the duplicates page has something true to show - and nothing false."""
    made = 0
    for contact_id, owner in people[:2]:
        original = await gateway.read(system, "contact", contact_id)
        first = str(original.values["first_name"])
        again = {
            name: original.values[name]
            for name in ("last_name", "phone", "job_title", "city", "country", "organization_id")
            if original.values.get(name)
        }
        again["first_name"] = first[:-1] if len(first) > 4 else first + "e"
        again["source"] = "event"
        again["lifecycle_stage"] = "lead"
        await gateway.create(system, "contact", again, owner_id=owner.user_id, team=owner.team)
        made += 1
    return made


def demo_phones(rng: random.Random) -> Iterator[str]:
    """Distinct fictional numbers (Ofcom's drama ranges: London 020 7946 0000-0999, then
    Leeds 0113 496 0000-0999), shuffled. Numbers drawn with replacement gave 300 demo
    contacts some 45 shared numbers, and the duplicates page some 60 "same phone" pairs
    of plainly different people."""
    numbers = [f"+44 20 7946 {n:04d}" for n in range(1000)]
    numbers += [f"+44 113 496 {n:04d}" for n in range(1000)]
    rng.shuffle(numbers)
    return itertools.cycle(numbers)


DEMO_LEADS = 12
DEMO_LEAD_STATUSES = ("new", "new", "new", "contacted", "contacted", "qualified", "disqualified")


async def seed_demo_leads(
    gateway: Gateway,
    owners: list[StaffIdentity],
    rng: random.Random,
    fake: Faker,
    phones: Iterator[str] | None = None,
) -> int:
    """A dozen open leads for the sales staff, some qualified, ready to be converted."""
    system = Actor.system("demo-seed")
    phones = phones if phones is not None else demo_phones(rng)
    sellers = [o for o in owners if o.role == "sales"] or owners
    batches: dict[StaffIdentity, list[dict[str, Any]]] = defaultdict(list)
    for i in range(DEMO_LEADS):
        first, last = fake.first_name(), fake.last_name()
        status = rng.choice(DEMO_LEAD_STATUSES)
        lead: dict[str, Any] = {
            "first_name": first,
            "last_name": last,
            "email": f"{first}.{last}.lead{i}@example.org".lower().replace("'", ""),
            "phone": next(phones),
            "company_name": fake.company(),
            "message": fake.sentence(nb_words=12),
            "source": rng.choice(("web", "web", "event", "referral", "phone")),
            "status": status,
        }
        if status == "disqualified":
            lead["disqualified_reason"] = rng.choice(("no_budget", "not_a_fit", "unreachable"))
        batches[rng.choice(sellers)].append(lead)
    created = 0
    for owner, rows in batches.items():
        result = await gateway.create_many(
            system, "lead", rows, owner_id=owner.user_id, team=owner.team
        )
        created += len(result.created)
    return created


DEMO_DEAL_SHARE = 0.4  # of contacts with a deal
DEMO_CASE_SHARE = 0.2
DEMO_TASK_SHARE = 0.3  # of contacts with a follow-up task (and a note) for their owner
DEMO_LOST_REASONS = ("price", "competitor", "timing", "no_budget", "no_decision")


def _demo_deal(
    contact_id: str, rng: random.Random, fake: Faker, now: dt.datetime
) -> dict[str, Any]:
    """One deal of a demo contact, at any stage; a lost one says why."""
    stage = rng.choice(("qualification", "proposal", "negotiation", "won", "lost"))
    deal: dict[str, Any] = {
        "title": f"{fake.bs().capitalize()}"[:200],
        "amount": rng.randint(5, 500) * 10_000,
        "currency": rng.choice(("GBP", "GBP", "EUR", "USD")),
        "stage": stage,
        "probability": {"won": 100, "lost": 0}.get(stage, rng.choice((20, 40, 60, 80))),
        "expected_close": (now + dt.timedelta(days=rng.randint(-60, 120))).date().isoformat(),
        "contact_id": contact_id,
        "notes": fake.sentence(nb_words=10),
    }
    if stage == "lost":
        deal["lost_reason"] = rng.choice(DEMO_LOST_REASONS)
    return deal


async def seed_demo_activity(
    gateway: Gateway,
    people: list[tuple[str, StaffIdentity]],
    owners: list[StaffIdentity],
    rng: random.Random,
    fake: Faker,
) -> int:
    """Deals, interactions, cases, tasks and notes for some demo contacts, through the
    gateway's bulk path: one transaction per record type and owner keeps ``serve --demo``
    start-up quick. Most belong to the contact's owner; cases to a support agent."""
    system = Actor.system("demo-seed")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    support = [o for o in owners if o.role == "support"]
    deals: dict[StaffIdentity, list[dict[str, Any]]] = defaultdict(list)
    touches: dict[StaffIdentity, list[dict[str, Any]]] = defaultdict(list)
    cases: dict[StaffIdentity, list[dict[str, Any]]] = defaultdict(list)
    tasks: dict[StaffIdentity, list[dict[str, Any]]] = defaultdict(list)
    notes: dict[StaffIdentity, list[dict[str, Any]]] = defaultdict(list)
    for contact_id, owner in people:
        if rng.random() < DEMO_TASK_SHARE:  # something overdue, due today or this week
            due = now + dt.timedelta(hours=rng.randint(-48, 24 * 6))
            tasks[owner].append(
                {
                    "title": fake.sentence(nb_words=5).rstrip("."),
                    "due_at": due.isoformat(),
                    "priority": rng.choice(("low", "normal", "normal", "high")),
                    "remind_at": (due - dt.timedelta(hours=2)).isoformat(),
                    "contact_id": contact_id,
                }
            )
            notes[owner].append(
                {
                    "body": fake.sentence(nb_words=12),
                    "record_type": "contact",
                    "record_id": contact_id,
                }
            )
        if rng.random() < DEMO_DEAL_SHARE:
            deals[owner].append(_demo_deal(contact_id, rng, fake, now))
        for _ in range(rng.randint(0, 3)):
            touches[owner].append(
                {
                    "channel": rng.choice(("email", "phone_call", "meeting", "chat", "letter")),
                    "direction": rng.choice(("inbound", "outbound")),
                    "occurred_at": (now - dt.timedelta(hours=rng.randint(1, 24 * 90))).isoformat(),
                    "summary": fake.sentence(nb_words=14),
                    "contact_id": contact_id,
                }
            )
        if support and rng.random() < DEMO_CASE_SHARE:
            cases[rng.choice(support)].append(
                {
                    "title": fake.sentence(nb_words=5).rstrip("."),
                    "description": fake.paragraph(nb_sentences=3),
                    "kind": rng.choice(
                        ("service_request", "complaint", "product_return", "information_request")
                    ),
                    "priority": rng.choice(("low", "normal", "normal", "high", "urgent")),
                    "status": rng.choice(("open", "open", "pending", "resolved", "closed")),
                    "due_at": (now + dt.timedelta(hours=rng.randint(-48, 240))).isoformat(),
                    "contact_id": contact_id,
                }
            )
    created = 0
    for resource, batches in (
        ("deal", deals),
        ("interaction", touches),
        ("case", cases),
        ("task", tasks),
        ("note", notes),
    ):
        for owner, rows in batches.items():
            result = await gateway.create_many(
                system, resource, rows, owner_id=owner.user_id, team=owner.team
            )
            created += len(result.created)
    return created


DEMO_CONSENT_PEOPLE = 100
DEMO_NOTICE = (
    "Example Ltd keeps your name and contact details to look after your account. With your "
    "consent we also send you offers by e-mail or phone; you can withdraw at any time with "
    "the link in every message or in your preference centre. (A demo privacy notice.)"
)


async def seed_demo_consent(
    consent: ConsentEngine, subjects: list[str], rng: random.Random
) -> None:
    """A believable consent history: a notice, newsletter sign-ups (some later withdrawn),
    a few phone consents and objections - so the consent pages have something to show."""
    notice = await consent.current_notice() or await consent.publish_notice(
        "Privacy notice", DEMO_NOTICE, by="system:demo-seed"
    )
    for subject in subjects[:DEMO_CONSENT_PEOPLE]:  # each is a transaction: keep start-up quick
        roll = rng.random()
        if roll < 0.45:
            await consent.grant(
                subject,
                "marketing_email",
                "email",
                source="web_form",
                notice_version=notice.version,
                actor_id="subject",
                evidence={"form_id": "newsletter-signup"},
            )
            if roll < 0.08:
                await consent.withdraw(
                    subject, "marketing_email", "email", source="email_link", actor_id="subject"
                )
        if 0.45 <= roll < 0.55:
            await consent.grant(
                subject,
                "marketing_phone",
                "phone",
                source="phone",
                notice_version=notice.version,
                actor_id="system:demo-seed",
            )
        if roll > 0.97:
            await consent.object(subject, source="portal", actor_id="subject")
