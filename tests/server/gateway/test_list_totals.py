"""A list's total and a count are all the rows in scope minus the few left out (merged
contacts, tombstones, the restricted), each part counted apart (issue 15: a count that
tested every row walked a whole index). Subtraction is only right if the parts never
overlap, so these people are left out for two reasons at once."""

from __future__ import annotations

from typing import Any

from server.gateway import Actor
from server.services import Services
from tests.conftest import Staff, contact_values
from tests.server.crm.test_crm_records import sales_contact
from tests.server.gateway.test_read_round_trip import recorded

SYSTEM = Actor.system("test-totals")
PURPOSE = "customer_relationship"


async def test_totals_leave_out_each_person_once_when_two_reasons_apply(
    services: Services, staff: Staff
) -> None:
    gw = services.gateway
    sales = await staff.create("sales", team="north")
    me = staff.actor(sales)
    other = await staff.create("sales", team="north")

    async def mine(**values: Any) -> Any:
        return await gw.create(me, "contact", sales_contact(**values))

    kept = [await mine(first_name="Ada"), await mine(first_name="Alan", lifecycle_stage="lead")]
    survivor = await mine(first_name="Jon")  # kept too
    other_survivor = await mine(first_name="Jim")  # and kept
    merged = await mine(first_name="John")
    merged_restricted = await mine(first_name="Johnny")
    erased = await mine(first_name="Gone")
    erased_restricted = await mine(first_name="Gone too")
    restricted = await mine(first_name="Quiet", lifecycle_stage="lead")
    await gw.create(staff.actor(other), "contact", sales_contact(first_name="Not mine"))

    await gw.merge_contacts(SYSTEM, survivor.id, merged.id, purpose=PURPOSE)
    await gw.merge_contacts(SYSTEM, other_survivor.id, merged_restricted.id, purpose=PURPOSE)
    for person in (erased, erased_restricted):
        await services.erasure.erase(person.subject_id, by="user:1")
    register = services.erasure.restrictions
    for person in (merged_restricted, erased_restricted, restricted):
        await register.restrict(person.subject_id, "accuracy_contested", by="user:1")

    listed = await gw.list(me, "contact")
    assert {r.id for r in listed.items} == {kept[0].id, kept[1].id, survivor.id, other_survivor.id}
    assert listed.total == 4
    assert await gw.count(me, "contact") == 4
    # With a filter: Alan; Quiet, a lead too, is restricted.
    assert (await gw.list(me, "contact", filters={"lifecycle_stage": "lead"})).total == 1
    assert await gw.count(me, "contact", filters={"lifecycle_stage": "lead"}) == 1
    # Erased people counted back in, on request: the merged and the restricted stay out.
    assert (await gw.list(me, "contact", include_erased=True)).total == 5
    # Compliance reaches the restricted too (Art. 18(2)), and everyone's contacts; never
    # the merged or (unless asked) the erased.
    admin = staff.actor(await staff.create("admin"))
    assert await gw.count(admin, "contact", purpose="compliance") == 6
    assert (await gw.list(admin, "contact", purpose="compliance")).total == 6


async def test_a_list_total_never_tests_every_row_against_the_restricted(
    services: Services, staff: Staff
) -> None:
    await services.gateway.create(SYSTEM, "contact", contact_values())
    client = await staff.login(await staff.create("admin"))
    with recorded() as statements:
        response = await client.get("/api/v1/contacts")
    assert response.status_code == 200
    assert response.json()["total"] == 1
    [total] = [s for s in statements.seen if "COUNT(" in s]
    assert "NOT IN" not in total, total  # the restricted are counted apart and subtracted
