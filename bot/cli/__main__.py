"""`python -m bot.cli`: the same as `stylebot`."""

import sys

from bot.cli.main import main

sys.exit(main())
