"""The shape of the code (issue 18), checked by reading it: one authorization mechanism and
audit events built in one place, in modules and functions one can read.

- Size: no module in ``server/``, ``audit/``, ``admin_ui/`` or ``policy/`` is over 800
  lines unless its first lines say why (``# Over 800 lines: <reason>``), and no function
  or method is over 80 lines unless :data:`LONG_FUNCTIONS` names it with a reason.
- No role name appears as a string literal in ``server/`` or ``admin_ui/``: who may do what
  is policy/policy.csv's to say, asked through ``PolicyEngine.allows`` (page guards,
  feature checks, the second factor). Only the policy package and the demo seed name roles.
  Some role names are also purpose names ("compliance", "marketing"), a team name or a
  navigation section; such a literal passes only where its use says so (the keyword or
  variable it is given to names a purpose, team, section or tag).
- Only ``audit.events.audit_event`` calls ``AuditEvent(...)``: every event in the trail has
  the builder's shape (no duplicate subject ids, a reason on every refusal).
- Nothing outside the gateway core reaches a private member of the gateway
  (``gw._decide``, ``self.gateway._audit``, ``services.gateway._decrypt``): features
  (duplicates, erasure, lead conversion, bulk, search) and the rest of the app use the
  core's documented public interface (``server.gateway.core.GatewayCore``), so the core
  can change inside without breaking them, and every check runs the one way it is written.
- The services are built complete: where they are wired (``server/services.py``,
  ``server/wiring.py``) nothing is assigned onto a service after it was constructed
  (``gateway.subject_basis = consent``, ``requests.fulfillers["access"] = ...``,
  ``consent.lapse_listeners.append(...)``). A collaborator is a constructor argument; a
  cycle is broken with ``server.wiring.Later``, which is set once.
- Route handlers take their services by name (``gateway: NamedDependency[Gateway]``), never
  the whole container: no function decorated with Litestar's ``get``/``post``/``put``/
  ``patch``/``delete`` in ``server/`` or ``admin_ui/`` calls ``services_of(``. Guards and
  request-only helpers (rendering, flashes, ``provide_visit``) may.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from audit.events import AuditEvent, Outcome, audit_event
from policy.enforcer import ROLES, SYSTEM_ROLE

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("server", "admin_ui")
ROLE_NAMES = frozenset({*ROLES, SYSTEM_ROLE})
# Files that may name roles: the demo seed makes one account per role. The data map declares
# the purposes, two of which are spelled like roles ("compliance", "marketing").
MAY_NAME_ROLES = {"server/demo.py", "server/datamap.py"}
# Where a role-like word is something else: the keyword or variable it is given to says what.
NOT_A_ROLE = re.compile(r"purpose|section|team|tags", re.IGNORECASE)
# Literals that are neither roles nor in a context with such a name (path, context, why).
OTHER_MEANINGS = {
    ("server/consent/model.py", "SYSTEM"): "a consent source: the ledger row came from expiry",
    ("server/dsr/export.py", "CONSENT_SOURCE_LABELS"): "the same consent source, as shown",
}


def python_files(*roots: str) -> Iterator[Path]:
    for root in roots:
        yield from sorted((ROOT / root).rglob("*.py"))


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# --- size: modules of at most 800 lines, functions of at most 80 ------------------------------

SIZED = ("server", "audit", "admin_ui", "policy")
MAX_MODULE_LINES = 800
MAX_FUNCTION_LINES = 80
# A longer module says why in one of its first lines (before its docstring).
MODULE_REASON = re.compile(r"^# Over 800 lines: \S")
REASON_WITHIN = 3
# Longer functions, each with the reason it stays one function. Keep this list short: a
# function that can be split where its steps are named is split instead.
LONG_FUNCTIONS = {
    "server/dsr/export_format.py:export_schema": "one JSON Schema literal, read side by side "
    "with the published docs/dsr-export.schema.json",
    "server/settings.py:Settings.from_env": "every CONSENTRY_* variable, read and checked "
    "once, in one declaration",
    "server/processing_record.py:security_measures": "the Art. 32 measures as one list, in "
    "the order the record of processing prints them",
    "audit/trail.py:AuditTrail.verify": "one pass over the log whose state (frontier, last "
    "hash, next checkpoint) every check reads; it mirrors audit/standalone_verify.py",
    "server/services.py:build_services": "the composition root, every service in dependency "
    "order; being reworked by the wiring change (issue 18), split there",
    "server/records/routes.py:record_routes": "builds one record type's controller; its "
    "handlers are closures over the type and move only with the handler-signature change",
    "server/gateway/duplicates.py:merge": "one transaction over the locked pair; split after "
    "the merged-contact column change to it lands",
    "admin_ui/pages/consent.py:ConsentPages.record_consent": "a route handler (form, checks, "
    "ledger write, answer); handlers stay put while their signatures change",
    "admin_ui/pages/dashboard.py:dashboard": "a route handler assembling the role's panels; "
    "handlers stay put while their signatures change",
}


def module_lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def oversized_modules(root: Path = ROOT) -> list[str]:
    found = []
    for top in SIZED:
        for path in sorted((root / top).rglob("*.py")):
            lines = path.read_text().splitlines()
            said = any(MODULE_REASON.match(line) for line in lines[:REASON_WITHIN])
            if len(lines) > MAX_MODULE_LINES and not said:
                found.append(f"{path.relative_to(root).as_posix()}: {len(lines)} lines")
    return found


def function_lengths(source: str, name: str) -> dict[str, int]:
    """``module:Class.method`` (or ``module:function``) -> lines from ``def`` to its end."""
    found: dict[str, int] = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                qualified = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    found[f"{name}:{qualified}"] = (child.end_lineno or 0) - child.lineno + 1
                visit(child, f"{qualified}.")

    visit(ast.parse(source, filename=name), "")
    return found


def long_functions(root: Path = ROOT) -> dict[str, int]:
    found = {}
    for top in SIZED:
        for path in sorted((root / top).rglob("*.py")):
            lengths = function_lengths(path.read_text(), path.relative_to(root).as_posix())
            found.update({k: n for k, n in lengths.items() if n > MAX_FUNCTION_LINES})
    return found


def test_modules_are_at_most_800_lines_or_say_why() -> None:
    assert oversized_modules() == []


def test_functions_are_at_most_80_lines_or_listed_with_a_reason() -> None:
    unlisted = {name: n for name, n in long_functions().items() if name not in LONG_FUNCTIONS}
    assert unlisted == {}
    assert all(reason.strip() for reason in LONG_FUNCTIONS.values())


def test_the_long_function_list_has_no_stale_entries() -> None:
    """A listed function that was split (or renamed) leaves the list, so it stays short."""
    assert sorted(set(LONG_FUNCTIONS) - set(long_functions())) == []


def test_the_size_scan_catches_a_long_module_and_a_long_method(tmp_path: Path) -> None:
    package = tmp_path / "server"
    package.mkdir()

    def method(name: str, lines: int) -> str:
        """A class with one method of ``lines`` lines, its ``def`` included."""
        body = "".join(f"        x{i} = {i}\n" for i in range(lines - 1))
        return f"class Thing:\n    def {name}(self) -> None:\n{body}"

    (package / "short.py").write_text(method("fits", MAX_FUNCTION_LINES))
    (package / "long.py").write_text(method("grows", MAX_FUNCTION_LINES + 1))
    assert long_functions(tmp_path) == {"server/long.py:Thing.grows": MAX_FUNCTION_LINES + 1}
    filler = "x = 1\n" * MAX_MODULE_LINES
    (package / "big.py").write_text('"""Big."""\n' + filler)
    (package / "said.py").write_text("# Over 800 lines: one table, read top to bottom\n" + filler)
    assert oversized_modules(tmp_path) == [f"server/big.py: {MAX_MODULE_LINES + 1} lines"]


def docstrings(tree: ast.Module) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def context_of(node: ast.AST, parents: dict[int, ast.AST]) -> str:
    """The name a literal is given to: the keyword, variable, attribute or dict it is in."""
    child, parent = node, parents.get(id(node))
    while parent is not None:
        if isinstance(parent, ast.keyword):
            return parent.arg or ""
        if isinstance(parent, ast.Assign | ast.AnnAssign):
            targets = parent.targets if isinstance(parent, ast.Assign) else [parent.target]
            return " ".join(ast.unparse(t) for t in targets)
        if isinstance(parent, ast.Subscript) and child is parent.slice:
            return ast.unparse(parent.value)
        if isinstance(parent, ast.Compare | ast.Return | ast.stmt):
            return ""  # compared with, returned or used as it is: a role, as far as we know
        child, parent = parent, parents.get(id(parent))
    return ""


def role_literals() -> list[str]:
    found = []
    for path in python_files(*SCANNED):
        name = relative(path)
        if name in MAY_NAME_ROLES:
            continue
        tree = ast.parse(path.read_text(), filename=name)
        parents = {
            id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)
        }
        skip = docstrings(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Constant) or node.value not in ROLE_NAMES:
                continue
            if id(node) in skip:
                continue
            context = context_of(node, parents)
            if NOT_A_ROLE.search(context) or (name, context) in OTHER_MEANINGS:
                continue
            found.append(f"{name}:{node.lineno}: {node.value!r} ({context or 'bare'})")
    return found


def test_no_role_name_is_a_literal_outside_the_policy() -> None:
    """Page guards, feature checks and the second factor ask the policy; none names a role."""
    assert role_literals() == []


def template_role_checks(root: Path = ROOT) -> list[str]:
    """Jinja comparisons of a role with a role name (``{% if role == "compliance" %}``)."""
    names = "|".join(sorted(ROLE_NAMES))
    check = re.compile(rf"\brole\b[^%}}]*?(==|!=|\bin\b)[^%}}]*?[\"']({names})[\"']")
    found = []
    for path in sorted((root / "admin_ui" / "templates").rglob("*.html")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if check.search(line):
                found.append(f"{path.relative_to(root).as_posix()}:{number}")
    return found


def test_templates_do_not_compare_roles_either() -> None:
    assert template_role_checks() == []


def test_the_template_scan_catches_a_role_check(tmp_path: Path) -> None:
    page = tmp_path / "admin_ui" / "templates" / "page.html"
    page.parent.mkdir(parents=True)
    page.write_text('{% if section == "compliance" %}ok{% endif %}\n{% if role == "compliance" %}')
    assert template_role_checks(tmp_path) == ["admin_ui/templates/page.html:2"]


def test_the_role_scan_catches_page_guards_and_checks() -> None:
    """The scan above would have failed on the page guards and checks this issue removed."""
    samples = {
        'opt = page_access(roles=("compliance", "admin"))': True,
        'MFA_REQUIRED_ROLES = frozenset({"admin", "compliance"})': True,
        'ok = visit.identity.role == "admin"': True,
        'ok = role in {"sales", "support"}': True,
        'actor_role = "system"': True,
        'PURPOSE = "compliance"': False,
        'event(purpose="compliance")': False,
        'web_form_team: str = "sales"': False,
        'render(section="compliance")': False,
    }
    for source, flagged in samples.items():
        tree = ast.parse(source)
        parents = {id(c): n for n in ast.walk(tree) for c in ast.iter_child_nodes(n)}
        hits = [
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant)
            and n.value in ROLE_NAMES
            and not NOT_A_ROLE.search(context_of(n, parents))
        ]
        assert bool(hits) is flagged, source


def audit_event_constructions() -> list[str]:
    found = []
    for path in python_files("server", "admin_ui", "audit", "policy"):
        name = relative(path)
        if name == "audit/events.py":
            continue  # the builder
        for node in ast.walk(ast.parse(path.read_text(), filename=name)):
            if isinstance(node, ast.Call):
                func = node.func
                called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if called == "AuditEvent":
                    found.append(f"{name}:{node.lineno}")
    return found


def test_audit_events_are_built_by_the_one_builder() -> None:
    assert audit_event_constructions() == []


def test_the_builder_keeps_the_trail_s_shape() -> None:
    event = audit_event(
        actor_id="user:1",
        actor_role="sales",
        action="contact.merge",
        resource_type="contact",
        outcome=Outcome.DENIED,
        subject_ids=["s1", "s2", "s1", ""],
        fields=["email", "phone", "email"],
    )
    assert isinstance(event, AuditEvent)
    assert event.subject_ids == ("s1", "s2")
    assert event.fields == ("email", "phone")
    assert event.reason == "denied"  # a refusal always names its reason
    detail: dict[str, int | str] = {"count": 1}
    kept = audit_event(
        actor_id="user:1",
        actor_role="sales",
        action="x",
        resource_type="y",
        detail=detail,
    )
    detail["count"] = 2
    assert kept.detail == {"count": 1}
    assert kept.reason == ""


@pytest.mark.parametrize("outcome", [Outcome.DENIED, Outcome.ERROR])
def test_a_given_reason_is_kept(outcome: Outcome) -> None:
    event = audit_event(
        actor_id="a", actor_role="r", action="x", resource_type="y", outcome=outcome, reason="why"
    )
    assert event.reason == "why"


# --- the gateway's private members stay inside the core ---------------------------------------

# Names a gateway is held under (a parameter, an attribute of a service or of the container).
GATEWAY_NAMES = frozenset({"gw", "gateway", "_gateway"})
# The core itself: the only module whose own objects' private members it may use.
GATEWAY_CORE = {"server/gateway/core.py"}


def _held_as(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def private_gateway_access(source: str, name: str = "<sample>") -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        if (
            isinstance(node, ast.Attribute)
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and _held_as(node.value) in GATEWAY_NAMES
        ):
            found.append(f"{name}:{node.lineno} .{node.attr}")
    return found


def test_nothing_outside_the_core_reaches_a_private_gateway_member() -> None:
    found = []
    for path in python_files(*SCANNED):
        name = relative(path)
        if name not in GATEWAY_CORE:
            found += private_gateway_access(path.read_text(), name)
    assert found == []


def test_the_private_access_scan_catches_what_features_did() -> None:
    """The scan would have failed on the calls duplicates, leads, bulk and erasure made."""
    samples = {
        "decision = gw._decide(actor, CONTACT, MERGE, purpose)": True,
        "raise await gateway._deny(actor, rt, MATCH, purpose, reason, error)": True,
        "await self.gateway._audit(actor, rt, action, outcome, purpose)": True,
        "real = services.gateway._decrypt": True,
        "self._gateway._scoped(query, table, decision, actor)": True,
        "decision = gw.decide(actor, CONTACT, MERGE, purpose)": False,
        "pk = table._meta.primary_key": False,
        "name = gw.__class__.__name__": False,
    }
    for source, flagged in samples.items():
        assert bool(private_gateway_access(source)) is flagged, source


# --- services are built complete, never patched afterwards ------------------------------------

# Where the services are built and wired together.
WIRING_FILES = ("server/services.py", "server/wiring.py")
# Calls that change a collection in place: on an attribute of a service, a patch too.
MUTATORS = frozenset({"append", "extend", "insert", "update", "setdefault", "add", "__setitem__"})


def _root(node: ast.expr) -> str:
    while isinstance(node, ast.Attribute | ast.Subscript):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def _patched(target: ast.expr) -> bool:
    """An attribute of something other than ``self`` (``gateway.restrictions = ...``), or an
    item of one (``requests.fulfillers["access"] = ...``)."""
    if isinstance(target, ast.Subscript):
        target = target.value
    return isinstance(target, ast.Attribute) and _root(target) != "self"


def _changes_a_service(func: ast.expr) -> bool:
    """``setattr(...)``, or ``service.collection.append(...)`` and the like."""
    if isinstance(func, ast.Name):
        return func.id in {"setattr", "delattr"}
    return isinstance(func, ast.Attribute) and func.attr in MUTATORS and _patched(func.value)


def service_patches(source: str, name: str = "<sample>") -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source, filename=name)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif isinstance(node, ast.Call) and _changes_a_service(node.func):
            found.append(f"{name}:{node.lineno} {ast.unparse(node)}")
        elif isinstance(node, ast.Delete):
            targets = node.targets
        found += [f"{name}:{node.lineno} {ast.unparse(t)}" for t in targets if _patched(t)]
    return found


def test_services_are_not_patched_after_construction() -> None:
    found = []
    for name in WIRING_FILES:
        found += service_patches((ROOT / name).read_text(), name)
    assert found == [], "pass collaborators to the constructor (or a server.wiring.Later)"


def test_the_patch_scan_catches_what_build_services_did() -> None:
    """The scan would have failed on every line the wiring used to patch services with."""
    samples = {
        "gateway.subject_basis = consent": True,
        'gateway.record_rules["deal"] = pipelines.deal_rule': True,
        'requests.fulfillers["access"] = portal.send_download_link': True,
        'mail_outbox.on_settled["alert"] = alerts.delivery_settled': True,
        "portal.exporter = partial(export_for_subject, services)": True,
        "consent.lapse_listeners.append(lapse.consider)": True,
        "services.portal.exporter = None": True,
        "gateway.count += 1": True,
        'setattr(gateway, "restrictions", restrictions)': True,
        "self._value = value": False,
        "built.set(services)": False,
        "portal = Portal(gateway, exporter=exporter)": False,
        "rules = {}; rules['deal'] = rule": False,
    }
    for source, flagged in samples.items():
        assert bool(service_patches(source)) is flagged, source


# --- handlers take their services by name ------------------------------------------------

HANDLER_DECORATORS = frozenset({"get", "post", "put", "patch", "delete"})


def _litestar_names(tree: ast.Module) -> set[str]:
    """The route decorators this module imports from Litestar (as named there or aliased)."""
    return {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("litestar")
        for alias in node.names
        if alias.name in HANDLER_DECORATORS
    }


def _is_handler(func: ast.FunctionDef | ast.AsyncFunctionDef, decorators: set[str]) -> bool:
    for decorator in func.decorator_list:
        called = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(called, ast.Name) and called.id in decorators:
            return True
        if isinstance(called, ast.Attribute) and called.attr in HANDLER_DECORATORS:
            return _root(called) == "litestar"  # ``@litestar.get(...)``
    return False


def handlers_reaching_the_container(source: str, name: str = "<sample>") -> list[str]:
    tree = ast.parse(source, filename=name)
    decorators = _litestar_names(tree)
    found = []
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if not _is_handler(func, decorators):
            continue
        found += [
            f"{name}:{node.lineno} {func.name}"
            for node in ast.walk(func)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "services_of"
        ]
    return found


def test_route_handlers_take_their_services_by_name() -> None:
    found = []
    for path in python_files(*SCANNED):
        found += handlers_reaching_the_container(path.read_text(), relative(path))
    assert found == [], (
        "take the service as a named dependency (server.services.service_dependencies), "
        "or pass the function the few services it uses"
    )


def test_the_handler_scan_catches_a_handler_and_spares_helpers() -> None:
    handler = (
        "from litestar import get\n"
        "class Pages:\n"
        "    @get('/')\n"
        "    async def index(self, request):\n"
        "        return ServiceDesk(services_of(request))\n"
    )
    assert handlers_reaching_the_container(handler) == ["<sample>:5 index"]
    aliased = (
        "import litestar\n@litestar.post('/')\nasync def make(request):\n    services_of(request)\n"
    )
    assert handlers_reaching_the_container(aliased) == ["<sample>:4 make"]
    helper = (
        "from litestar import get\n"
        "async def flash(request, text):\n"
        "    await services_of(request).accounts.push_flash(text)\n"
        "def guard(connection, _):\n"
        "    services_of(connection).policy\n"
    )
    assert handlers_reaching_the_container(helper) == []
    # A ``get`` that is not Litestar's (a dict's, a cache's) is no route.
    other = "from functools import cache as get\n@get\ndef f(request):\n    services_of(request)\n"
    assert handlers_reaching_the_container(other) == []


# --- the vault stays behind the gateway --------------------------------------------------------

# Where the vault may be held: it lives there, the gateway seals for everyone else, and the
# composition roots build it and manage its key files. The import contract "Only the gateway
# reaches the vault" stops imports; this stops ``services.gateway.vault.seal_secret(...)``.
MAY_HOLD_THE_VAULT = ("server/vault/", "server/gateway/", "server/services.py", "server/cli/")


def vault_reached(source: str, name: str = "<sample>") -> list[str]:
    return [
        f"{name}:{node.lineno} {ast.unparse(node)}"
        for node in ast.walk(ast.parse(source, filename=name))
        if isinstance(node, ast.Attribute) and node.attr in {"vault", "_vault"}
    ]


def test_nothing_outside_the_gateway_reaches_the_vault() -> None:
    found = []
    for path in python_files(*SCANNED):
        name = relative(path)
        if not name.startswith(MAY_HOLD_THE_VAULT):
            found += vault_reached(path.read_text(), name)
    assert found == [], "ask the gateway (server/gateway/sealing.py)"


def test_the_vault_scan_catches_what_pages_and_exports_did() -> None:
    samples = {
        "vault = services_of(request).gateway.vault": True,
        "key = pseudonym_key(services.gateway.vault)": True,
        "self._vault.seal_secret(TOTP_LABEL, user, secret)": True,
        "key = services.gateway.derived_key(LABEL)": False,
        "sealed = self._sealing.seal_secret(LABEL, user, secret)": False,
    }
    for source, flagged in samples.items():
        assert bool(vault_reached(source)) is flagged, source
