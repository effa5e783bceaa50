"""``python -m aerie.cli``: the same command where the console script is not on PATH."""

from aerie.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
