"""Calendar import: meetings from .ics files or a CalDAV URL become interactions (issue 21)."""
