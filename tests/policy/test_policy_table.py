"""The compiled decision table (policy.enforcer.DecisionTable) answers exactly what Casbin
answers: on every role, object and action of the shipped policy, and on generated rules
with wildcards anywhere, denials, role inheritance and effects Casbin ignores."""

from __future__ import annotations

import random
from pathlib import Path

import casbin

from policy.enforcer import MODEL_PATH, POLICY_PATH, PolicyEngine, compile_policy


def _disagreements(
    policy: Path, tmp_path: Path, objects: set[str], actions: set[str], extra_roles: set[str]
) -> list[tuple[str, str, str, bool]]:
    """Every (role, object, action) where the table and Casbin differ. Casbin takes about
    a millisecond per check here, so each role is asked of an enforcer holding only the
    rules that can apply to it (its own and its inherited roles'; every link is kept):
    Casbin's answer for that role is the same, and the run takes seconds, not minutes."""
    full = casbin.Enforcer(str(MODEL_PATH), str(policy))
    table = compile_policy(full)
    assert table is not None
    rules, links = full.get_policy(), full.get_grouping_policy()
    tmp_path.mkdir(parents=True, exist_ok=True)
    found = []
    for role in sorted({r[0] for r in rules} | {u for u, _ in links} | extra_roles):
        mine = {role, *full.get_implicit_roles_for_user(role)}
        lines = [", ".join(["p", *r]) for r in rules if r[0] in mine]
        lines += [", ".join(["g", *link]) for link in links]
        # Never empty: Casbin evaluates an empty policy's matcher once, with blank rule
        # values, and allows a blank request - which the whole policy never does.
        lines.append("p, table-test-nobody, -, -, allow")
        own = tmp_path / f"policy-{role or 'empty'}.csv"
        own.write_text("\n".join(lines) + "\n")
        enforcer = casbin.Enforcer(str(MODEL_PATH), str(own))
        found += [
            (role, obj, act, expected)
            for obj in sorted(objects)
            for act in sorted(actions)
            if table.allows(role, obj, act) != (expected := bool(enforcer.enforce(role, obj, act)))
        ]
    return found


def _concrete(patterns: set[str]) -> set[str]:
    """The patterns themselves, and keys a ``*`` in them matches or just fails to match."""
    keys = set(patterns)
    for pattern in patterns:
        star = pattern.find("*")
        if star != -1:
            prefix = pattern[:star]
            keys |= {prefix, prefix + "x", prefix[:-1]}
    return keys


def test_the_table_agrees_with_casbin_on_the_shipped_policy(tmp_path: Path) -> None:
    rules = casbin.Enforcer(str(MODEL_PATH), str(POLICY_PATH)).get_policy()
    objects = _concrete({r[1] for r in rules}) | {"contact.email", "unknown", ""}
    actions = _concrete({r[2] for r in rules}) | {"scope:none", "erase"}
    found = _disagreements(POLICY_PATH, tmp_path, objects, actions, {"intern", ""})
    assert found == []


OBJECTS = ("doc", "doc.title", "doc.body", "note", "notes", "purpose:mail", "a.b.c")
ACTIONS = ("read", "update", "scope:own", "scope:team", "assign:any", "use")


def _generated_policy(path: Path, seed: int) -> None:
    rng = random.Random(seed)  # noqa: S311 - test data, not secrets
    roles = ["r0", "r1", "r2", "r3", "r4"]

    def pattern(word: str) -> str:
        cut = rng.randrange(len(word) + 1)
        return rng.choice([word, word[:cut] + "*", word[:cut] + "*" + word[cut:], "*"])

    lines = []
    for _ in range(150):
        eft = rng.choices(["allow", "deny", "audit"], weights=[6, 3, 1])[0]
        lines.append(
            f"p, {rng.choice(roles)}, {pattern(rng.choice(OBJECTS))}, "
            f"{pattern(rng.choice(ACTIONS))}, {eft}"
        )
    # Inheritance, with a chain, a diamond and a cycle.
    lines += ["g, r0, r1", "g, r1, r2", "g, r3, r2", "g, r3, r4", "g, r4, r3", "g, alice, r0"]
    path.write_text("\n".join(lines) + "\n")


def test_the_table_agrees_with_casbin_on_generated_rules(tmp_path: Path) -> None:
    for seed in range(2):
        policy = tmp_path / f"generated-{seed}.csv"
        _generated_policy(policy, seed)
        rules = casbin.Enforcer(str(MODEL_PATH), str(policy)).get_policy()
        rng = random.Random(seed)  # noqa: S311 - test data, not secrets
        # The words the rules were made from, some of the patterns, and near misses.
        objects = {*OBJECTS, "doc.title.x", "do", "notesx", "zzz", ""}
        objects |= set(rng.sample(sorted({r[1] for r in rules}), 8))
        actions = {*ACTIONS, "scope:", "scope:all", "re", "delete", ""}
        actions |= set(rng.sample(sorted({r[2] for r in rules}), 8))
        found = _disagreements(policy, tmp_path / str(seed), objects, actions, {"bob"})
        assert found == [], seed


def test_a_model_the_table_does_not_implement_is_left_to_casbin(tmp_path: Path) -> None:
    model = tmp_path / "model.conf"
    model.write_text(MODEL_PATH.read_text().replace("keyMatch(r.act", "keyMatch2(r.act"))
    engine = PolicyEngine(model, POLICY_PATH)
    assert compile_policy(engine._enforcer) is None
    assert engine.allows("admin", "contact", "read")
    assert not engine.allows("intern", "contact", "read")
