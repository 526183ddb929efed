"""CSV import (contacts, organizations, leads) and export (every record type), through the
gateway: the policy decides, the vault encrypts, the audit log records ids and counts."""
