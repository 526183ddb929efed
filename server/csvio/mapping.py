"""Which field a spreadsheet column is: exact names and labels, the synonyms other CRMs and
spreadsheets use ("Surname", "Given name", "Mail", "Mobile", "Company"), then a fuzzy
guess with ``rapidfuzz`` for near misses ("E-Mail Adresse", "Phone no").

The import command uses the exact part (names, labels, synonyms): a file it accepts must
mean the same thing every time. The admin's mapping screen also shows the fuzzy guesses,
as suggestions a person confirms before anything is imported.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from rapidfuzz import fuzz, process

from server.datamap import RecordType

FUZZY_CUTOFF = 85  # rapidfuzz ratio (0-100); below this a guess is more often wrong

# Synonyms by field name, squashed (see ``squash``); used wherever the type has the field.
SYNONYMS: Mapping[str, tuple[str, ...]] = {
    "first_name": ("forename", "givenname", "firstname", "christianname", "fname", "vorname"),
    "last_name": ("surname", "lastname", "familyname", "lname", "nachname"),
    "email": ("email", "mail", "emailaddress", "mailaddress", "emailadresse"),
    "phone": (
        "tel",
        "telephone",
        "telno",
        "phoneno",
        "phonenumber",
        "mobile",
        "mobilephone",
        "mobilenumber",
        "cell",
        "cellphone",
        "telefon",
    ),
    "job_title": ("jobtitle", "position"),
    "address_line": ("address", "street", "streetaddress", "addressline1"),
    "city": ("town", "locality"),
    "postcode": ("zip", "zipcode", "postalcode", "postcode", "plz"),
    "birth_date": ("dob", "dateofbirth", "birthday", "birthdate"),
    "domain": ("website", "web", "url", "site", "webdomain"),
    "employee_count": ("employees", "headcount", "staff"),
}
# "Company" means a different field in each type (a contact's company is another record,
# which an import cannot link: it is reported, not guessed).
COMPANY = ("company", "companyname", "organisation", "organization", "employer", "account")
COMPANY_FIELD: Mapping[str, str] = {"lead": "company_name", "organization": "name"}


def squash(name: str) -> str:
    """A header as it is compared: case, spaces, ``-``, ``_`` and ``.`` ignored."""
    return re.sub(r"[\s_\-.]+", "", name).casefold()


def known_names(rt: RecordType) -> dict[str, str]:
    """Squashed header -> field: the field's name, its label, its synonyms."""
    known: dict[str, str] = {}
    for spec in rt.fields:
        known.setdefault(squash(spec.name), spec.name)
        known.setdefault(squash(spec.label), spec.name)
    for spec in rt.fields:
        for synonym in SYNONYMS.get(spec.name, ()):
            known.setdefault(synonym, spec.name)
    company = COMPANY_FIELD.get(rt.resource)
    if company is not None:
        for synonym in COMPANY:
            known.setdefault(synonym, company)
    return known


def suggest(
    rt: RecordType, header: Sequence[str], allowed: frozenset[str]
) -> dict[int, str | None]:
    """Column position -> the field it most likely is (None: no good guess), each field at
    most once: exact names first, then the best fuzzy matches. ``allowed`` are the
    fields the column may go to (settable by the role, not references)."""
    known = {k: v for k, v in known_names(rt).items() if v in allowed}
    chosen: dict[int, str | None] = dict.fromkeys(range(len(header)))
    taken: set[str] = set()
    for position, raw in enumerate(header):
        target = known.get(squash(raw))
        if target is not None and target not in taken:
            chosen[position] = target
            taken.add(target)
    guesses: list[tuple[float, int, str]] = []
    for position, raw in enumerate(header):
        if chosen[position] is not None or not squash(raw):
            continue
        found = process.extractOne(
            squash(raw), list(known), scorer=fuzz.ratio, score_cutoff=FUZZY_CUTOFF
        )
        if found is not None:
            guesses.append((float(found[1]), position, known[found[0]]))
    for _score, position, target in sorted(guesses, reverse=True):
        if target not in taken:
            chosen[position] = target
            taken.add(target)
    return chosen
