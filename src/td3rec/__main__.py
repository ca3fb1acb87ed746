"""Allow ``python -m td3rec``."""

from td3rec.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
