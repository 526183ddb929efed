"""Word tokens: name search over encrypted names, by whole word and by word prefix.

A name is normalised (accents removed, case folded, punctuation and spacing unified) and
split into words. Each word of three characters or more gives one token per prefix of at
least three characters, the whole word included ("todd" -> "tod", "todd"); a shorter word
("Li", "Wu") gives one whole-word token. A token is the exact-match blind index
(:mod:`server.vault.blind_index`) of ``p:<prefix>`` or ``w:<word>`` under a key of its own
per table and field (HKDF label ``<column>#words``), truncated to the same width rule, so
a token only narrows the search to a bucket of rows: the gateway decrypts the candidates
and checks them again. What the tokens reveal is written down in docs/search.md.
"""

from __future__ import annotations

import unicodedata

from server.vault.blind_index import blind_index

SHORTEST_PREFIX = 3  # "to" would put a third of all names in one bucket
LONGEST_PREFIX = 16  # longer prefixes add rows, not selectivity
MAX_WORDS = 8  # a title's first words; the rest are not indexed (bounds rows per record)

# Punctuation that joins the parts of one word ("O'Brien" is "obrien"); anything else
# that is not a letter or a digit separates words ("Jean-Luc" is "jean luc").
_JOINERS = frozenset("'\u2019\u02bc`\u00b4")  # apostrophes, typographic and modifier, grave, acute


def normalize_words(text: str) -> list[str]:
    """The words of ``text`` as they are indexed and searched: "José  O'Brien-Núñez" ->
    ["jose", "obrien", "nunez"]. Compatibility forms are folded (ﬁ -> fi), combining marks
    dropped (é -> e), case folded (ß -> ss)."""
    decomposed = unicodedata.normalize("NFKD", text)
    kept: list[str] = []
    for char in decomposed:
        if unicodedata.combining(char) or char in _JOINERS:
            continue
        kept.append(char if char.isalnum() else " ")
    folded = unicodedata.normalize("NFKC", "".join(kept).casefold())
    return folded.split()


def _label(word: str, *, prefix: bool) -> str:
    return ("p:" if prefix else "w:") + word


def index_terms(text: str) -> set[str]:
    """The labelled terms stored for one field value (before keying and truncation)."""
    terms: set[str] = set()
    for word in normalize_words(text)[:MAX_WORDS]:
        if len(word) < SHORTEST_PREFIX:
            terms.add(_label(word, prefix=False))
            continue
        for end in range(SHORTEST_PREFIX, min(len(word), LONGEST_PREFIX) + 1):
            terms.add(_label(word[:end], prefix=True))
    return terms


def query_term(word: str) -> str:
    """The labelled term a search word is looked up by: its prefix token (long words are
    cut to the longest prefix stored), or for a short word its whole-word token."""
    if len(word) < SHORTEST_PREFIX:
        return _label(word, prefix=False)
    return _label(word[:LONGEST_PREFIX], prefix=True)


def word_token(root: bytes, table: str, column: str, term: str, width: int) -> int:
    """The truncated HMAC of one labelled term under the field's own word-index key."""
    return blind_index(root, table, f"{column}#words", term, width)
