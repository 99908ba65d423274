"""`python -m kit`: the command line (kit/cli.py)."""

from kit.cli import main

# Guarded: job processes re-import the main module as __mp_main__.
if __name__ == "__main__":
    raise SystemExit(main())
