"""In-process micro-figures: the unit costs behind the end-to-end ratios.

Timings use ``time.perf_counter_ns`` loops: each repeat runs the operation until a time
budget is spent, and the figure is the median over repeats of the per-call time, which
is robust against the other processes sharing this machine.
"""

from __future__ import annotations

import asyncio
import functools
import os
import statistics
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.events import Action, AuditEvent, Outcome
from audit.log import AuditLog
from audit.signing import TreeHeadSigner
from audit.trail import AuditTrail
from policy.enforcer import MODEL_PATH, POLICY_PATH, PolicyEngine
from server import db
from server.background import seal_forever
from server.datamap import CONTACT, normalize_email
from server.migrate import apply_migrations
from server.vault import DataKey
from server.vault.blind_index import blind_index, index_width
from server.vault.envelope import field_ad, open_field, parse_field, seal_field

TYPICAL_EMAIL = "grace.hopper.48213@example.org"
LARGE_POLICY_RULES = 10_000


def per_call_ns(
    operation: Callable[[], object],
    *,
    budget_s: float = 0.2,
    repeats: int = 5,
    min_calls: int = 3,
) -> float:
    """Median over ``repeats`` of the mean time per call within a ``budget_s`` loop.

    Slow operations (a Casbin check over 10,000 rules takes most of a second) pass
    ``budget_s=0, min_calls=1``: each repeat is then a single timed call.
    """
    results: list[float] = []
    for _ in range(repeats):
        calls = 0
        started = time.perf_counter_ns()
        deadline = started + int(budget_s * 1e9)
        now = started
        while now < deadline or calls < min_calls:
            operation()
            calls += 1
            now = time.perf_counter_ns()
        results.append((now - started) / calls)
    return statistics.median(results)


def _us(ns: float) -> float:
    return round(ns / 1000, 3)


def field_crypto() -> dict[str, Any]:
    """AES-256-GCM envelope of a typical e-mail, sealed and opened as the vault does: with
    the key's cipher built once per key and operation (``DataKey.cipher``), and, for
    comparison, with a cipher built for every field (what the vault did before)."""
    data_key = DataKey(str(uuid.uuid4()), 1, os.urandom(32))
    key, cipher = data_key.key, data_key.cipher
    ad = field_ad("contact", "email", str(uuid.uuid4()), data_key.subject_id, 1)
    token = seal_field(cipher, 1, TYPICAL_EMAIL, ad)

    def seal() -> None:
        seal_field(cipher, 1, TYPICAL_EMAIL, ad)

    def open_() -> None:
        _, raw = parse_field(token)
        open_field(cipher, raw, ad)

    def roundtrip() -> None:
        _, raw = parse_field(seal_field(cipher, 1, TYPICAL_EMAIL, ad))
        open_field(cipher, raw, ad)

    def roundtrip_new_cipher() -> None:
        _, raw = parse_field(seal_field(key, 1, TYPICAL_EMAIL, ad))
        open_field(key, raw, ad)

    def aead_only() -> None:
        nonce = os.urandom(12)
        cipher.decrypt(nonce, cipher.encrypt(nonce, TYPICAL_EMAIL.encode(), ad), ad)

    return {
        "encrypt_decrypt_us": _us(per_call_ns(roundtrip)),
        "encrypt_us": _us(per_call_ns(seal)),
        "decrypt_us": _us(per_call_ns(open_)),
        "encrypt_decrypt_new_cipher_us": _us(per_call_ns(roundtrip_new_cipher)),
        "aead_only_us": _us(per_call_ns(aead_only)),
        "what": "seal_field + parse_field + open_field of a 30-character e-mail, the key's "
        "cipher built once per key and operation (DataKey.cipher)",
    }


def blind_index_cost() -> dict[str, Any]:
    root = os.urandom(32)
    width = index_width(CONTACT.expected_rows)
    normalized = normalize_email(TYPICAL_EMAIL)
    hmac_ns = per_call_ns(lambda: blind_index(root, "contact", "email", normalized, width))
    norm_ns = per_call_ns(lambda: normalize_email(TYPICAL_EMAIL))
    return {
        "blind_index_us": _us(hmac_ns),
        "normalize_email_us": _us(norm_ns),
        "index_token_us": _us(hmac_ns + norm_ns),
        "width_bits": width,
        "what": "blind_index = HMAC-SHA256 under the cached per-field key, truncated; "
        "index_token (what a search or write pays) = e-mail normalisation + blind_index",
    }


def write_large_policy(path: Path, rules: int = LARGE_POLICY_RULES) -> int:
    """The shipped policy plus synthetic rules for other roles and resources, to ``rules``."""
    shipped = POLICY_PATH.read_text()
    have = sum(1 for line in shipped.splitlines() if line.startswith("p,"))
    lines = [shipped.rstrip("\n"), "", "# --- synthetic rules for the benchmark ---"]
    actions = ("read", "update", "list", "create")
    for i in range(rules - have):
        role = f"bench_role_{i % 250:03d}"
        resource = f"bench_resource_{(i // 250) % 40:02d}"
        target = resource if i % 3 == 0 else f"{resource}.field_{i % 17:02d}"
        lines.append(f"p, {role}, {target}, {actions[i % len(actions)]}, allow")
    path.write_text("\n".join(lines) + "\n")
    return rules


def policy_decisions(workdir: Path) -> dict[str, Any]:
    """``_decide_uncached`` (a cache miss) and ``decide`` (a hit), shipped and 10,000 rules."""
    field_names = tuple(f.name for f in CONTACT.fields)
    purpose = "customer_relationship"
    purpose_fields = frozenset(f.name for f in CONTACT.fields if purpose in f.purposes)
    large = workdir / "policy-10000.csv"
    write_large_policy(large)
    out: dict[str, Any] = {
        "what": "PolicyEngine._decide_uncached (the lru_cache miss path: purpose, action, "
        "scope and one Casbin check per field) and PolicyEngine.decide (a cache hit), "
        "for contact/read under customer_relationship, with the per-check cache cleared "
        "before each call so every Casbin check really runs; allows_uncached = one Casbin "
        "enforce; allows = the cached check the gateway uses to pick the default purpose",
    }
    for label, engine in (
        ("shipped", PolicyEngine()),
        (f"{LARGE_POLICY_RULES}_rules", PolicyEngine(MODEL_PATH, large)),
    ):
        out[label] = _policy_figures(engine, purpose, field_names, purpose_fields)
    return out


def _policy_figures(
    engine: PolicyEngine, purpose: str, field_names: tuple[str, ...], purpose_fields: frozenset[str]
) -> dict[str, Any]:
    rules = len(engine._enforcer.get_policy())
    figures: dict[str, Any] = {"rules": rules}
    # Large policies make one uncached decision take long: time single calls instead.
    slow: dict[str, Any] = (
        {"budget_s": 0.3, "repeats": 3} if rules < 1000 else {"budget_s": 0, "min_calls": 1}
    )

    def cold(args: tuple[Any, ...]) -> None:
        engine._allows.cache_clear()  # a true miss: no Casbin answer remembered
        engine._decide_uncached(*args)

    for role in ("admin", "sales"):
        args = (role, "contact", "read", purpose, field_names, purpose_fields)
        figures[f"uncached_{role}_us"] = _us(per_call_ns(functools.partial(cold, args), **slow))
        engine.decide(*args)  # fill the cache: the loop below measures hits only
        figures[f"cached_{role}_us"] = _us(per_call_ns(functools.partial(engine.decide, *args)))
    figures["allows_uncached_us"] = _us(
        per_call_ns(lambda: engine._allows_uncached("admin", f"purpose:{purpose}", "use"), **slow)
    )
    engine.allows("admin", f"purpose:{purpose}", "use")
    figures["allows_us"] = _us(
        per_call_ns(lambda: engine.allows("admin", f"purpose:{purpose}", "use"))
    )
    return figures


def _event(i: int) -> AuditEvent:
    return AuditEvent(
        actor_id="user:1",
        actor_role="admin",
        action=Action.READ,
        resource_type="contact",
        outcome=Outcome.ALLOWED,
        purpose="customer_relationship",
        resource_id=str(uuid.uuid4()),
        subject_ids=(str(uuid.uuid4()),),
        fields=tuple(f.name for f in CONTACT.fields),
        reason="allowed",
        request_id=f"bench-{i:08d}",
    )


async def audit_append(
    database_url: str, events: int, *, writers: int = 8, readers: int = 64
) -> dict[str, Any]:
    """Events/s appending audit events, with a sealer alongside.

    ``sequential``: one writer, one event per transaction (as a write's own transaction
    carries its event). ``concurrent``: ``writers`` such tasks at once in one process
    (they serialise on the database's writer lock / advisory lock). ``grouped``:
    ``readers`` tasks at once committing their events as reads do
    (``AuditLog.append_committed``: whatever waits goes into one transaction).
    Sealing is on throughout, as in a server worker: a sealer signs a tree head every
    250 ms over whatever was appended.
    """
    engine = db.set_engine(db.engine_for_url(database_url))
    await db.start(engine)
    try:
        await apply_migrations()
        signer = TreeHeadSigner(Ed25519PrivateKey.generate())
        log = AuditLog(signer.entry_mac())
        trail = AuditTrail(signer)
        stop = asyncio.Event()
        sealer = asyncio.create_task(seal_forever(trail, 0.25, stop))

        async def append(i: int) -> None:
            async with db.write_transaction():
                await log.append(_event(i))

        started = time.perf_counter()
        for i in range(events):
            await append(i)
        sequential = time.perf_counter() - started

        async def writer(first: int) -> None:
            for i in range(first, first + events // writers):
                await append(i)

        started = time.perf_counter()
        await asyncio.gather(*(writer(events + w * events) for w in range(writers)))
        concurrent = time.perf_counter() - started
        concurrent_events = writers * (events // writers)

        async def reader(first: int) -> None:
            for i in range(first, first + events // readers):
                await log.append_committed(_event(i))

        commits_before = log.group_stats.commits
        started = time.perf_counter()
        await asyncio.gather(*(reader(3 * events + r * events) for r in range(readers)))
        grouped = time.perf_counter() - started
        grouped_events = readers * (events // readers)
        grouped_commits = log.group_stats.commits - commits_before
        stop.set()
        await sealer
        heads = len((await trail.export_checkpoints())["heads"])
        started = time.perf_counter()
        await trail.seal_all()
        seal_s = time.perf_counter() - started
        started = time.perf_counter()
        report = await trail.verify()
        verify_s = time.perf_counter() - started
    finally:
        await db.stop(engine)
    return {
        "sequential_events_per_s": round(events / sequential, 1),
        "concurrent_events_per_s": round(concurrent_events / concurrent, 1),
        "concurrent_writers": writers,
        "grouped_events_per_s": round(grouped_events / grouped, 1),
        "grouped_readers": readers,
        "grouped_events_per_commit": round(grouped_events / max(1, grouped_commits), 1),
        "events": events + concurrent_events + grouped_events,
        "verify_events_per_s": round(report.checked / verify_s, 1) if verify_s else 0.0,
        "heads_signed_while_appending": heads,
        "final_seal_seconds": round(seal_s, 3),
        "chain_ok": report.ok,
        "what": "AuditLog.append, one event per write transaction, hash chain, with a "
        "sealer signing a Merkle tree head every 250 ms alongside",
        "what_grouped": "AuditLog.append_committed, as every read, list and search appends: "
        "the events waiting in one process committed together (group commit)",
    }
