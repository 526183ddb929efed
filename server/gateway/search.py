"""Name search: find records by the words of a name or title, without decrypting the table.

The search term is normalised and split into words like the indexed values
(:mod:`server.vault.words`). Each word of three characters or more is looked up by its
prefix token in every indexed field the actor may read; a record is a candidate when each
word matches one of its fields. Candidates are read through the record scope (compiled
into the SQL, so an out-of-scope record is never read, counted or returned), at most
``CANDIDATE_CAP`` of them, newest first. Their names are decrypted and checked again (a
truncated token has false positives), and ranked: every word a whole word of the name,
then every word a prefix, then close spellings (``rapidfuzz``). A word shorter than three
characters ("Sharon T") only filters the candidates the longer words found.

Deals, cases and interactions are also found by the person or organization they are
about: the same search runs over the contacts and organizations the actor may search, and
the records pointing at those found are candidates too.

The term itself is never logged or audited; the audit event names the records returned.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from piccolo.table import Table
from rapidfuzz import fuzz

from audit.events import Action, Outcome
from policy.enforcer import AccessDecision
from server.datamap import RECORD_TYPES, Field, RecordType
from server.gateway import name_index
from server.gateway.actor import Actor
from server.gateway.errors import InvalidInput
from server.gateway.tables import TABLES, SearchToken
from server.vault.words import SHORTEST_PREFIX, normalize_words

if TYPE_CHECKING:
    from server.gateway.core import GatewayCore
    from server.gateway.results import Record

# Record types a name search covers, in the order results are grouped.
SEARCH_TYPES = ("contact", "lead", "organization", "deal", "case", "interaction")
CANDIDATE_CAP = 200  # rows decrypted per record type and query, at most
TYPEAHEAD_CANDIDATES = 50  # the least the all-types search reads per type
MAX_TERM = 200
MAX_WORDS = 6
MAX_PAGE_SIZE = 50
FUZZY_MIN = 75  # rapidfuzz ratio a misspelt word needs ("tood" ~ "todd" is 75)
EXACT, PREFIX, FUZZY = 0, 1, 2
# A record about a person or an organization is found by their name too.
_ABOUT = ("contact", "organization")


@dataclass(frozen=True)
class NameHits:
    resource: str
    items: builtins.list[Record]
    total: int  # matches among the candidates read (all in the actor's scope)
    page: int
    page_size: int
    capped: bool  # more candidates existed than were read: a longer term narrows it
    candidates: int  # rows whose names were decrypted


@dataclass(frozen=True)
class _Match:
    row: Mapping[str, Any]
    tier: int
    score: float
    name: str


def search_words(term: str) -> builtins.list[str]:
    """The words of a search term, or a 400 saying what a term needs."""
    if not isinstance(term, str) or len(term) > MAX_TERM:
        raise InvalidInput(
            f"q: expected a string of at most {MAX_TERM} characters",
            problems={"q": "invalid value"},
        )
    words = normalize_words(term)[:MAX_WORDS]
    if not words:
        raise InvalidInput(
            "q: enter at least one letter or digit", problems={"q": "must not be empty"}
        )
    return words


def may_search(gw: GatewayCore, actor: Actor, resource: str, purpose: str) -> bool:
    """Whether a name search of ``resource`` can find anything for this actor (a policy
    question, nothing read): the ``search`` right and a readable indexed field, or a
    readable reference to the people or organizations the actor may search."""
    rt = RECORD_TYPES[resource]
    decision = gw.decide(actor, rt, Action.SEARCH, purpose)
    if not decision.allowed:
        return False
    if _own_fields(rt, decision):
        return True
    return any(_about_fields(rt, decision))


def _own_fields(rt: RecordType, decision: AccessDecision) -> builtins.list[Field]:
    return [f for f in name_index.indexed_fields(rt) if f.name in decision.fields]


def _about_fields(rt: RecordType, decision: AccessDecision) -> builtins.list[Field]:
    if rt.subject_from is None:  # contacts, organizations, leads: their own names only
        return []
    return [
        f
        for f in rt.fields
        if f.references in _ABOUT and f.name in decision.fields and f.name.endswith("_id")
    ]


def _rank(words: Sequence[str], name_words: Sequence[str]) -> tuple[int, float] | None:
    """(tier, score) of a decrypted name against the search words, or None: no match."""
    if not name_words:
        return None
    tier = EXACT
    for word in words:
        if word in name_words:
            continue
        if any(w.startswith(word) for w in name_words):
            tier = max(tier, PREFIX)
            continue
        if len(word) < SHORTEST_PREFIX:
            return None  # an initial must be the start of a word
        best = max(fuzz.ratio(word, w[: len(word) + 1]) for w in name_words)
        if best < FUZZY_MIN:
            return None
        tier = FUZZY
    score = fuzz.token_sort_ratio(" ".join(words), " ".join(name_words))
    return tier, score


def _misspellings(word: str) -> builtins.list[str]:
    """Prefixes a misspelt word may have been meant to start with: its own first three
    letters, its first four with one letter left out ("tood" -> "tod"), and the first
    three with two neighbours swapped ("otd" -> "tod")."""
    if len(word) <= SHORTEST_PREFIX:
        return [word]
    head = word[: SHORTEST_PREFIX + 1]
    found = {word[:SHORTEST_PREFIX]}
    found |= {head[:i] + head[i + 1 :] for i in range(len(head))}
    three = word[:SHORTEST_PREFIX]
    found |= {three[:i] + three[i + 1] + three[i] + three[i + 2 :] for i in range(2)}
    return sorted(found)


def _better(one: tuple[int, float], other: tuple[int, float]) -> bool:
    return (one[0], -one[1]) < (other[0], -other[1])


class NameSearch:
    """One name search over one record type for one actor (see the module docstring)."""

    def __init__(
        self,
        gw: GatewayCore,
        actor: Actor,
        rt: RecordType,
        decision: AccessDecision,
        cap: int = CANDIDATE_CAP,
    ) -> None:
        self.gw, self.actor, self.rt, self.decision = gw, actor, rt, decision
        self.cap = max(1, min(cap, CANDIDATE_CAP))
        self.table: type[Table] = TABLES[rt.resource]
        self.own = _own_fields(rt, decision)

    def _token_condition(self, lookups: Sequence[Sequence[str]]) -> Any | None:
        """Each word matches a token (of any of its spellings in ``lookups``) of one of the
        readable indexed fields."""
        if not self.own:
            return None
        long_words = [spellings for spellings in lookups if len(spellings[0]) >= SHORTEST_PREFIX]
        condition: Any = None
        pk = self.table._meta.primary_key
        for spellings in long_words or lookups:
            tokens = sorted(
                {self.gw.vault.query_token(self.rt, f, w) for f in self.own for w in spellings}
            )
            sub = SearchToken.select(SearchToken.record_id).where(
                (SearchToken.record_type == self.rt.resource) & SearchToken.token.is_in(tokens)
            )
            part = pk.is_in(sub)
            condition = part if condition is None else condition & part
        return condition

    async def candidates(
        self,
        lookups: Sequence[Sequence[str]],
        about: Mapping[str, Mapping[str, tuple[int, float]]],
    ) -> tuple[builtins.list[Mapping[str, Any]], bool]:
        """Rows in scope that the tokens (or the people they are about) point to."""
        parts = []
        own = self._token_condition(lookups)
        if own is not None:
            parts.append(own)
        for spec in _about_fields(self.rt, self.decision):
            found = about.get(spec.references or "", {})
            if found:
                parts.append(getattr(self.table, spec.name).is_in([uuid.UUID(i) for i in found]))
        if not parts:
            return [], False
        condition = parts[0]
        for part in parts[1:]:
            condition = condition | part
        # Only what matching and ranking need: the page's rows are read whole afterwards.
        wanted = {"id", "subject_id", "created_at"}
        wanted |= {f.name for f in self.own} | {
            f.name for f in _about_fields(self.rt, self.decision)
        }
        columns = [getattr(self.table, name) for name in sorted(wanted)]
        query = self.gw.in_scope(
            self.table.select(*columns).where(condition), self.table, self.decision, self.actor
        )
        query = await self.gw.with_basis(query, self.table, self.decision.purpose)
        rows = await (
            query.order_by(getattr(self.table, "created_at"), ascending=False)
            .order_by(self.table._meta.primary_key)
            .limit(self.cap + 1)
        )
        return rows[: self.cap], len(rows) > self.cap

    async def matches(
        self,
        words: Sequence[str],
        about: Mapping[str, Mapping[str, tuple[int, float]]],
        *,
        relaxed: bool = False,
    ) -> tuple[builtins.list[_Match], int, bool]:
        """Candidates decrypted (indexed fields only), checked and ranked."""
        lookups = [_misspellings(w) if relaxed else [w] for w in words]
        rows, capped = await self.candidates(lookups, {} if relaxed else about)
        keys = await self.gw.vault.keys_for(str(r["subject_id"]) for r in rows)
        found: builtins.list[_Match] = []
        for row in rows:
            key = keys.get(str(row["subject_id"]))
            texts = []
            for spec in self.own:
                raw = row.get(spec.name)
                if raw is None:
                    continue
                plain = (
                    self.gw.decrypt_field(self.rt, spec, str(row["id"]), key, raw)
                    if spec.encrypted
                    else raw
                )
                if plain:
                    texts.append(str(plain))
            name = " ".join(texts)
            ranked = _rank(words, normalize_words(name)) if texts else None
            for spec in _about_fields(self.rt, self.decision):
                via = about.get(spec.references or "", {}).get(str(row.get(spec.name)))
                if via is not None and (ranked is None or _better(via, ranked)):
                    ranked = via
            if ranked is None or (relaxed and ranked[0] != FUZZY):
                continue
            found.append(_Match(row, ranked[0], ranked[1], name.casefold()))
        return found, len(rows), capped

    async def ranked(
        self, words: Sequence[str], about: Mapping[str, Mapping[str, tuple[int, float]]]
    ) -> tuple[builtins.list[_Match], int, bool]:
        found, candidates, capped = await self.matches(words, about)
        if not found and any(len(w) > SHORTEST_PREFIX for w in words) and self.own:
            # Nothing by prefix: look again by each word's first letters, keep close spellings.
            found, more, capped = await self.matches(words, about, relaxed=True)
            candidates += more
        found.sort(key=lambda m: (m.tier, -m.score, m.name, str(m.row["id"])))
        return found, candidates, capped


async def _about_matches(
    gw: GatewayCore,
    actor: Actor,
    rt: RecordType,
    decision: AccessDecision,
    words: Sequence[str],
    cap: int = CANDIDATE_CAP,
) -> dict[str, dict[str, tuple[int, float]]]:
    """{"contact": {id: (tier, score)}, ...} of the people and organizations this record
    type points to that match, as far as the actor may search them (nothing audited: only
    the records returned in the end are, by the caller)."""
    about: dict[str, dict[str, tuple[int, float]]] = {}
    for spec in _about_fields(rt, decision):
        target = spec.references or ""
        if target in about:
            continue
        other = RECORD_TYPES[target]
        other_decision = gw.decide(actor, other, Action.SEARCH, decision.purpose)
        if not other_decision.allowed:
            continue
        found, _, _ = await NameSearch(gw, actor, other, other_decision, cap).ranked(words, {})
        about[target] = {str(m.row["id"]): (m.tier, m.score) for m in found}
    return about


async def search_names(
    gw: GatewayCore,
    actor: Actor,
    resource: str,
    term: str,
    *,
    purpose: str,
    page: int = 1,
    page_size: int = 20,
    candidates: int = CANDIDATE_CAP,
) -> NameHits:
    """One record type's name search: a page of ranked matches, audited with their ids.
    ``candidates``: how many records to read at most (the typeahead reads fewer)."""
    rt = RECORD_TYPES.get(resource)
    if rt is None or resource not in SEARCH_TYPES:
        raise InvalidInput(
            "name search covers: " + ", ".join(SEARCH_TYPES), problems={"type": "not searchable"}
        )
    if not 1 <= page <= 1000 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(
            f"page must be between 1 and 1000 and page_size between 1 and {MAX_PAGE_SIZE}"
        )
    words = search_words(term)
    op = await gw.authorize(actor, resource, Action.SEARCH, purpose=purpose, detail={"by": "name"})
    decision = op.decision
    search = NameSearch(gw, actor, rt, decision, candidates)
    about = await _about_matches(gw, actor, rt, decision, words, candidates)
    found, candidates, capped = await search.ranked(words, about)
    chosen = found[(page - 1) * page_size : page * page_size]
    table = TABLES[rt.resource]
    pk = table._meta.primary_key
    rows = (
        {
            str(r["id"]): r
            for r in await table.select().where(pk.is_in([m.row["id"] for m in chosen]))
        }
        if chosen
        else {}
    )
    keys = await gw.vault.keys_for(str(m.row["subject_id"]) for m in chosen)
    items = [
        gw.materialize(
            rt, rows[str(m.row["id"])], keys.get(str(m.row["subject_id"])), decision.fields
        )
        for m in chosen
        if str(m.row["id"]) in rows
    ]
    await gw.audit_access(
        actor,
        rt,
        Action.SEARCH,
        Outcome.ALLOWED,
        purpose,
        subject_ids=tuple(dict.fromkeys(i.subject_id for i in items)),
        fields=decision.fields,
        detail={
            "by": "name",
            "candidates": candidates,
            "returned": len(items),
            "total": len(found),
            "ids": ",".join(i.id for i in items),
        },
    )
    return NameHits(rt.resource, items, len(found), page, page_size, capped, candidates)


async def search_everything(
    gw: GatewayCore,
    actor: Actor,
    term: str,
    *,
    purpose: str,
    types: Sequence[str] = SEARCH_TYPES,
    per_type: int = 5,
) -> builtins.list[NameHits]:
    """The header search: the first matches of each type the actor may search, in
    ``SEARCH_TYPES`` order; a type the role cannot search is left out (not even a count)."""
    unknown = [t for t in types if t not in SEARCH_TYPES]
    if unknown:
        raise InvalidInput(
            "types: name search covers " + ", ".join(SEARCH_TYPES),
            problems={"types": "unknown record type"},
        )
    search_words(term)
    results = []
    for resource in SEARCH_TYPES:
        if resource in types and may_search(gw, actor, resource, purpose):
            results.append(
                await search_names(
                    gw,
                    actor,
                    resource,
                    term,
                    purpose=purpose,
                    page_size=per_type,
                    # A few per type (the typeahead's 4) need not read 200 candidates each.
                    candidates=max(TYPEAHEAD_CANDIDATES, per_type * 10),
                )
            )
    return results
