"""Import jobs: what an admin's upload is doing, readable by any worker.

A job row holds counts, field names, line numbers and reasons - never a value from the
file. The file itself lives only in the memory of the worker running the import: personal
data is not parked on disk or in the database waiting to be imported. If that worker
stops, the job stays ``running`` with a stale ``updated_at`` and is shown as interrupted;
uploading the file again finishes it, because rows already imported are skipped.
"""

from __future__ import annotations

from piccolo.columns import UUID, Boolean, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class ImportJob(Table, tablename="import_job"):
    id = UUID(primary_key=True)
    started_by = Integer(index=True)  # staff user id
    resource = Varchar(length=16)
    dry_run = Boolean(default=True)
    status = Varchar(length=16, default="running")  # running | done | failed
    total_rows = Integer(default=0)
    processed_rows = Integer(default=0)
    created = Integer(default=0)
    skipped = Integer(default=0)
    bad_lines = Integer(default=0)
    report_entries = Integer(default=0)  # all of them; ``report`` keeps the first ones
    report = Text(default="")  # JSON [[line, field, reason], ...]
    ignored_columns = Text(default="")  # JSON {header: why}
    error = Varchar(length=300, default="")
    started_at = Timestamptz()
    updated_at = Timestamptz()
    finished_at = Timestamptz(null=True, default=None)
