"""Amounts of money: stored as whole minor units, typed and shown in major units.

The database, the JSON API and the totals keep integers in the currency's smallest unit
(cents, pence, yen), so sums are exact and nothing rounds. People think in major units,
with the currency's own decimals: 12,500 EUR is 1250000 stored, 12,500 JPY is 12500.
Babel knows each currency's decimals (ISO 4217 via CLDR) and how a locale groups digits,
so this module never keeps its own table of either.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from babel.numbers import (
    NumberFormatError,
    format_currency,
    format_decimal,
    get_currency_precision,
    parse_decimal,
)

DEFAULT_LOCALE = "en"
# The deal amount column is a 32-bit integer on PostgreSQL.
MAX_MINOR = 2_147_483_647
NO_CURRENCY_DECIMALS = 2  # an amount without a currency is shown like most currencies
# Digits with grouping and decimal marks only: no exponents ("1e3"), no "NaN".
_NUMERAL = re.compile(r"[-+]?[0-9][0-9.,\u202f']*")


class AmountError(ValueError):
    """Typed text that is not an amount of the currency; the message says why, for a
    person (it never repeats the text)."""


def decimals_of(currency: str | None) -> int:
    """How many decimals ``currency`` has: 2 for EUR, 0 for JPY."""
    if not currency:
        return NO_CURRENCY_DECIMALS
    return int(get_currency_precision(currency))


def to_major(minor: int, currency: str | None) -> Decimal:
    """1250000, "EUR" -> Decimal("12500.00"); 12500, "JPY" -> Decimal("12500")."""
    places = decimals_of(currency)
    return Decimal(minor).scaleb(-places).quantize(Decimal(1).scaleb(-places))


def format_money(minor: int | None, currency: str | None, locale: str = DEFAULT_LOCALE) -> str:
    """Minor units as people read them: 1250000, "EUR" -> "12,500.00 EUR" (the ISO code
    after the number, so EUR, USD and CAD never share a "$"), with the currency's decimals
    and the locale's grouping. No amount: ""."""
    if minor is None:
        return ""
    major = to_major(int(minor), currency)
    if not currency:
        pattern = "#,##0." + "0" * NO_CURRENCY_DECIMALS
        return str(format_decimal(major, format=pattern, locale=locale))
    return str(
        format_currency(major, currency, format="#,##0.00 ¤¤", locale=locale, currency_digits=True)
    )


def plain_major(minor: int | None, currency: str | None) -> str:
    """Major units for files and form inputs: a decimal point, no grouping, the
    currency's decimals (1250000, "EUR" -> "12500.00"). Spreadsheets read it as a number."""
    if minor is None:
        return ""
    return str(to_major(int(minor), currency))


def parse_major(text: str, currency: str | None, locale: str = DEFAULT_LOCALE) -> int:
    """Typed major units -> minor units: "12,500.00" or "12500" EUR -> 1250000.

    Refused (:class:`AmountError`): anything that is not a number as the locale writes
    one ("12,50,0"), a negative amount, more decimals than the currency has (two for EUR,
    none for JPY), and amounts too large to store.
    """
    cleaned = text.strip().replace("\u00a0", "").replace(" ", "")
    if currency:
        cleaned = cleaned.removesuffix(currency).removeprefix(currency)
    if not cleaned:
        raise AmountError("enter an amount")
    if not _NUMERAL.fullmatch(cleaned):
        raise AmountError("enter the amount as a number, e.g. 12500 or 12,500.00")
    try:
        major = parse_decimal(cleaned, locale=locale, strict=True)
    except (NumberFormatError, InvalidOperation):
        raise AmountError("enter the amount as a number, e.g. 12500 or 12,500.00") from None
    if major < 0:
        raise AmountError("must not be negative")
    places = decimals_of(currency)
    exponent = major.normalize().as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        if places == 0:
            raise AmountError(f"{currency} has no decimals: enter a whole number")
        raise AmountError(f"{currency or 'the amount'} has at most {places} decimals")
    minor = int(major.scaleb(places))
    if minor > MAX_MINOR:
        raise AmountError(f"is too large (at most {format_money(MAX_MINOR, currency, locale)})")
    return minor
