"""Policy as code: who may do what to which records and fields, for which purpose.

Decisions are asked exactly as the gateway asks them (``GatewayCore.decide``): the field
names of the record type, and the fields the data map allows for the purpose.
"""

from __future__ import annotations

import csv
import dataclasses
import itertools

import pytest

from policy.enforcer import POLICY_PATH, ROLES, AccessDecision, PolicyEngine, Scope
from policy.scope import scope_condition
from server.datamap import CONTACT, ORGANIZATION, PURPOSES, RECORD_TYPES
from server.gateway.tables import Contact

ACTIONS = ("read", "list", "search", "create", "update", "delete")
READS = ("read", "list", "search")
UNKNOWN_ROLE = "intern"

# The documented intent (policy.csv comments and DESIGN.md), written out by hand so that a
# change to policy.csv that widens or narrows access fails here and gets reviewed.
ALLOWED_ACTIONS: dict[tuple[str, str], set[str]] = {
    ("admin", "contact"): set(ACTIONS),
    ("admin", "organization"): set(ACTIONS),
    ("sales", "contact"): set(ACTIONS),
    ("sales", "organization"): {"read", "list", "search", "create", "update"},
    ("support", "contact"): {"read", "list", "search", "create", "update"},
    ("support", "organization"): {"read", "list", "search"},
    ("marketing", "contact"): {"read", "list"},
    ("marketing", "organization"): {"read", "list"},
    ("compliance", "contact"): {"read", "list"},
    ("compliance", "organization"): {"read", "list"},
    (UNKNOWN_ROLE, "contact"): set(),
    (UNKNOWN_ROLE, "organization"): set(),
    # Records about one person (tests/server/crm/test_crm_records.py): deals, interactions, cases.
    **{("admin", r): set(ACTIONS) for r in ("deal", "interaction", "case")},
    # Name search (docs/search.md) finds deals, interactions and cases too.
    ("sales", "deal"): {"read", "list", "search", "create", "update", "delete"},
    ("sales", "interaction"): set(ACTIONS),
    ("sales", "case"): {"read", "list", "search"},
    ("support", "deal"): set(),
    ("support", "interaction"): set(ACTIONS),
    ("support", "case"): set(ACTIONS),
    ("marketing", "deal"): {"read", "list"},
    ("marketing", "interaction"): set(),
    ("marketing", "case"): set(),
    **{("compliance", r): {"read", "list"} for r in ("deal", "interaction", "case")},
    **{(UNKNOWN_ROLE, r): set() for r in ("deal", "interaction", "case")},
    # Leads (tests/server/leads/test_leads.py): sales their own; marketing counts by
    # status and source.
    ("admin", "lead"): set(ACTIONS),
    ("sales", "lead"): set(ACTIONS),
    ("support", "lead"): set(),
    ("marketing", "lead"): {"list"},
    ("compliance", "lead"): {"read", "list"},
    (UNKNOWN_ROLE, "lead"): set(),
    # Tasks and notes (tests/server/crm/test_tasks_notes.py): sales their own, support their team's.
    **{("admin", r): set(ACTIONS) for r in ("task", "note")},
    **{
        (role, r): set(ACTIONS) - {"search"}
        for role in ("sales", "support")
        for r in ("task", "note")
    },
    **{("marketing", r): set() for r in ("task", "note")},
    **{("compliance", r): {"read", "list"} for r in ("task", "note")},
    **{(UNKNOWN_ROLE, r): set() for r in ("task", "note")},
    # Captured mail (tests/server/mailcapture/test_mail_capture.py): only the capture job
    # creates it; staff read, list, share (update) and delete - their own, or a thread
    # shared with them.
    **{(r, "mail"): {"read", "list", "update", "delete"} for r in ("admin", "sales", "support")},
    ("marketing", "mail"): set(),
    ("compliance", "mail"): {"read", "list"},
    (UNKNOWN_ROLE, "mail"): set(),
    # Survey answers (tests/server/feedback/test_feedback.py): written by the system when a
    # person answers; support reads its team's customers' answers; compliance metadata.
    ("admin", "feedback"): {"read", "list", "search", "delete"},  # never writes an answer
    ("sales", "feedback"): set(),
    ("support", "feedback"): {"read", "list"},
    ("marketing", "feedback"): set(),
    ("compliance", "feedback"): {"read", "list"},
    (UNKNOWN_ROLE, "feedback"): set(),
    # A case's conversation (tests/server/servicedesk/test_service_desk.py): written by the
    # desk, never edited.
    ("admin", "case_message"): {"read", "list", "create"},
    ("sales", "case_message"): set(),
    ("support", "case_message"): {"read", "list", "create"},
    ("marketing", "case_message"): set(),
    ("compliance", "case_message"): {"read", "list"},
    (UNKNOWN_ROLE, "case_message"): set(),
}

ROLE_PURPOSES: dict[str, set[str]] = {
    "admin": set(PURPOSES),
    "sales": {"customer_relationship", "service_communication"},
    "support": {"customer_support", "customer_relationship", "service_communication"},
    "marketing": {"marketing", "marketing_email", "marketing_phone", "profiling"},
    "compliance": {"compliance"},
    UNKNOWN_ROLE: set(),
}

SCOPES: dict[tuple[str, str], Scope] = {
    ("admin", "contact"): Scope.ALL,
    ("admin", "organization"): Scope.ALL,
    ("sales", "contact"): Scope.OWN,
    ("sales", "organization"): Scope.TEAM,
    ("support", "contact"): Scope.TEAM,
    ("support", "organization"): Scope.TEAM,
    ("marketing", "contact"): Scope.ALL,
    ("marketing", "organization"): Scope.ALL,
    ("compliance", "contact"): Scope.ALL,
    ("compliance", "organization"): Scope.ALL,
    **{("admin", r): Scope.ALL for r in ("deal", "interaction", "case")},
    ("sales", "deal"): Scope.OWN,
    ("sales", "interaction"): Scope.OWN,
    ("sales", "case"): Scope.TEAM,
    ("support", "interaction"): Scope.TEAM,
    ("support", "case"): Scope.TEAM,
    ("marketing", "deal"): Scope.ALL,
    **{("compliance", r): Scope.ALL for r in ("deal", "interaction", "case")},
    ("admin", "lead"): Scope.ALL,
    ("sales", "lead"): Scope.OWN,
    ("marketing", "lead"): Scope.ALL,
    ("compliance", "lead"): Scope.ALL,
    **{("admin", r): Scope.ALL for r in ("task", "note")},
    **{("sales", r): Scope.OWN for r in ("task", "note")},
    **{("support", r): Scope.TEAM for r in ("task", "note")},
    **{("compliance", r): Scope.ALL for r in ("task", "note")},
    # The scope of a *shared* thread; private mail is its owner's alone (private_until).
    ("admin", "mail"): Scope.ALL,
    **{(r, "mail"): Scope.TEAM for r in ("sales", "support")},
    ("compliance", "mail"): Scope.ALL,
    ("admin", "feedback"): Scope.ALL,
    ("support", "feedback"): Scope.TEAM,
    ("compliance", "feedback"): Scope.ALL,
    ("admin", "case_message"): Scope.ALL,
    ("support", "case_message"): Scope.TEAM,
    ("compliance", "case_message"): Scope.ALL,
}

CAMPAIGN_FIELDS = {
    "first_name",
    "last_name",
    "email",
    "country",
    "lifecycle_stage",
    "source",
    "organization_id",
}


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine()


def decide(
    engine: PolicyEngine, role: str, resource: str, action: str, purpose: str
) -> AccessDecision:
    """The decision as ``GatewayCore.decide`` asks for it."""
    rt = RECORD_TYPES[resource]
    return engine.decide(
        role,
        resource,
        action,
        purpose,
        tuple(f.name for f in rt.fields),
        frozenset(f.name for f in rt.fields if purpose in f.purposes),
    )


def main_purpose(role: str) -> str:
    """The purpose a role normally works under."""
    return {
        "support": "customer_support",
        "marketing": "marketing",
        "compliance": "compliance",
    }.get(role, "customer_relationship")


def test_matrix_covers_every_role_and_resource() -> None:
    assert {role for role, _ in ALLOWED_ACTIONS} == {*ROLES, UNKNOWN_ROLE}
    assert {resource for _, resource in ALLOWED_ACTIONS} == set(RECORD_TYPES)


# --- the permission matrix ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "resource", "action"),
    [(r, res, a) for (r, res) in ALLOWED_ACTIONS for a in ACTIONS],
)
def test_permission_matrix(engine: PolicyEngine, role: str, resource: str, action: str) -> None:
    expected = action in ALLOWED_ACTIONS[(role, resource)]
    decision = decide(engine, role, resource, action, main_purpose(role))
    assert decision.allowed is expected
    if expected:
        assert decision.scope is SCOPES[(role, resource)]
        assert decision.reason == "allowed"
    else:
        assert decision.scope is Scope.NONE
        assert decision.fields == frozenset()
        assert decision.reason != "allowed"


@pytest.mark.parametrize("role", [*ROLES, UNKNOWN_ROLE])
def test_matrix_is_the_same_under_every_purpose_the_role_may_use(
    engine: PolicyEngine, role: str
) -> None:
    for resource, action, purpose in itertools.product(RECORD_TYPES, ACTIONS, ROLE_PURPOSES[role]):
        decision = decide(engine, role, resource, action, purpose)
        assert decision.allowed is (action in ALLOWED_ACTIONS[(role, resource)]), (
            resource,
            action,
            purpose,
        )


@pytest.mark.parametrize("role", [UNKNOWN_ROLE, "", "*", "Admin", "admin ", "system*", "g"])
def test_unknown_roles_get_nothing(engine: PolicyEngine, role: str) -> None:
    for resource, action, purpose in itertools.product(RECORD_TYPES, ACTIONS, PURPOSES):
        decision = decide(engine, role, resource, action, purpose)
        assert not decision.allowed, (role, resource, action, purpose)
        assert decision.fields == frozenset()
        assert decision.scope is Scope.NONE


# CSV export (tests/server/csvio/test_import_export.py): admin everything, sales their own records,
# marketing its campaign lists; support and compliance nothing.
EXPORTS: dict[str, set[str]] = {
    "admin": {"contact", "organization", "deal", "interaction", "case", "lead"},
    "sales": {"contact", "organization", "deal", "interaction", "lead"},
    "marketing": {"contact", "organization"},
    "support": set(),
    "compliance": set(),
}


def test_export_rights(engine: PolicyEngine) -> None:
    for role, resource in itertools.product(ROLES, EXPORTS["admin"]):
        decision = decide(engine, role, resource, "export", main_purpose(role))
        assert decision.allowed is (resource in EXPORTS[role]), (role, resource)
    marketing = decide(engine, "marketing", "contact", "export", "marketing")
    assert marketing.fields == CAMPAIGN_FIELDS


def test_deny_reasons_are_codes(engine: PolicyEngine) -> None:
    assert decide(engine, "marketing", "contact", "create", "marketing").reason == (
        "action_not_allowed"
    )
    assert decide(engine, "marketing", "contact", "read", "customer_relationship").reason == (
        "purpose_not_allowed_for_role"
    )


# --- purposes -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [*ROLES, UNKNOWN_ROLE])
def test_each_role_uses_only_its_purposes(engine: PolicyEngine, role: str) -> None:
    usable = {p for p in PURPOSES if engine.allows(role, f"purpose:{p}", "use")}
    assert usable == ROLE_PURPOSES[role]


def test_marketing_may_use_only_marketing(engine: PolicyEngine) -> None:
    for purpose in set(PURPOSES) - ROLE_PURPOSES["marketing"]:
        for resource, action in itertools.product(RECORD_TYPES, ACTIONS):
            decision = decide(engine, "marketing", resource, action, purpose)
            assert not decision.allowed
            assert decision.reason == "purpose_not_allowed_for_role"


@pytest.mark.parametrize("role", ["support", "sales", "compliance"])
def test_service_roles_may_not_act_for_marketing(engine: PolicyEngine, role: str) -> None:
    for resource, action in itertools.product(RECORD_TYPES, ACTIONS):
        decision = decide(engine, role, resource, action, "marketing")
        assert not decision.allowed, (role, resource, action)
        assert decision.reason == "purpose_not_allowed_for_role"
        assert decision.fields == frozenset()


# --- field rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["sales", "support"])
def test_sales_and_support_never_get_birth_dates(engine: PolicyEngine, role: str) -> None:
    for action, purpose in itertools.product((*ACTIONS, "export"), ROLE_PURPOSES[role]):
        decision = decide(engine, role, "contact", action, purpose)
        assert "birth_date" not in decision.fields, (action, purpose)
    # ... while the rest of the record is readable, so the rule is specific.
    read = decide(engine, role, "contact", "read", "customer_relationship")
    assert {"first_name", "email", "phone", "notes"} <= read.fields


def test_support_gets_contact_details(engine: PolicyEngine) -> None:
    for action in READS:
        decision = decide(engine, "support", "contact", action, "customer_support")
        assert {"email", "phone", "first_name", "last_name"} <= decision.fields


def test_support_reads_notes_but_may_not_write_them(engine: PolicyEngine) -> None:
    assert "notes" in decide(engine, "support", "contact", "read", "customer_support").fields
    for action in ("create", "update"):
        decision = decide(engine, "support", "contact", action, "customer_support")
        assert decision.allowed
        assert "notes" not in decision.fields
        assert "email" in decision.fields


def test_support_does_not_see_annual_revenue(engine: PolicyEngine) -> None:
    for action, purpose in itertools.product(READS, ("customer_support", "customer_relationship")):
        decision = decide(engine, "support", "organization", action, purpose)
        assert decision.allowed
        assert "annual_revenue" not in decision.fields
        assert {"name", "email", "phone"} <= decision.fields
    # Sales does, so the rule is a support rule, not a data-map accident.
    sales = decide(engine, "sales", "organization", "read", "customer_relationship")
    assert "annual_revenue" in sales.fields


def _policy_rules() -> list[list[str]]:
    with POLICY_PATH.open(newline="") as handle:
        rows = csv.reader(line for line in handle if line.strip() and not line.startswith("#"))
        return [[cell.strip() for cell in row] for row in rows]


def test_policy_csv_grants_marketing_exactly_the_campaign_fields() -> None:
    granted = {
        obj.removeprefix("contact.")
        for _, sub, obj, act, eft in _policy_rules()
        if sub == "marketing" and obj.startswith("contact.") and act == "read" and eft == "allow"
    }
    assert granted == CAMPAIGN_FIELDS | {"phone"}  # the phone only under marketing_phone


def test_marketing_field_grants_are_exactly_the_campaign_fields(engine: PolicyEngine) -> None:
    readable = {
        f.name for f in CONTACT.fields if engine.allows("marketing", f"contact.{f.name}", "read")
    }
    assert readable == CAMPAIGN_FIELDS | {"phone"}
    assert not any(
        engine.allows("marketing", f"contact.{f.name}", "update") for f in CONTACT.fields
    )


def test_marketing_decision_is_campaign_fields_limited_by_the_data_map(
    engine: PolicyEngine,
) -> None:
    for action in ("read", "list"):
        decision = decide(engine, "marketing", "contact", action, "marketing")
        marketing_fields = {f.name for f in CONTACT.fields if "marketing" in f.purposes}
        assert decision.fields == CAMPAIGN_FIELDS & marketing_fields
        assert decision.fields == CAMPAIGN_FIELDS  # no policy grant is dead in the data map
        assert decision.fields >= {"first_name", "last_name", "email", "country"}
        assert not decision.fields & {"phone", "birth_date", "notes", "address_line", "city"}
    org = decide(engine, "marketing", "organization", "read", "marketing")
    assert org.fields == {"name", "industry"}


def test_the_phone_number_is_for_phone_marketing_only(engine: PolicyEngine) -> None:
    """Policy lets marketing read phone numbers; the data map limits that to the purpose
    that needs them."""
    by_phone = decide(engine, "marketing", "contact", "read", "marketing_phone")
    by_email = decide(engine, "marketing", "contact", "read", "marketing_email")
    assert "phone" in by_phone.fields
    assert "phone" not in by_email.fields
    assert "email" in by_email.fields


@pytest.mark.parametrize("resource", sorted(RECORD_TYPES))
def test_compliance_sees_metadata_only(engine: PolicyEngine, resource: str) -> None:
    for action in ("read", "list"):
        decision = decide(engine, "compliance", resource, action, "compliance")
        assert decision.allowed
        assert decision.scope is Scope.ALL
        assert decision.fields == frozenset()
    rt = RECORD_TYPES[resource]
    assert not any(
        engine.allows("compliance", f"{resource}.{f.name}", act)
        for f in rt.fields
        for act in ("read", "update")
    )


def test_compliance_may_find_a_person_only_by_what_it_already_knows(
    engine: PolicyEngine,
) -> None:
    """Searching by e-mail or phone (from a request) is allowed; no other field is."""
    decision = decide(engine, "compliance", "contact", "locate", "compliance")
    assert decision.allowed
    assert decision.fields == frozenset({"email", "phone"})
    assert not decide(engine, "compliance", "contact", "search", "compliance").allowed
    for role in ("sales", "support", "marketing"):
        assert not decide(engine, role, "contact", "locate", main_purpose(role)).allowed


def test_fields_never_exceed_the_purpose_fields(engine: PolicyEngine) -> None:
    for role, resource, action, purpose in itertools.product(
        ROLES, RECORD_TYPES, ACTIONS, PURPOSES
    ):
        rt = RECORD_TYPES[resource]
        purpose_fields = {f.name for f in rt.fields if purpose in f.purposes}
        decision = decide(engine, role, resource, action, purpose)
        assert decision.fields <= purpose_fields


def test_admin_gets_every_field_for_service_purposes(engine: PolicyEngine) -> None:
    for rt in (CONTACT, ORGANIZATION):
        decision = decide(engine, "admin", rt.resource, "read", "customer_relationship")
        assert decision.fields == {f.name for f in rt.fields}


# --- decisions cannot be forged -----------------------------------------------------------------


def test_access_decision_cannot_be_constructed_outside_the_engine() -> None:
    with pytest.raises(TypeError):
        AccessDecision(
            "intern", "contact", "read", "marketing", True, Scope.ALL, frozenset({"email"}), "ok"
        )
    with pytest.raises(TypeError):
        AccessDecision(
            "intern",
            "contact",
            "read",
            "marketing",
            True,
            Scope.ALL,
            frozenset({"email"}),
            "ok",
            object(),
        )


def test_a_denied_decision_cannot_be_turned_into_an_allowed_one(engine: PolicyEngine) -> None:
    denied = decide(engine, UNKNOWN_ROLE, "contact", "read", "customer_relationship")
    with pytest.raises(dataclasses.FrozenInstanceError):
        denied.allowed = True  # type: ignore[misc]  # frozen: exactly what is tested
    with pytest.raises(TypeError):
        dataclasses.replace(denied, allowed=True, scope=Scope.ALL)


# --- record scope as a query condition ----------------------------------------------------------


def _condition(decision: AccessDecision, user_id: int | None = 7, team: str = "north") -> object:
    return scope_condition(decision, Contact.owner_id, Contact.team, user_id, team)


def test_scope_all_means_no_condition(engine: PolicyEngine) -> None:
    assert _condition(decide(engine, "admin", "contact", "read", "customer_relationship")) is None


def test_scope_own_filters_by_owner(engine: PolicyEngine) -> None:
    decision = decide(engine, "sales", "contact", "list", "customer_relationship")
    assert decision.scope is Scope.OWN
    assert str(_condition(decision, user_id=7)) == '"contact"."owner_id" = 7'


def test_scope_team_filters_by_team(engine: PolicyEngine) -> None:
    decision = decide(engine, "support", "contact", "list", "customer_support")
    assert decision.scope is Scope.TEAM
    assert str(_condition(decision, team="north")) == '"contact"."team" = \'north\''


NOTHING = '"contact"."owner_id" = -1'


@pytest.mark.parametrize(
    ("role", "purpose"),
    [(UNKNOWN_ROLE, "customer_relationship"), ("marketing", "customer_relationship")],
)
def test_denied_decision_matches_nothing(engine: PolicyEngine, role: str, purpose: str) -> None:
    decision = decide(engine, role, "contact", "list", purpose)
    assert decision.scope is Scope.NONE
    condition = _condition(decision)
    assert condition is not None
    assert str(condition) == NOTHING


def test_scope_without_the_actor_attribute_matches_nothing(engine: PolicyEngine) -> None:
    own = decide(engine, "sales", "contact", "list", "customer_relationship")
    team = decide(engine, "support", "contact", "list", "customer_support")
    # A system actor has no user id; a user without a team must not see "team ''".
    assert str(_condition(own, user_id=None)) == NOTHING
    assert str(_condition(team, team="")) == NOTHING
