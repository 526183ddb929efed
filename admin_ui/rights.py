"""The policy rights the web admin's pages and menu ask for.

A page never names a role: its guard (``page_access(right=...)``) and its menu entry ask
the policy engine for one of these ``(resource, action)`` pairs, and policy/policy.csv
says which roles have it. tests/admin_ui/test_page_rights.py keeps it so.
"""

from __future__ import annotations

Right = tuple[str, str]

CONSOLE_RIGHT: Right = ("compliance_console", "view")  # the compliance console's pages
DSR_RIGHT: Right = ("dsr", "manage")  # data-subject requests, erasure, restriction, holds
ALERT_RIGHT: Right = ("alert", "manage")
CONSENT_RIGHT: Right = ("consent", "manage")
PROCESSING_RECORD_RIGHT: Right = ("processing_record", "read")
STAFF_RIGHT: Right = ("staff", "manage")  # staff accounts (also /api/v1/staff)
IMPORT_RIGHT: Right = ("import", "run")  # CSV imports (also /api/v1/imports)
PIPELINE_RIGHT: Right = ("pipeline", "manage")  # pipelines and their stages
