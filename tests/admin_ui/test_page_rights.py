"""Page guards ask the policy (issue 18): every web admin page that needs a signed-in user
opens for exactly the roles it opened for before the guards stopped naming roles, and the
menu asks the same right as the page it links to.

The table below is the guards' answer as it was with hard-coded roles (``admin_only``,
``roles=("compliance",)`` ...); now policy/policy.csv gives it (admin_ui/rights.py). A
change of who sees a page is a change of this table and of the policy, reviewed together.
"""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.handlers import HTTPRouteHandler

from admin_ui.navigation import MENU
from admin_ui.plugin import admin_router
from admin_ui.session import RIGHT, STATES, role_may_open
from policy.enforcer import MFA_RIGHT, ROLES, PolicyEngine
from server.services import service_dependencies

ADMINS = frozenset({"admin"})
DPO = frozenset({"compliance"})
ADMINS_AND_DPO = ADMINS | DPO
RESTRICTED_PAGES: dict[tuple[str, str], frozenset[str]] = {
    ("GET", "/admin/pipelines"): ADMINS,
    ("GET", "/admin/users"): ADMINS,
    ("GET", "/admin/users/new"): ADMINS,
    ("GET", "/admin/users/{user_id:int}"): ADMINS,
    ("GET", "/import"): ADMINS,
    ("GET", "/import/jobs/{job_id:str}"): ADMINS,
    ("POST", "/admin/pipelines/new"): ADMINS,
    ("POST", "/admin/pipelines/stages/{stage_id:str}"): ADMINS,
    ("POST", "/admin/pipelines/{pipeline_id:str}/rename"): ADMINS,
    ("POST", "/admin/pipelines/{pipeline_id:str}/stages"): ADMINS,
    ("POST", "/admin/users/new"): ADMINS,
    ("POST", "/admin/users/{user_id:int}/active"): ADMINS,
    ("POST", "/admin/users/{user_id:int}/reset"): ADMINS,
    ("POST", "/admin/users/{user_id:int}/role"): ADMINS,
    ("POST", "/import"): ADMINS,
    ("POST", "/import/mapping"): ADMINS,
    ("GET", "/compliance"): DPO,
    ("GET", "/compliance/alerts"): DPO,
    ("GET", "/compliance/alerts/rules"): DPO,
    ("GET", "/compliance/alerts/rules/new"): DPO,
    ("GET", "/compliance/alerts/rules/{rule_id:int}"): DPO,
    ("GET", "/compliance/denials"): DPO,
    ("GET", "/compliance/events"): DPO,
    ("GET", "/compliance/holds"): DPO,
    ("GET", "/compliance/requests"): DPO,
    ("GET", "/compliance/requests/{request_id:str}"): DPO,
    ("GET", "/compliance/requests/{request_id:str}/erase"): DPO,
    ("GET", "/compliance/requests/{request_id:str}/erase/progress"): DPO,
    ("GET", "/compliance/requests/{request_id:str}/release"): DPO,
    ("GET", "/compliance/staff"): DPO,
    ("GET", "/compliance/staff/{actor_id:str}"): DPO,
    ("GET", "/compliance/subjects"): DPO,
    ("POST", "/compliance/alerts/rules/new"): DPO,
    ("POST", "/compliance/alerts/rules/{rule_id:int}"): DPO,
    ("POST", "/compliance/alerts/rules/{rule_id:int}/enabled"): DPO,
    ("POST", "/compliance/alerts/{alert_id:int}/acknowledge"): DPO,
    ("POST", "/compliance/events/export"): DPO,
    ("POST", "/compliance/holds"): DPO,
    ("POST", "/compliance/holds/{hold_id:str}/release"): DPO,
    ("POST", "/compliance/requests"): DPO,
    ("POST", "/compliance/requests/{request_id:str}/erase"): DPO,
    ("POST", "/compliance/requests/{request_id:str}/extend"): DPO,
    ("POST", "/compliance/requests/{request_id:str}/release"): DPO,
    ("POST", "/compliance/requests/{request_id:str}/transition"): DPO,
    ("POST", "/compliance/requests/{request_id:str}/unrestrict"): DPO,
    ("POST", "/compliance/subjects"): DPO,
    ("GET", "/compliance/consent"): ADMINS_AND_DPO,
    ("GET", "/compliance/consent/notices"): ADMINS_AND_DPO,
    ("GET", "/compliance/consent/notices/{version:int}"): ADMINS_AND_DPO,
    ("GET", "/compliance/consent/proof/{subject_id:str}"): ADMINS_AND_DPO,
    ("GET", "/compliance/consent/purposes"): ADMINS_AND_DPO,
    ("GET", "/compliance/consent/purposes/{name:str}"): ADMINS_AND_DPO,
    ("GET", "/compliance/record-of-processing"): ADMINS_AND_DPO,
    ("POST", "/compliance/consent/contacts/{record_id:str}"): ADMINS_AND_DPO,
    ("POST", "/compliance/consent/contacts/{record_id:str}/lift-objection"): ADMINS_AND_DPO,
    ("POST", "/compliance/consent/notices"): ADMINS_AND_DPO,
    ("POST", "/compliance/consent/proof/{subject_id:str}"): ADMINS_AND_DPO,
    ("POST", "/compliance/consent/purposes/{name:str}"): ADMINS_AND_DPO,
}


@pytest.fixture(scope="module")
def policy() -> PolicyEngine:
    return PolicyEngine()


def page_handlers() -> dict[tuple[str, str], HTTPRouteHandler]:
    """Every GET and POST page of the web admin that asks for a signed-in visit."""
    app = Litestar(route_handlers=[admin_router()], dependencies=service_dependencies())
    pages = {}
    for route in app.routes:
        for handler in getattr(route, "route_handlers", ()):
            if "visit" not in handler.resolve_dependencies():
                continue
            for method in handler.http_methods & {"GET", "POST"}:
                pages[(method, route.path)] = handler
    return pages


PAGES = page_handlers()


def test_the_table_names_real_pages() -> None:
    assert set(RESTRICTED_PAGES) <= set(PAGES)
    assert len(PAGES) > len(RESTRICTED_PAGES)  # most pages open to every signed-in role


@pytest.mark.parametrize("page", sorted(PAGES), ids=lambda p: f"{p[0]} {p[1]}")
def test_every_page_opens_for_the_roles_it_did(page: tuple[str, str], policy: PolicyEngine) -> None:
    opt = PAGES[page].opt
    opens_for = {role for role in ROLES if role_may_open(opt, role, policy)}
    assert opens_for == RESTRICTED_PAGES.get(page, set(ROLES))


def test_page_guards_name_a_right_not_roles(policy: PolicyEngine) -> None:
    """A guard is the session states it opens in and at most one policy right, which some
    role has (a misspelt right would lock everyone out)."""
    for page, handler in PAGES.items():
        guard_keys: set[Any] = {k for k in handler.opt if "only" in k or "role" in k}
        assert not guard_keys, (page, guard_keys)
        assert STATES in handler.opt, page
        right = handler.opt.get(RIGHT)
        if right is not None:
            assert any(policy.allows(role, *right) for role in ROLES), (page, right)


def test_the_menu_asks_the_right_its_page_asks(policy: PolicyEngine) -> None:
    for _, entries in MENU:
        for entry in entries:
            page = PAGES[("GET", entry.href)]
            right = page.opt.get(RIGHT)
            if right is not None:
                assert entry.right == right, entry.label
            for role in ROLES:
                if entry.right is None or policy.allows(role, *entry.right):
                    assert role_may_open(page.opt, role, policy), (entry.label, role)


def test_the_second_factor_is_required_where_the_policy_says(policy: PolicyEngine) -> None:
    """``mfa, required`` replaced the list of roles in server/auth/service.py."""
    assert {role for role in ROLES if policy.allows(role, *MFA_RIGHT)} == ADMINS_AND_DPO
