"""Segments and campaigns: saved contact filters, and mailings whose audience is computed by
the gateway under the campaign's purpose (consent, objections, restrictions in the SQL)."""
