"""Other people in a person's copy of their data (GDPR Art. 15(4)): the names, addresses
and numbers of other people we hold data about are withheld from the person's free text,
and staff appear by role and a stable pseudonym, never by name (the same pseudonym as in
the portal's access log). ``server.dsr.export`` builds the bundle with these.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from server.auth.directory import staff_identities
from server.consent.model import SUBJECT_ACTOR
from server.datamap import RECORD_TYPES, Category, FieldKind, RecordType
from server.gateway import Gateway
from server.gateway.mentions import ANOTHER_PERSON, IDENTIFYING, Identity, Matcher, fold_key

PSEUDONYM_INFO = b"consentry/dsr/staff-pseudonym/v1"
EXCERPT_GAP = " … "  # between two sentences of one field that mention the person
_SENTENCE_END = re.compile(r"[.!?]+(?=\s)|\n")
WITHHELD_REASON = (
    "Names, e-mail addresses and phone numbers of other people we hold data about are "
    f'replaced by "{ANOTHER_PERSON}": a copy of your data must not adversely affect the '
    "rights and freedoms of others (GDPR Art. 15(4)). Our staff are shown by role and "
    "reference, as in the access log, never by name or e-mail address."
)


@dataclass(frozen=True)
class WithheldType:
    """In how many of the person's records of one type other people were withheld, and in
    which fields: what the export reports and a compliance officer reviews (no values)."""

    record_type: str
    label: str
    records: int
    fields: tuple[str, ...]


@dataclass(frozen=True)
class RedactionSummary:
    """What an export withholds, without a single withheld value."""

    withheld: tuple[WithheldType, ...]
    mentions: int  # excerpts of other people's records that mention the person
    mentions_withheld: int  # of those, excerpts in which other people were withheld
    mention_types: Mapping[str, int]  # record type -> excerpts

    @property
    def total(self) -> int:
        return sum(w.records for w in self.withheld)


# --- pseudonyms and labels ----------------------------------------------------------------


def pseudonym_key(gateway: Gateway) -> bytes:
    """From the master key's index root (never rotated): a person sees the same pseudonym
    for the same member of staff in every export, years apart."""
    return gateway.derived_key(PSEUDONYM_INFO)


def staff_pseudonym(key: bytes, actor_id: str) -> str:
    """The stable pseudonym an export shows for a staff account id such as ``user:12``."""
    return hmac.new(key, actor_id.encode(), hashlib.sha256).hexdigest()[:10]


def actor_label(key: bytes, actor_id: str, role: str) -> str:
    """How an actor appears to the person: never a staff name, e-mail or account id."""
    if actor_id == SUBJECT_ACTOR:
        return "you"
    if actor_id.startswith("system:"):
        return f"automated job ({actor_id.removeprefix('system:')})"
    if actor_id.startswith("token:"):  # an API token (a website, another system): issue 19
        return f"API client #{staff_pseudonym(key, actor_id)}"
    return f"{role or 'staff'} #{staff_pseudonym(key, actor_id)}"


# --- other people: withheld from the person's copy (Art. 15(4)) -------------------------


def free_text_names(rt: RecordType) -> list[str]:
    return [f.name for f in rt.fields if f.category is Category.FREE_TEXT]


def _sentences(text: str) -> list[tuple[int, int]]:
    bounds = [0, *(m.end() for m in _SENTENCE_END.finditer(text)), len(text)]
    return [(start, end) for start, end in itertools.pairwise(bounds) if start < end]


def excerpt(text: str, spans: Iterable[tuple[int, int]]) -> str:
    """The sentences of ``text`` that hold a mention (a line or up to a full stop), runs of
    neighbouring sentences kept together, others left out and marked by an ellipsis."""
    sentences = _sentences(text)
    chosen = [
        i
        for i, (start, end) in enumerate(sentences)
        if any(s < end and start < e for s, e in spans)
    ]
    runs: list[list[int]] = []
    for i in chosen:
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    parts = [text[sentences[run[0]][0] : sentences[run[-1]][1]].strip() for run in runs]
    return EXCERPT_GAP.join(p for p in parts if p)


def own_names(held: Mapping[str, list[dict[str, Any]]]) -> set[str]:
    """The person's own names and addresses (as :func:`fold_key` keys), from their records."""
    own: set[str] = set()
    for resource, docs in held.items():
        fields = [f for f in RECORD_TYPES[resource].fields if f.category in IDENTIFYING]
        for doc in docs:
            values = [str(doc[f.name]) for f in fields if doc.get(f.name)]
            names = [
                str(doc[f.name]) for f in fields if doc.get(f.name) and f.kind is FieldKind.TEXT
            ]
            own.update(fold_key(v) for v in [*values, " ".join(names)])
    return own


async def staff_pseudonyms(
    key: bytes, region: str, own: Collection[str] = ()
) -> Callable[[str], tuple[str, int]]:
    """Replaces a staff member's full name (two words or more) or e-mail address in free
    text by the label the access log shows for them (``sales #1a2b...``) - except a name or
    address that is the person's own (``own``: a person who also works for us)."""
    labels: dict[str, str] = {}
    identities = []
    for user_id, name, email, role in await staff_identities():
        label = actor_label(key, f"user:{user_id}", role)
        # A full name of two words or more ("Sam Staff"): a one-word display name such as
        # "Admin" would turn every "admin" in a note into a pseudonym.
        full_name = " ".join(name.split())
        texts = tuple(
            t
            for t in (full_name if " " in full_name else "", email.strip())
            if t and fold_key(t) not in own
        )
        labels.update({fold_key(t): label for t in texts})
        identities.append(Identity(texts))
    matcher = Matcher(identities, region)

    def pseudonymise(text: str) -> tuple[str, int]:
        if matcher.empty:
            return text, 0
        return matcher.replace_each(text, lambda found: labels.get(fold_key(found), "staff"))

    return pseudonymise


def withheld_json(summary: RedactionSummary) -> dict[str, Any]:
    return {
        "marker": ANOTHER_PERSON,
        "reason": WITHHELD_REASON,
        "record_types": [
            {
                "record_type": w.record_type,
                "label": w.label,
                "records": w.records,
                "fields": list(w.fields),
            }
            for w in summary.withheld
        ],
        "total": summary.total,
        "mentions": summary.mentions_withheld,
    }
