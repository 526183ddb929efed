"""Leads: the generic record API, conversion, and the public web form."""
