"""Does a message read like a data-subject request? Keyword patterns in English, German
and French, one list per kind of request (server.dsr.requests.KINDS). A match flags the
case for compliance with the kind only (a code); compliance opens the request with one
click. It is a prompt for a person, not a decision: nothing is refused or erased because
of it, and a missed phrasing is caught by staff reading the case as before.
"""

from __future__ import annotations

import re
import unicodedata

# Order matters: the first kind that matches is the flag (erasure before access, since
# "delete my data and send me a copy" is above all an erasure request).
PATTERNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "erasure",
        (
            r"\b(delete|erase|remove|wipe)\b.{0,30}\b(my|all my|our)\b.{0,20}"
            r"\b(data|details|account|information|personal data)",
            r"right to (be forgotten|erasure)",
            r"\bgdpr\b.{0,40}\b(delete|deletion|erasure)",
            r"\bl(o|oe)sch\w*\b.{0,40}\b(daten|konto|angaben)",
            r"\b(daten|konto|angaben)\b.{0,40}\bl(o|oe)sch\w*",
            r"recht auf (vergessenwerden|l(o|oe)schung)",
            r"\b(supprimer|supprimez|effacer|effacez)\b.{0,30}\b(mes|mon|toutes mes)\b.{0,20}"
            r"\b(donnees|compte|informations)",
            r"droit (a l'oubli|a l'effacement|de suppression)",
        ),
    ),
    (
        "objection",
        (
            r"\bi (object|am objecting) to\b",
            r"\b(stop|cease) (processing|using) my (data|personal data|details)",
            r"\bwiderspr(uch|eche)\w*\b.{0,40}\b(verarbeitung|nutzung|daten|werbung)",
            r"\bje m'oppose\b",
            r"\bopposition au traitement\b",
        ),
    ),
    (
        "restriction",
        (
            r"\brestrict(ion of)? (the )?processing\b",
            r"\beinschr(a|ae)nkung der verarbeitung\b",
            r"\blimitation du traitement\b",
        ),
    ),
    (
        "rectification",
        (
            r"\b(correct|rectify|update|fix)\b.{0,20}"
            r"\bmy (personal )?(data|details|record|address|name)\b",
            r"\brectification\b",
            r"\b(berichtigung|berichtigen)\b",
            r"\bcorriger\b.{0,20}\b(mes|mon)\b.{0,15}\b(donnees|adresse|nom)",
        ),
    ),
    (
        "portability",
        (
            r"\bdata portability\b",
            r"\bdaten(u|ue)bertragbarkeit\b",
            r"\bportabilite\b",
        ),
    ),
    (
        "access",
        (
            r"\bsubject access request\b",
            r"\b(copy|copies|export) of (all )?(my|the) (personal )?(data|information)\b",
            r"\bwhat (personal )?(data|information) (do )?you (hold|have|store|keep)\b",
            r"\baccess to my (personal )?(data|information)\b",
            r"\b(art\.?|article) ?15\b",
            r"\bauskunft\b.{0,40}\b(daten|gespeichert|dsgvo|art)",
            r"\bwelche daten\b",
            r"\bkopie meiner daten\b",
            r"\bdroit d'acces\b",
            r"\b(acces|copie) (a|de) (mes|toutes mes) (donnees|informations)",
            r"\bquelles donnees\b",
        ),
    ),
)
_COMPILED = tuple((kind, tuple(re.compile(p) for p in patterns)) for kind, patterns in PATTERNS)
SCANNED_CHARACTERS = 20_000  # what we store at most; long quoted histories are cut


def _folded(text: str) -> str:
    """Lower case, accents removed, ß as ss and typographic apostrophes straightened, so
    "Löschung" and "loschung" meet one pattern (the patterns allow "oe" too)."""
    text = text[:SCANNED_CHARACTERS].replace("\u2019", "'").replace("ß", "ss").casefold()
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return " ".join(plain.split())


def request_kind(*texts: str) -> str | None:
    """The kind of data-subject request these texts (a subject line, a body) read like,
    or None."""
    folded = _folded("\n".join(texts))
    for kind, patterns in _COMPILED:
        if any(p.search(folded) for p in patterns):
            return kind
    return None
