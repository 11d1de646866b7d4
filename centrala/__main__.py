"""``python -m centrala``: the same as the ``centrala`` command."""

from centrala.cli import main

if __name__ == "__main__":
    main()
