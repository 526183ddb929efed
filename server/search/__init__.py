"""Name search across record types: the ``POST /api/v1/search`` route (docs/search.md)."""
