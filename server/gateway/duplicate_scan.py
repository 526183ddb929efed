"""Finding likely duplicate contacts (the first half of the duplicates feature; merging
them is :mod:`server.gateway.duplicates`), inside the actor's record scope only:

* **same e-mail / same phone**: contacts sharing a blind index are grouped in SQL
  (``GROUP BY email_bidx HAVING COUNT(*) > 1``), without reading anything. The index is
  truncated on purpose (about four records share a token per million rows), so a shared
  token is only a *candidate*: the one field of the candidates is decrypted in memory and
  compared in canonical form, so "same e-mail" is never claimed for two different
  addresses. That decryption is a read of personal data and is audited.
* **similar names**: the names of the newest :data:`NAME_SCAN_LIMIT` contacts in scope
  are decrypted (audited, one event per :data:`AUDIT_BATCH` people, like an export's
  pages), blocked by the first two letters of the first and of the last name (so a
  "Smith" is never compared with a "Jones", and swapped names still meet), and compared
  within a block with ``rapidfuzz``'s token-sort ratio.

A candidate names two contact ids and the reasons (``email``, ``phone``, ``name`` with a
score), never a value.
"""

from __future__ import annotations

import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from piccolo.querystring import QueryString
from rapidfuzz import fuzz, process

from policy.enforcer import AccessDecision
from server import db
from server.datamap import CONTACT, duplicate_match_fields
from server.gateway.actor import Actor
from server.gateway.duplicates import merge_decision
from server.gateway.events import allowed_event
from server.gateway.tables import Contact

if TYPE_CHECKING:
    from server.gateway.core import GatewayCore

NAME_SCAN_LIMIT = 5000  # newest contacts in scope whose names are compared per scan
NAME_SCORE = 91  # token-sort ratio: "Jon Smith"/"John Smith" 95, "Mary"/"Mark Smith" 90
EXACT_GROUP_LIMIT = 2000  # shared index tokens looked at per field per scan
MAX_PAIRS = 500  # candidate pairs returned per scan
AUDIT_BATCH = 500  # people per audit event of a scan
_CHUNK = 500  # ids per IN (...) list
_BLOCK = 2  # letters of a name that form a block


@dataclass(frozen=True)
class Reason:
    kind: str  # "email" | "phone" | "name"
    score: int = 100  # 100 for an exact match; the name similarity otherwise


@dataclass(frozen=True)
class Candidate:
    """Two contacts that may be one person, and why. Ids and reasons only."""

    first_id: str
    second_id: str
    reasons: tuple[Reason, ...]

    @property
    def score(self) -> int:
        return max(r.score for r in self.reasons)


@dataclass(frozen=True)
class Scan:
    pairs: list[Candidate]
    names_compared: int  # contacts whose names were compared
    name_limit: int
    names_capped: bool  # more contacts in scope than were compared by name
    pairs_capped: bool  # more pairs were found than returned
    # Contact id -> "First Last" for the contacts whose names the scan read (and audited
    # reading): the pairs page names them without reading each one again.
    names: dict[str, str] = field(default_factory=dict)


# --- helpers ---------------------------------------------------------------------------------


async def _audit_read(
    gw: GatewayCore, actor: Actor, purpose: str, subjects: Sequence[str], fields: Sequence[str]
) -> None:
    """A scan's decryption, one event per batch of people (fail closed: before use)."""
    for start in range(0, len(subjects), AUDIT_BATCH):
        batch = subjects[start : start + AUDIT_BATCH]
        async with db.write_transaction():
            await gw.audit.append(
                allowed_event(
                    actor,
                    "duplicates_scan",
                    CONTACT.resource,
                    purpose,
                    batch,
                    fields=fields,
                    detail={"people": len(batch)},
                )
            )


def _folded(text: str) -> str:
    """Lower case, accents and punctuation gone, single spaces: "Zoë O'Brien" -> "zoe obrien"."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    letters = "".join(c for c in decomposed if c.isalnum() or c.isspace())
    return " ".join(letters.split())


# --- detection -------------------------------------------------------------------------------


async def find_candidates(gw: GatewayCore, actor: Actor, *, purpose: str) -> Scan:
    """Likely duplicate pairs among the contacts in the actor's scope; see the module
    docstring. Needs the ``merge`` right; a field the role may not read is not used."""
    decision = await merge_decision(gw, actor, purpose)
    read = gw.decide(actor, CONTACT, "read", purpose)
    readable = read.fields if read.allowed else frozenset()
    reasons: dict[tuple[str, str], dict[str, Reason]] = defaultdict(dict)
    exact = duplicate_match_fields(CONTACT)
    for name in exact:
        if name in readable:
            for pair in await _exact_pairs(gw, actor, decision, purpose, name):
                reasons[pair][name] = Reason(name)
    compared, capped = 0, False
    names: dict[str, str] = {}
    if {"first_name", "last_name"} <= readable:
        pairs, compared, capped, names = await _name_pairs(gw, actor, decision, purpose)
        for pair, score in pairs.items():
            reasons[pair]["name"] = Reason("name", score)
    candidates = [
        Candidate(a, b, tuple(r[k] for k in (*exact, "name") if k in r))
        for (a, b), r in reasons.items()
    ]
    candidates.sort(key=lambda c: (-len(c.reasons), -c.score, c.first_id, c.second_id))
    async with db.write_transaction():
        await gw.audit.append(
            allowed_event(
                actor,
                "duplicates",
                CONTACT.resource,
                purpose,
                (),
                detail={"pairs": len(candidates), "names_compared": compared},
            )
        )
    return Scan(
        pairs=candidates[:MAX_PAIRS],
        names_compared=compared,
        name_limit=NAME_SCAN_LIMIT,
        names_capped=capped,
        pairs_capped=len(candidates) > MAX_PAIRS,
        names=names,
    )


async def _scoped(
    gw: GatewayCore, actor: Actor, decision: AccessDecision, purpose: str, query: Any
) -> Any:
    """Scope, visibility, restriction and consent in the WHERE, as for a list."""
    return await gw.with_basis(gw.in_scope(query, Contact, decision, actor), Contact, purpose)


def _pairs_of(ids: Sequence[str]) -> Iterable[tuple[str, str]]:
    ordered = sorted(ids)
    for i, first in enumerate(ordered):
        for second in ordered[i + 1 :]:
            yield first, second


async def _exact_pairs(
    gw: GatewayCore, actor: Actor, decision: AccessDecision, purpose: str, name: str
) -> list[tuple[str, str]]:
    spec = CONTACT.by_name[name]
    column = getattr(Contact, spec.index_column)
    grouped = await _scoped(gw, actor, decision, purpose, Contact.select(column))
    tokens = [
        row[spec.index_column]
        for row in await grouped.where(column.is_not_null())
        .group_by(column)
        .having(QueryString("COUNT(*) > 1"))
        .limit(EXACT_GROUP_LIMIT)
    ]
    pairs: list[tuple[str, str]] = []
    for start in range(0, len(tokens), _CHUNK):
        query = Contact.select(Contact.id, Contact.subject_id, getattr(Contact, name)).where(
            column.is_in(tokens[start : start + _CHUNK])
        )
        rows = await (await _scoped(gw, actor, decision, purpose, query))
        keys = await gw.vault.keys_for(str(r["subject_id"]) for r in rows)
        await _audit_read(gw, actor, purpose, [str(r["subject_id"]) for r in rows], [name])
        by_value: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            key = keys.get(str(row["subject_id"]))
            plain = row[name] and gw.decrypt_field(CONTACT, spec, str(row["id"]), key, row[name])
            if not isinstance(plain, str) or not plain:
                continue
            try:
                canonical = gw.vault.normalize(spec, plain)
            except ValueError:
                continue
            by_value[canonical].append(str(row["id"]))
        for ids in by_value.values():
            pairs.extend(_pairs_of(ids))
    return pairs


async def _name_pairs(
    gw: GatewayCore, actor: Actor, decision: AccessDecision, purpose: str
) -> tuple[dict[tuple[str, str], int], int, bool, dict[str, str]]:
    query = Contact.select(
        Contact.id, Contact.subject_id, Contact.first_name, Contact.last_name
    ).order_by(Contact.created_at, ascending=False)
    rows = await (await _scoped(gw, actor, decision, purpose, query)).limit(NAME_SCAN_LIMIT + 1)
    capped = len(rows) > NAME_SCAN_LIMIT
    rows = rows[:NAME_SCAN_LIMIT]
    keys = await gw.vault.keys_for(str(r["subject_id"]) for r in rows)
    await _audit_read(
        gw, actor, purpose, [str(r["subject_id"]) for r in rows], ["first_name", "last_name"]
    )
    first_spec, last_spec = CONTACT.by_name["first_name"], CONTACT.by_name["last_name"]
    blocks: dict[str, list[tuple[str, str]]] = defaultdict(list)  # block -> (id, full name)
    display: dict[str, str] = {}
    for row in rows:
        key = keys.get(str(row["subject_id"]))
        row_id = str(row["id"])
        first = row["first_name"] and gw.decrypt_field(
            CONTACT, first_spec, row_id, key, row["first_name"]
        )
        last = row["last_name"] and gw.decrypt_field(
            CONTACT, last_spec, row_id, key, row["last_name"]
        )
        first_f, last_f = _folded(first or ""), _folded(last or "")
        if not first_f and not last_f:
            continue  # a tombstone: nothing to compare
        display[row_id] = " ".join(str(n) for n in (first, last) if n)
        full = f"{first_f} {last_f}".strip()
        for part in {first_f[:_BLOCK], last_f[:_BLOCK]} - {""}:
            blocks[part].append((row_id, full))
    found: dict[tuple[str, str], int] = {}
    for members in blocks.values():
        names = [n for _, n in members]
        for i in range(len(members) - 1):
            matches = process.extract(
                names[i],
                names[i + 1 :],
                scorer=fuzz.token_sort_ratio,
                score_cutoff=NAME_SCORE,
                limit=None,
            )
            for _, score, offset in matches:
                a, b = sorted((members[i][0], members[i + 1 + offset][0]))
                if a != b:
                    found[(a, b)] = max(found.get((a, b), 0), round(score))
    return found, len(rows), capped, display
