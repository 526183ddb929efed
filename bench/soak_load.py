"""What a soak run puts into Consentry before it starts: sales reps and their customers.

Every simulated member of staff is a sales rep (the role that needs no second factor)
with their own book: organization ``j`` belongs to rep ``j % users``, and each contact,
with its deals and interactions, to the rep of its organization, so that every rep reads,
lists, searches and updates records in their own scope, as a sales rep does all day.
Rows go in through ``Gateway.create_many`` (validated, encrypted, audited), as in
``bench.consentry_target.load``, grouped by owner within each batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.consentry_target import TEAM
from bench.datagen import CONTACTS_PER_ORGANIZATION, CustomerData
from server import db
from server.gateway import Actor, Gateway
from server.migrate import apply_migrations
from server.services import build_services
from server.settings import Settings, set_settings

REP_EMAIL = "soak.rep{:03d}@staff.example.com"


@dataclass
class Rep:
    email: str
    password: str = field(repr=False)
    user_id: int
    contacts: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    organizations: list[str] = field(default_factory=list)


def contacts_needed(users: int) -> int:
    """Contacts needed so that every rep owns at least one organization."""
    return users * CONTACTS_PER_ORGANIZATION


async def prepare(
    env: dict[str, str],
    data: CustomerData,
    users: int,
    *,
    batch_size: int,
    progress: Callable[[int], None],
) -> list[Rep]:
    settings = set_settings(Settings.from_env(env))
    engine = db.set_engine(db.engine_for_url(settings.resolved_database_url))
    await db.start(engine)
    try:
        await apply_migrations()
        services = build_services(settings)
        reps = []
        for k in range(users):
            email = REP_EMAIL.format(k)
            identity, password = await services.accounts.create_user(
                email, "sales", team=TEAM, display_name=f"Soak rep {k}"
            )
            reps.append(Rep(email, password, identity.user_id))
        await _load(services.gateway, data, reps, batch_size=batch_size, progress=progress)
    finally:
        await db.stop(engine)
    return reps


async def _load(
    gateway: Gateway,
    data: CustomerData,
    reps: list[Rep],
    *,
    batch_size: int,
    progress: Callable[[int], None],
) -> None:
    actor = Actor.system("bench-soak")
    users = len(reps)

    def rep_of_contact(index: int) -> int:
        return data.organization_of(index) % users

    async def create(
        resource: str, indices: list[int], rows: list[dict[str, Any]], owner: Callable[[int], int]
    ) -> list[str]:
        """``rows`` (generator ``indices``) through create_many, one call per owner;
        returns the new ids in the order of ``rows``."""
        ids: list[str] = [""] * len(rows)
        groups: dict[int, list[int]] = {}
        for position, index in enumerate(indices):
            groups.setdefault(owner(index), []).append(position)
        for rep, positions in groups.items():
            async with db.write_transaction():
                result = await gateway.create_many(
                    actor,
                    resource,
                    [rows[p] for p in positions],
                    owner_id=reps[rep].user_id,
                    team=TEAM,
                )
            if result.rejected:
                raise RuntimeError(
                    f"Consentry rejected generated {resource} rows: {result.rejected}"
                )
            for p, new_id in zip(positions, result.created, strict=True):
                ids[p] = new_id
        progress(len(rows))
        return ids

    organizations: list[str] = []
    first = 0
    for batch in data.organization_batches(batch_size):
        indices = list(range(first, first + len(batch)))
        first += len(batch)
        organizations += await create("organization", indices, batch, lambda j: j % users)
    for j, org_id in enumerate(organizations):
        reps[j % users].organizations.append(org_id)

    contacts: list[str] = []
    for span, batch in data.contact_batches(batch_size):
        for index, values in zip(span, batch, strict=True):
            values["organization_id"] = organizations[data.organization_of(index)]
        contacts += await create("contact", list(span), batch, rep_of_contact)
    for i, contact_id in enumerate(contacts):
        rep = reps[rep_of_contact(i)]
        rep.contacts.append(contact_id)
        rep.emails.append(data.email(i))

    deals: list[str] = []
    for span, batch in data.deal_batches(batch_size):
        for index, values in zip(span, batch, strict=True):
            contact = data.deal_contact(index)
            values["contact_id"] = contacts[contact]
            values["organization_id"] = organizations[data.organization_of(contact)]
        deals += await create(
            "deal", list(span), batch, lambda d: rep_of_contact(data.deal_contact(d))
        )

    for span, batch in data.interaction_batches(batch_size):
        for index, values in zip(span, batch, strict=True):
            contact = data.interaction_contact(index)
            values["contact_id"] = contacts[contact]
            deal = data.deal_of(contact)
            if deal is not None:
                values["deal_id"] = deals[deal]
        await create(
            "interaction",
            list(span),
            batch,
            lambda n: rep_of_contact(data.interaction_contact(n)),
        )
