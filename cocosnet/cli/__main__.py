"""``python -m cocosnet.cli``, as the ``cocosnet`` console script."""

from . import main

if __name__ == "__main__":
    raise SystemExit(main())
