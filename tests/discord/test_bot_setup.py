"""Command definitions as Discord receives them, and start-up errors an operator sees."""

from __future__ import annotations

import asyncio
import importlib.metadata
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from bot_helpers import REPO, STYLE_PACK, make_settings
from emulator import DiscordEmulator

from bot.app import describe_reach, log_style_pack, push_commands
from stylizer import presets
from stylizer.params import limits

pytestmark = pytest.mark.asyncio(loop_scope="module")

MANAGE_GUILD = 1 << 5


def by_name(commands: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    return {(c["name"], c.get("type", 1)): c for c in commands}


async def test_global_sync_sends_every_command_with_ranges_from_style_params(
        emu: DiscordEmulator, tmp_path: Path) -> None:
    synced = await push_commands(make_settings(emu, tmp_path))
    commands = by_name(emu.global_commands)
    assert set(commands) == {("stylize", 1), ("styles", 1), ("history", 1), ("job", 1),
                             ("cancel", 1), ("stylebot", 1), ("forget", 1),
                             ("Stylize image", 3)}
    assert len(synced) == len(commands)

    options = {o["name"]: o for o in commands[("stylize", 1)]["options"]}
    assert options["image"]["type"] == 11
    assert options["image"]["required"] is True
    assert options["style"]["type"] == 3
    assert options["style"]["autocomplete"] is True
    assert options["style_image"]["type"] == 11
    assert not options["style_image"].get("required")
    lim = limits()
    assert options["strength"]["type"] == 10
    assert (options["strength"]["min_value"], options["strength"]["max_value"]) == (
        lim["style_weight"].min, lim["style_weight"].max)
    assert options["size"]["type"] == 4
    assert (options["size"]["min_value"], options["size"]["max_value"]) == (
        lim["size"].min, lim["size"].max)
    assert options["preserve_colors"]["type"] == 5
    assert options["private"]["type"] == 5
    assert all(len(o["description"]) <= 100 for o in options.values())
    assert len(commands[("stylize", 1)]["description"]) <= 100

    job = commands[("job", 1)]["options"]
    assert [(o["name"], o["type"], o["required"]) for o in job] == [("id", 3, True)]
    admin = commands[("stylebot", 1)]
    assert int(admin["default_member_permissions"]) == MANAGE_GUILD
    assert [(o["name"], o["type"]) for o in admin["options"]] == [("stats", 1)]


async def test_sync_offers_every_command_everywhere_but_the_servers_own(
        emu: DiscordEmulator, tmp_path: Path) -> None:
    """Discord's integration types (0 a server's install, 1 a user's own) and interaction
    contexts (0 servers, 1 the bot's DM, 2 group DMs and DMs between users)."""
    await push_commands(make_settings(emu, tmp_path))
    synced = {c["name"]: c for c in emu.global_commands}
    # What `stylebot sync` prints of each.
    assert describe_reach(synced["stylize"]) == (
        "/stylize: through a server's install or a user's own; in servers, the bot's DM, "
        "group DMs and other DMs")
    assert describe_reach(synced["Stylize image"]).startswith(
        "Stylize image: through a server's install or a user's own;")
    assert describe_reach(synced["stylebot"]) == (
        "/stylebot: through a server's install; in servers")
    commands = by_name(emu.global_commands)
    admin = commands.pop(("stylebot", 1))
    assert (admin["integration_types"], admin["contexts"]) == ([0], [0])
    assert admin["dm_permission"] is False
    for name, command in commands.items():
        assert sorted(command["integration_types"]) == [0, 1], name
        assert sorted(command["contexts"]) == [0, 1, 2], name


async def test_guild_sync_puts_the_same_commands_in_one_guild(emu: DiscordEmulator,
                                                              tmp_path: Path) -> None:
    await push_commands(make_settings(emu, tmp_path), emu.guild_id)
    guild = by_name(emu.guild_commands[emu.guild_id])
    assert set(guild) == set(by_name(emu.global_commands))
    assert all(c["guild_id"] == str(emu.guild_id) for c in guild.values())


async def run_bot_process(env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, err.decode()


def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("STYLEBOT_", "DISCORD_"))}
    env["STYLEBOT_DATA_DIR"] = str(tmp_path / "data")
    return env


async def test_missing_token_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    code, err = await run_bot_process(base_env(tmp_path))
    assert code == 2
    assert "DISCORD_TOKEN" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


async def test_rejected_token_is_one_line_and_never_printed(emu: DiscordEmulator,
                                                            tmp_path: Path) -> None:
    env = base_env(tmp_path)
    env.update(DISCORD_TOKEN="not-the-token-123", DISCORD_API_BASE=emu.api_base,
               DISCORD_GATEWAY_URL=emu.gateway_url, STYLEBOT_DEVICE="cpu")
    code, err = await run_bot_process(env)
    assert code == 2
    assert "rejected" in err
    assert "Traceback" not in err
    assert "not-the-token-123" not in err


async def test_discord_py_is_the_pinned_version() -> None:
    # The emulator and `point_discord_py_at` are written against this version's wire
    # format and internals; a new version must be checked against them first.
    assert importlib.metadata.version("discord.py") == "2.7.1"


async def test_python_m_bot_connects_and_stops_cleanly_on_sigterm(emu: DiscordEmulator,
                                                                  tmp_path: Path) -> None:
    env = base_env(tmp_path)
    env.update(DISCORD_TOKEN=emu.token, DISCORD_API_BASE=emu.api_base,
               DISCORD_GATEWAY_URL=emu.gateway_url, STYLEBOT_DEVICE="cpu",
               STYLEBOT_WORKERS="1", STYLEBOT_STYLES_DIR=str(STYLE_PACK))
    identifies = emu.identifies
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    try:
        await emu.wait_for(lambda: emu.identifies > identifies, 120)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = err.decode()
    assert proc.returncode == 0, text
    assert "stopping (signal received)" in text
    assert "Traceback" not in text
    assert emu.token not in text
    paintings = sum(p.source == "pack" for p in presets.catalogue())
    assert f"style pack {STYLE_PACK}: {paintings} of {paintings} paintings" in text


async def test_start_up_warns_when_no_painting_can_be_offered(
        emu: DiscordEmulator, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="bot.app"):
        log_style_pack(make_settings(emu, tmp_path, styles_dir=tmp_path / "empty"))
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert "no paintings found" in record.getMessage()
    assert "STYLEBOT_STYLES_DIR" in record.getMessage()
