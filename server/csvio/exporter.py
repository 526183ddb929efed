"""Records as CSV text, streamed page by page from a gateway :class:`Export`.

Only the columns the actor may read exist in the file; a page is formatted and handed on
before the next one is read, so neither the CLI nor the admin holds the whole export.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be run
as a formula by a spreadsheet (CSV injection, OWASP): it is prefixed with ``'``. The
importer strips that prefix again, so an exported file imports as it was. Amounts of
money are written in major units with a decimal point ("12500.00", next to the currency
column), which is what a spreadsheet and the importer read.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Iterable
from typing import Any

from server.gateway.bulk import Export
from server.money import plain_major

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> str:
    """One cell as text that no spreadsheet will evaluate."""
    if value is None:
        return ""
    text = value.isoformat() if hasattr(value, "isoformat") else str(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return text  # a number is data, even a negative one
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _lines(rows: Iterable[Iterable[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows([neutralise(v) for v in row] for row in rows)
    return buffer.getvalue()


async def csv_chunks(export: Export) -> AsyncIterator[str]:
    """The header, then one chunk of CSV text per page of records."""
    yield _lines([export.columns])
    meta = export.columns[len(export.fields) + 1 :]
    money = {
        name: spec.currency_from
        for name in export.fields
        if (spec := export.rt.by_name[name]).currency_from
    }
    async for page in export.pages():
        yield _lines(
            [
                record.id,
                *(
                    plain_major(record.values.get(name), record.values.get(money[name] or ""))
                    if name in money
                    else record.values.get(name)
                    for name in export.fields
                ),
                *(getattr(record, name) for name in meta),
            ]
            for record in page
        )
