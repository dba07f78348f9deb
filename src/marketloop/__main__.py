"""``python -m marketloop``: the command line."""

from marketloop.cli import main

main()
