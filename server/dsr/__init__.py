"""Data-subject rights (GDPR Art. 15-22): what a person may ask of us about their data.

This package builds the answers; the portal, the request workflow, erasure and retention
call it. ``export`` builds the signed subject-access / portability bundle.
"""

from server.dsr.export import ExportBundle, NoRecords, build_export
from server.dsr.export_format import ExportVerification, export_schema, verify_export
from server.dsr.third_parties import staff_pseudonym

__all__ = [
    "ExportBundle",
    "ExportVerification",
    "NoRecords",
    "build_export",
    "export_schema",
    "staff_pseudonym",
    "verify_export",
]
