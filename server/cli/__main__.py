"""``python -m server.cli ...``: the same as the ``consentry`` console script (the server's
daily scoring runs ``python -m server.cli analytics score`` in a child process)."""

from server.cli import main

main()
