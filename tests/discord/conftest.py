from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

# pytest puts this directory on sys.path (no __init__.py: a package here would be
# called "discord" and hide the library).
from emulator import DiscordEmulator


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def emu() -> AsyncIterator[DiscordEmulator]:
    """One emulated Discord per test module (the bot under test keeps connecting to it)."""
    emulator = DiscordEmulator()
    await emulator.start()
    yield emulator
    await emulator.close()
