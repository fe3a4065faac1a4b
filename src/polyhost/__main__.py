"""Allows `python -m polyhost ...`, the same as the `polyhost` command."""

from polyhost.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
