"""The bulk path (imports, loaders) and the audit of refused input on every operation."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from server.gateway import Forbidden, InvalidInput
from server.services import Services
from tests.conftest import Staff, contact_values
from tests.dbutil import audit_rows, customer_row_counts, last_seq, subjects_of


async def test_a_bulk_call_larger_than_the_databases_parameter_limit_is_written_whole(
    services: Services, staff: Staff, database_url: str
) -> None:
    """3,000 contacts in one call: more bind parameters than one PostgreSQL statement
    takes (32,767), so the rows, their subjects and keys are inserted in chunks, still
    in one transaction with one audit event (an import of a large file failed with a 500)."""
    admin = staff.actor(await staff.create("admin"))
    rows = [contact_values(last_name=f"Bulk{i}", email=f"bulk{i}@example.org") for i in range(3000)]
    before_counts = await customer_row_counts(database_url)
    before = await last_seq(database_url)

    result = await services.gateway.create_many(admin, "contact", rows)

    assert len(result.created) == 3000
    assert not result.rejected
    after_counts = await customer_row_counts(database_url)
    assert after_counts["contact"] == before_counts["contact"] + 3000
    assert after_counts["subject_key"] == before_counts["subject_key"] + 3000
    [event] = await audit_rows(database_url, before)
    assert len(subjects_of(event)) == 3000


async def test_bulk_create_writes_valid_rows_and_reports_bad_ones(
    services: Services, staff: Staff, database_url: str
) -> None:
    admin = staff.actor(await staff.create("admin"))
    rows: list[dict[str, Any]] = [contact_values(last_name=f"Row{i}") for i in range(12)]
    rows[3]["email"] = "not-an-email"
    rows[7]["shoe_size"] = 44
    before_counts = await customer_row_counts(database_url)
    before = await last_seq(database_url)

    result = await services.gateway.create_many(admin, "contact", rows)

    assert len(result.created) == 10
    assert result.rejected == {
        3: {"email": "not a valid e-mail address"},
        7: {"shoe_size": "unknown field"},
    }
    after_counts = await customer_row_counts(database_url)
    assert after_counts["contact"] == before_counts["contact"] + 10
    assert after_counts["subject_key"] == before_counts["subject_key"] + 10  # no orphan keys
    [event] = await audit_rows(database_url, before)  # one event for the batch
    assert (event["action"], event["outcome"]) == ("create", "allowed")
    assert len(subjects_of(event)) == 10
    assert json.loads(event["detail"]) == {"rejected": 2, "rows": 10}
    page = await services.gateway.list(admin, "contact", page_size=100)
    assert sorted(r.values["last_name"] for r in page.items) == sorted(
        f"Row{i}" for i in range(12) if i not in (3, 7)
    )


async def test_bulk_create_is_policy_checked_and_scope_rechecked(
    services: Services, staff: Staff, database_url: str
) -> None:
    marketing = staff.actor(await staff.create("marketing"))
    seller = staff.actor(await staff.create("sales"))
    other = await staff.create("sales")
    counts = await customer_row_counts(database_url)
    before = await last_seq(database_url)

    with pytest.raises(Forbidden):
        await services.gateway.create_many(marketing, "contact", [contact_values()])
    with pytest.raises(Forbidden):  # sales may not hand rows to anyone but themselves
        await services.gateway.create_many(
            seller,
            "contact",
            [{k: v for k, v in contact_values().items() if k != "birth_date"}],
            owner_id=other.user_id,
        )

    assert await customer_row_counts(database_url) == counts
    refusals = await audit_rows(database_url, before)
    assert [(r["outcome"], r["reason"]) for r in refusals] == [
        ("denied", "action_not_allowed"),
        ("denied", "ownership_not_allowed"),
    ]


@pytest.mark.parametrize(
    "call",
    ["unknown-purpose", "unknown-read-field", "bad-page", "bad-filter", "bad-search-value"],
)
async def test_refused_input_is_audited_on_every_operation(
    services: Services, staff: Staff, database_url: str, call: str
) -> None:
    admin = staff.actor(await staff.create("admin"))
    record = await services.gateway.create(admin, "contact", contact_values())
    gateway = services.gateway
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "unknown-purpose": lambda: gateway.read(admin, "contact", record.id, purpose="curiosity"),
        "unknown-read-field": lambda: gateway.read(
            admin, "contact", record.id, fields=("shoe_size",)
        ),
        "bad-page": lambda: gateway.list(admin, "contact", page=0),
        "bad-filter": lambda: gateway.list(admin, "contact", filters={"notes": "x"}),
        "bad-search-value": lambda: gateway.search(admin, "contact", "email", "no-at-sign"),
    }
    before = await last_seq(database_url)

    with pytest.raises(InvalidInput):
        await calls[call]()

    [row] = await audit_rows(database_url, before)
    assert (row["outcome"], row["reason"]) == ("error", "invalid_input")
    assert row["purpose"] in {"", "customer_relationship"}  # an unknown purpose is not stored
    assert "curiosity" not in json.dumps(row, default=str)
    assert "no-at-sign" not in json.dumps(row, default=str)
