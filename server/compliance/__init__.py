"""Compliance API: documents a data protection officer needs from the product itself."""
