"""``python -m centrala``: the same as the ``centrala`` command."""

from centrala.cli import main

main()
