"""Deals, interactions and cases: the records kept about one person (``subject_from``)."""
