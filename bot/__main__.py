"""`python -m bot`: the same as `stylebot run`."""

from __future__ import annotations

import sys

from bot.app import run_bot
from bot.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        sys.stderr.write(f"stylebot: {exc}\n")
        return 2
    return run_bot(settings)


if __name__ == "__main__":
    sys.exit(main())
