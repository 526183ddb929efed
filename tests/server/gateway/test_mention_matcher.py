"""The mention matcher runs, for each text, only the patterns whose first word the text
holds (an export withholding a thousand people was 5 ms a text with all of them); it must
find exactly what one alternation of every pattern finds, which erasure and exports rely on."""

from __future__ import annotations

import random
import re

from server.gateway.mentions import Identity, Matcher, folded, origins

PEOPLE = [
    Identity(("Anna", "Anna Maria Lind", "anna@example.com")),
    Identity(("Anna Maria",)),
    Identity(("Seán O\u2019Brien", "O'Brien")),
    Identity(("Smith-Jones", "Alex Smith-Jones", "alex.smith-jones@example.org")),
    Identity(("José Núñez",)),
    Identity(("Li Wu",)),
    Identity(("'Bo",)),  # starts with a non-word character: looked for in every text
]
TEXTS = [
    "Met Anna Maria Lind and anna@example.com; Anna later.",
    "anna@example.com.au is not Anna's address, anna@example.com is",
    "Call Sean O'Brien or o\u2019brien, not OBrien",
    "alex smith jones wrote from alex.smith-jones@example.org.",
    "JOSE NUNEZ and José  Núñez, Li Wu, Liwu, li-wu",
    "nobody here at all",
    "said 'Bo twice, 'bo",
    "Anna-Maria Lind",
]


def _everything_at_once(regex: re.Pattern[str], text: str) -> list[tuple[int, int]]:
    origin = origins(text)
    return [(origin[m.start()], origin[m.end()]) for m in regex.finditer(folded(text))]


def test_the_longest_name_wins_and_words_must_be_whole() -> None:
    matcher = Matcher(PEOPLE, "GB")
    text = TEXTS[0]
    assert [text[s:e] for s, e in matcher.spans(text)] == [
        "Anna Maria Lind",
        "anna@example.com",
        "Anna",
    ]
    assert [TEXTS[4][s:e] for s, e in matcher.spans(TEXTS[4])] == [
        "JOSE NUNEZ",
        "José  Núñez",
        "Li Wu",
        "li-wu",
    ]
    assert matcher.spans("nobody here at all") == []
    assert [TEXTS[6][s:e] for s, e in matcher.spans(TEXTS[6])] == ["'Bo", "'bo"]


def test_each_text_finds_what_one_alternation_of_every_pattern_finds() -> None:
    rng = random.Random(7)  # noqa: S311 - reproducible test data, not a secret
    words = ["anna", "maria", "lind", "li", "wu", "o'brien", "smith", "jones", "met", "and"]
    separators = [" ", "-", ", ", ". ", "  ", "@example.com "]
    people = [*PEOPLE]
    for i in range(300):  # many people who share first words, as an export's others do
        first, last = rng.choice(words), rng.choice(words)
        people.append(Identity((f"{first} {last}", f"{first}.{last}{i}@example.com")))
    matcher = Matcher(people, "GB")
    texts = [*TEXTS]
    for _ in range(400):
        texts.append("".join(rng.choice(words).title() + rng.choice(separators) for _ in range(12)))
    # The rule before the split: one alternation of every pattern over the folded text.
    everything = re.compile("|".join(matcher._patterns))
    for text in texts:
        assert matcher.spans(text) == _everything_at_once(everything, text)
