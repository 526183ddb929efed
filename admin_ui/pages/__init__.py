"""Page controllers of the web admin, one module per area."""
