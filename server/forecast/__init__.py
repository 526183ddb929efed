"""The sales forecast and staff performance (issue 20, item 1)."""
