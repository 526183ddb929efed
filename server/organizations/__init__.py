"""Organizations: the companies contacts belong to."""
