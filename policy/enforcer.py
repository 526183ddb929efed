"""The authorization choke point.

``PolicyEngine.decide`` is the only producer of ``AccessDecision``: the constructor checks
a private token, so no other code can fabricate "allowed". A decision carries the fields
the role may touch and the record scope the gateway compiles into its SQL ``WHERE``.

Decisions depend only on (role, resource, action, purpose) and the policy files, which are
fixed for the life of a process, so they are cached; a role change takes effect on the
next request because the role is looked up per request, not cached here.

Casbin answers a check by evaluating the matcher against every rule (about 9 ms at 10,000
rules), so a cache miss on a large policy took most of a second. The rules are compiled
at load into a ``DecisionTable`` instead: Casbin still parses the model and the CSV, and
the table answers exactly what Casbin would for our model's matcher (tests/policy/test_policy.py
compares them on every role, object and action of the shipped policy and of generated
rules), in a few dictionary look-ups whatever the number of rules. A model with another
matcher or effect is not compiled: Casbin answers it directly.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import InitVar, dataclass
from functools import lru_cache
from pathlib import Path

import casbin

POLICY_DIR = Path(__file__).resolve().parent
MODEL_PATH = POLICY_DIR / "model.conf"
POLICY_PATH = POLICY_DIR / "policy.csv"

ROLES = ("admin", "sales", "support", "marketing", "compliance")
SYSTEM_ROLE = "system"  # seeding and background jobs (Actor.system), audited like staff
NEW_STAFF_ROLE = "sales"  # what the new-account form proposes (the admin picks)
# Rights that are not about records: asked with ``PolicyEngine.allows(role, *RIGHT)``.
MFA_RIGHT = ("mfa", "required")  # the role must sign in with a second factor

_MINT = object()
# A wider record scope or hand-over right includes the narrower one (role comparisons).
WIDER_ACTIONS = {
    "scope:own": ("scope:team", "scope:all"),
    "scope:team": ("scope:all",),
    "assign:self": ("assign:team", "assign:any"),
    "assign:team": ("assign:any",),
}


class Scope(enum.StrEnum):
    NONE = "none"
    OWN = "own"
    TEAM = "team"
    ALL = "all"


class Assign(enum.StrEnum):
    """Whom a role may make a record's owner (``owner_id`` and ``team`` decide record
    scope, so handing a record over is a policy decision like any other)."""

    NONE = "none"  # ownership stays as it is (a create: the actor and their team)
    SELF = "self"  # only themselves, in their own team
    TEAM = "team"  # an active colleague in their own team
    ANY = "any"  # any active staff user, any known team


@dataclass(frozen=True)
class TokenLimits:
    """What an API token narrows its role to: the purposes it may act for and, if set,
    the only fields it may touch (``"email"`` on every record type, or ``"contact.email"``).
    Part of every decision the token's calls get (hashable, so decisions stay cached)."""

    purposes: frozenset[str]
    fields: frozenset[str] | None = None  # None: every field the role may use

    def allows_field(self, resource: str, name: str) -> bool:
        return self.fields is None or name in self.fields or f"{resource}.{name}" in self.fields


@dataclass(frozen=True)
class AccessDecision:
    role: str
    resource: str
    action: str
    purpose: str
    allowed: bool
    scope: Scope
    fields: frozenset[str]  # fields this role may use for this action and purpose
    reason: str  # a short code for the audit log: never a value
    assign: Assign = Assign.NONE  # on create and update: whom the record may be handed to
    # An InitVar, not a field: dataclasses.replace() cannot copy it from a genuine decision.
    _token: InitVar[object] = None

    def __post_init__(self, _token: object) -> None:
        if _token is not _MINT:
            raise TypeError("AccessDecision is produced only by PolicyEngine.decide")


# The matcher and effect DecisionTable implements (as Casbin stores them, dots replaced).
COMPILED_MATCHER = "g(r_sub, p_sub) && keyMatch(r_obj, p_obj) && keyMatch(r_act, p_act)"
COMPILED_EFFECT = "some(where (p_eft == allow)) && !some(where (p_eft == deny))"
_ALLOW, _DENY = 1, 2
MAX_ROLE_HIERARCHY = 10  # Casbin's default role manager follows links this deep


class _PatternMap:
    """Casbin's ``keyMatch(key, pattern)`` over many patterns at once: a pattern without
    ``*`` matches itself only, one with ``*`` matches every key that starts with what comes
    before its first ``*`` (the rest of the pattern is ignored, as Casbin ignores it)."""

    __slots__ = ("exact", "lengths", "prefixes")

    def __init__(self) -> None:
        self.exact: dict[str, int] = {}
        self.prefixes: dict[str, int] = {}
        self.lengths: tuple[int, ...] = ()

    def add(self, pattern: str, effect: int) -> None:
        star = pattern.find("*")
        if star == -1:
            self.exact[pattern] = self.exact.get(pattern, 0) | effect
        else:
            prefix = pattern[:star]
            self.prefixes[prefix] = self.prefixes.get(prefix, 0) | effect
            self.lengths = tuple(sorted({*self.lengths, star}))

    def effects(self, key: str) -> int:
        found = self.exact.get(key, 0)
        for length in self.lengths:
            if length > len(key):
                break
            found |= self.prefixes.get(key[:length], 0)
        return found


class _ObjectMap:
    """Object pattern -> the action patterns of its rules (same matching as above)."""

    __slots__ = ("exact", "lengths", "prefixes")

    def __init__(self) -> None:
        self.exact: dict[str, _PatternMap] = defaultdict(_PatternMap)
        self.prefixes: dict[str, _PatternMap] = defaultdict(_PatternMap)
        self.lengths: tuple[int, ...] = ()

    def add(self, obj: str, act: str, effect: int) -> None:
        star = obj.find("*")
        if star == -1:
            self.exact[obj].add(act, effect)
        else:
            self.prefixes[obj[:star]].add(act, effect)
            self.lengths = tuple(sorted({*self.lengths, star}))

    def effects(self, obj: str, act: str) -> int:
        found = 0
        actions = self.exact.get(obj)
        if actions is not None:
            found |= actions.effects(act)
        for length in self.lengths:
            if length > len(obj):
                break
            actions = self.prefixes.get(obj[:length])
            if actions is not None:
                found |= actions.effects(act)
        return found


class DecisionTable:
    """The policy compiled for ``g(sub) && keyMatch(obj) && keyMatch(act)``, allow unless
    denied: per role, its rules indexed by object and action pattern."""

    def __init__(self, rules: Iterable[Sequence[str]], links: Iterable[Sequence[str]]) -> None:
        self._by_role: dict[str, _ObjectMap] = defaultdict(_ObjectMap)
        for sub, obj, act, eft, *_ in rules:
            effect = {"allow": _ALLOW, "deny": _DENY}.get(eft, 0)
            if effect:  # any other effect takes no part in the policy effect
                self._by_role[sub].add(obj, act, effect)
        parents: dict[str, set[str]] = defaultdict(set)
        for user, role, *_ in links:
            parents[user].add(role)
        self._roles: dict[str, tuple[str, ...]] = {}
        for name in {*parents, *(r for rs in parents.values() for r in rs)}:
            self._roles[name] = self._closure(name, parents)

    @staticmethod
    def _closure(name: str, parents: dict[str, set[str]]) -> tuple[str, ...]:
        """``name`` and the roles it has, as deep as Casbin looks."""
        seen, level = {name}, {name}
        for _ in range(MAX_ROLE_HIERARCHY - 1):
            level = {p for n in level for p in parents.get(n, ())} - seen
            if not level:
                break
            seen |= level
        return tuple(sorted(seen))

    def allows(self, sub: str, obj: str, act: str) -> bool:
        found = 0
        for role in self._roles.get(sub, (sub,)):
            objects = self._by_role.get(role)
            if objects is not None:
                found |= objects.effects(obj, act)
        return found == _ALLOW


def compile_policy(enforcer: casbin.Enforcer) -> DecisionTable | None:
    """The decision table for ``enforcer``'s rules, or None if its model is not the one the
    table implements (Casbin then answers every check itself)."""
    model = enforcer.get_model().model
    try:
        matcher = model["m"]["m"].value
        effect = model["e"]["e"].value
    except KeyError:
        return None
    if matcher != COMPILED_MATCHER or effect != COMPILED_EFFECT:
        return None
    return DecisionTable(enforcer.get_policy(), enforcer.get_grouping_policy())


class PolicyEngine:
    def __init__(self, model_path: Path = MODEL_PATH, policy_path: Path = POLICY_PATH) -> None:
        self._enforcer = casbin.Enforcer(str(model_path), str(policy_path))
        self._table = compile_policy(self._enforcer)
        self._decide = lru_cache(maxsize=4096)(self._decide_uncached)
        # Casbin checks are linear in the number of rules; the rules are fixed for the life
        # of the process, so every (role, object, action) answer can be kept.
        self._allows = lru_cache(maxsize=16384)(self._allows_uncached)
        self._within = lru_cache(maxsize=256)(self._role_within_uncached)

    def allows(self, role: str, obj: str, act: str) -> bool:
        return self._allows(role, obj, act)

    def _allows_uncached(self, role: str, obj: str, act: str) -> bool:
        if self._table is not None:
            return self._table.allows(role, obj, act)
        return bool(self._enforcer.enforce(role, obj, act))

    def decide(
        self,
        role: str,
        resource: str,
        action: str,
        purpose: str,
        field_names: tuple[str, ...],
        purpose_fields: frozenset[str],
        limits: TokenLimits | None = None,
    ) -> AccessDecision:
        return self._decide(role, resource, action, purpose, field_names, purpose_fields, limits)

    def role_within(self, narrow: str, wide: str, objects: Iterable[str] = ()) -> bool:
        """Whether ``narrow`` is no wider than ``wide`` (below); cached, as the policy is
        fixed for the life of the process (asked on every API token call)."""
        return self._within(narrow, wide, frozenset(objects))

    def _role_within_uncached(self, narrow: str, wide: str, objects: frozenset[str]) -> bool:
        """True if every right the policy gives ``narrow`` it also gives ``wide``: asked
        over every (object, action) any rule names, with ``objects`` (the data map's
        fields and purposes) and the policy's concrete actions standing in for patterns.
        An API token's role must be within its creator's (a token never widens what its
        creator may do)."""
        if narrow == wide:
            return True
        rules = [tuple(rule[:4]) for rule in self._enforcer.get_policy()]
        actions = {act for _, _, act, _ in rules if "*" not in act}
        named = {obj for _, obj, _, _ in rules} | set(objects)
        concrete = {obj for obj in named if "*" not in obj}
        return all(
            any(self.allows(wide, obj, a) for a in (act, *WIDER_ACTIONS.get(act, ())))
            for obj in concrete
            for act in actions
            if self.allows(narrow, obj, act)
        )

    def _decide_uncached(
        self,
        role: str,
        resource: str,
        action: str,
        purpose: str,
        field_names: tuple[str, ...],
        purpose_fields: frozenset[str],
        limits: TokenLimits | None = None,
    ) -> AccessDecision:
        def deny(reason: str) -> AccessDecision:
            return AccessDecision(
                role,
                resource,
                action,
                purpose,
                False,
                Scope.NONE,
                frozenset(),
                reason,
                _token=_MINT,
            )

        if not self.allows(role, f"purpose:{purpose}", "use"):
            return deny("purpose_not_allowed_for_role")
        if limits is not None and purpose not in limits.purposes:
            return deny("purpose_not_allowed_for_token")
        if not self.allows(role, resource, action):
            return deny("action_not_allowed")
        scope = next(
            (
                s
                for s in (Scope.ALL, Scope.TEAM, Scope.OWN)
                if self.allows(role, resource, f"scope:{s.value}")
            ),
            Scope.NONE,
        )
        if scope is Scope.NONE:
            return deny("no_record_scope")
        # Field rights: reads use "read"; "locate" (find ids by an exact e-mail or phone,
        # nothing returned) has its own; writes need the field's write action.
        if action == "locate":
            field_action = "locate"
        elif action in {"read", "list", "search", "export"}:
            field_action = "read"
        else:
            field_action = "update"
        fields = frozenset(
            name
            for name in field_names
            if name in purpose_fields
            and self.allows(role, f"{resource}.{name}", field_action)
            and (limits is None or limits.allows_field(resource, name))
        )
        assign = Assign.NONE
        if action in {"create", "update"}:
            assign = next(
                (
                    a
                    for a in (Assign.ANY, Assign.TEAM, Assign.SELF)
                    if self.allows(role, resource, f"assign:{a.value}")
                ),
                Assign.NONE,
            )
        return AccessDecision(
            role, resource, action, purpose, True, scope, fields, "allowed", assign, _MINT
        )
