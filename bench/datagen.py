"""Deterministic, fictional customer data for the benchmarks.

Both systems must load *identical* rows, so rows are a pure function of (seed, index):
the same index always yields the same contact, and the e-mail of contact ``i`` can be
recomputed later (for search scenarios) without keeping a million strings around.

Faker is far too slow to call per field for a million rows (tens of microseconds a
call), so it fills small pools once and rows are assembled from the pools with a seeded
``random.Random``. Values are already in their canonical form (lower-case e-mail, E.164
phone, ISO dates), so the plaintext baseline stores exactly what Consentry stores after
its own normalisation.

Deals and interactions hang off contacts in fixed proportions (by default one deal for
every fourth contact, three interactions per contact, those of a contact with a deal
about that deal), so which contact a row belongs to is arithmetic on its index too.

E-mail addresses use the reserved example domains and phone numbers Ofcom's ranges kept
for drama, so no real person can be contacted by mistake.
"""

from __future__ import annotations

import datetime as dt
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from faker import Faker

from server.datamap import CHANNELS, CURRENCIES, DEAL_STAGES, LOST_REASONS

CONTACTS_PER_ORGANIZATION = 25
CONTACTS_PER_DEAL = 4
INTERACTIONS_PER_CONTACT = 3
DEAL_KINDS = (
    "Annual licence",
    "Support renewal",
    "Pilot project",
    "Framework agreement",
    "Upgrade",
    "Onboarding package",
    "Consulting days",
    "Hardware refresh",
)
STAGE_PROBABILITY = {"qualification": 10, "proposal": 40, "negotiation": 70, "won": 100, "lost": 0}
# Interactions happen over two years before this moment (fixed: rows must not depend on
# the day the benchmark runs).
INTERACTION_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
INTERACTION_SPAN_S = 2 * 365 * 24 * 3600
STAGES = ("lead", "prospect", "customer", "customer", "former_customer")
SOURCES = ("web", "event", "referral", "import", "phone", "partner", "manual")
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
COUNTRIES = ("GB", "GB", "GB", "GB", "IE", "FR", "DE", "NL", "US")
EMAIL_DOMAINS = ("example.com", "example.org", "example.net")
# Ofcom's drama ranges (area code + local prefix, then three free digits), all of which
# `phonenumbers` accepts as valid numbers.
PHONE_PREFIXES = (
    "+442079460",
    "+441134960",
    "+441144960",
    "+441164960",
    "+441174960",
    "+441184960",
    "+441214960",
    "+441314960",
    "+441414960",
    "+441514960",
    "+441614960",
    "+442896496",
    "+442920180",
)
_NOT_LOCAL_PART = re.compile(r"[^a-z0-9]+")


def organizations_for(contacts: int) -> int:
    """One organization per 25 contacts (at least one), like a typical B2B book."""
    return max(1, contacts // CONTACTS_PER_ORGANIZATION)


def deals_for(contacts: int, contacts_per_deal: int = CONTACTS_PER_DEAL) -> int:
    """Contacts 0, k, 2k, ... have one deal each (none when ``contacts_per_deal`` is 0)."""
    if contacts_per_deal <= 0:
        return 0
    return (contacts + contacts_per_deal - 1) // contacts_per_deal


def _slug(text: str) -> str:
    return _NOT_LOCAL_PART.sub("", text.lower()) or "x"


@dataclass(frozen=True)
class _Pools:
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    companies: tuple[str, ...]
    jobs: tuple[str, ...]
    streets: tuple[str, ...]
    cities: tuple[str, ...]
    postcodes: tuple[str, ...]
    sentences: tuple[str, ...]


def _pools(seed: int) -> _Pools:
    fake = Faker("en_GB")
    fake.seed_instance(seed)

    def many(make: Any, n: int) -> tuple[str, ...]:
        return tuple(make() for _ in range(n))

    return _Pools(
        first_names=many(fake.first_name, 600),
        last_names=many(fake.last_name, 800),
        companies=many(fake.company, 500),
        jobs=many(lambda: fake.job()[:120], 300),
        streets=many(fake.street_address, 1000),
        cities=many(fake.city, 300),
        postcodes=many(fake.postcode, 1000),
        sentences=many(lambda: fake.sentence(nb_words=12), 400),
    )


class CustomerData:
    """Rows for ``contacts`` contacts, their organizations, deals and interactions,
    reproducible from ``seed``."""

    def __init__(
        self,
        contacts: int,
        *,
        seed: int = 2026,
        contacts_per_deal: int = CONTACTS_PER_DEAL,
        interactions_per_contact: int = INTERACTIONS_PER_CONTACT,
    ) -> None:
        self.contacts = contacts
        self.organizations = organizations_for(contacts)
        self.contacts_per_deal = contacts_per_deal
        self.deals = deals_for(contacts, contacts_per_deal)
        self.interactions_per_contact = interactions_per_contact
        self.interactions = contacts * interactions_per_contact
        self.seed = seed
        self._pools = _pools(seed)

    @property
    def rows(self) -> int:
        return self.organizations + self.contacts + self.deals + self.interactions

    def _rng(self, kind: str, index: int) -> random.Random:
        # A per-row generator keeps rows independent of the order they are produced in.
        return random.Random(f"{self.seed}:{kind}:{index}")

    def _names(self, index: int) -> tuple[str, str]:
        rng = self._rng("name", index)
        return rng.choice(self._pools.first_names), rng.choice(self._pools.last_names)

    def email(self, index: int) -> str:
        """The e-mail of contact ``index``: unique by construction (the index is in it)."""
        first, last = self._names(index)
        domain = EMAIL_DOMAINS[index % len(EMAIL_DOMAINS)]
        return f"{_slug(first)}.{_slug(last)}.{index}@{domain}"

    def organization(self, index: int) -> dict[str, Any]:
        rng = self._rng("org", index)
        company = rng.choice(self._pools.companies)
        return {
            "name": f"{company} ({index})",
            "domain": f"org{index}.example",
            "industry": rng.choice(INDUSTRIES),
            "employee_count": rng.randint(2, 5000),
            "annual_revenue": rng.randint(50, 50_000) * 1000,
            "email": f"info.{index}@example.com",
            "phone": rng.choice(PHONE_PREFIXES) + f"{rng.randint(0, 999):03d}",
            "address_line": rng.choice(self._pools.streets),
            "city": rng.choice(self._pools.cities),
            "postcode": rng.choice(self._pools.postcodes),
            "country": rng.choice(COUNTRIES),
            "notes": rng.choice(self._pools.sentences),
        }

    def organization_of(self, contact_index: int) -> int:
        """Contacts of one company are consecutive, as in a typical import file."""
        return (contact_index // CONTACTS_PER_ORGANIZATION) % self.organizations

    def contact(self, index: int) -> dict[str, Any]:
        """Contact ``index`` without ``organization_id`` (each loader maps its own ids)."""
        rng = self._rng("contact", index)
        first, last = self._names(index)
        born = dt.date(1945, 1, 1) + dt.timedelta(days=rng.randint(0, 60 * 365))
        return {
            "first_name": first,
            "last_name": last,
            "email": self.email(index),
            "phone": rng.choice(PHONE_PREFIXES) + f"{rng.randint(0, 999):03d}",
            "job_title": rng.choice(self._pools.jobs),
            "birth_date": born.isoformat(),
            "address_line": rng.choice(self._pools.streets),
            "city": rng.choice(self._pools.cities),
            "postcode": rng.choice(self._pools.postcodes),
            "country": rng.choice(COUNTRIES),
            "notes": rng.choice(self._pools.sentences),
            "lifecycle_stage": rng.choice(STAGES),
            "source": rng.choice(SOURCES),
        }

    def organization_batches(self, size: int) -> Iterator[list[dict[str, Any]]]:
        for start in range(0, self.organizations, size):
            yield [
                self.organization(i) for i in range(start, min(start + size, self.organizations))
            ]

    def contact_batches(self, size: int) -> Iterator[tuple[range, list[dict[str, Any]]]]:
        """Batches of contacts with the index range they cover (to look up organizations)."""
        for start in range(0, self.contacts, size):
            span = range(start, min(start + size, self.contacts))
            yield span, [self.contact(i) for i in span]

    def deal_contact(self, deal_index: int) -> int:
        """The contact (generator index) deal ``deal_index`` is about."""
        return deal_index * self.contacts_per_deal

    def deal_of(self, contact_index: int) -> int | None:
        """The deal (generator index) of a contact, if it has one."""
        if not self.contacts_per_deal or contact_index % self.contacts_per_deal:
            return None
        return contact_index // self.contacts_per_deal

    def interaction_contact(self, interaction_index: int) -> int:
        """Interactions of one contact are consecutive."""
        return interaction_index // self.interactions_per_contact

    def deal(self, index: int) -> dict[str, Any]:
        """Deal ``index`` without ``contact_id`` / ``organization_id`` (loaders map ids)."""
        rng = self._rng("deal", index)
        stage = rng.choice(DEAL_STAGES)
        close = dt.date(2025, 1, 1) + dt.timedelta(days=rng.randint(0, 2 * 365))
        return {
            "title": f"{rng.choice(DEAL_KINDS)} {index}",
            "amount": rng.randint(5, 5_000) * 10_000,  # minor units
            "currency": rng.choice(CURRENCIES[:3]),
            "stage": stage,
            "probability": STAGE_PROBABILITY[stage],
            "expected_close": close.isoformat(),
            "lost_reason": rng.choice(LOST_REASONS) if stage == "lost" else None,
            "notes": rng.choice(self._pools.sentences),
        }

    def interaction(self, index: int) -> dict[str, Any]:
        """Interaction ``index`` without ``contact_id`` / ``deal_id`` (loaders map ids).

        ``occurred_at`` is in Consentry's canonical UTC spelling, so both systems hold
        the same value.
        """
        rng = self._rng("interaction", index)
        moment = INTERACTION_EPOCH - dt.timedelta(seconds=rng.randint(0, INTERACTION_SPAN_S))
        return {
            "channel": rng.choice(CHANNELS),
            "direction": rng.choice(("inbound", "outbound")),
            "occurred_at": moment.isoformat(),
            "summary": rng.choice(self._pools.sentences),
        }

    def deal_batches(self, size: int) -> Iterator[tuple[range, list[dict[str, Any]]]]:
        for start in range(0, self.deals, size):
            span = range(start, min(start + size, self.deals))
            yield span, [self.deal(i) for i in span]

    def interaction_batches(self, size: int) -> Iterator[tuple[range, list[dict[str, Any]]]]:
        for start in range(0, self.interactions, size):
            span = range(start, min(start + size, self.interactions))
            yield span, [self.interaction(i) for i in span]
