"""The emulator's user-installable apps, alone (no bot): where an interaction says it was
made and through which installs, where Discord offers a command, and what the bot may
not reach (servers and DMs it is not in)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from emulator import CommandUnavailable, DiscordEmulator, Interaction
from emulator_model import ADMINISTRATOR

# As discord.py sends them: `None` where the bot set nothing.
EVERYWHERE = {"name": "everywhere", "type": 1, "description": "", "options": [],
              "contexts": [0, 1, 2], "integration_types": [0, 1]}
GUILD_INSTALL_ONLY = {"name": "serverwide", "type": 1, "description": "", "options": [],
                      "contexts": [0, 1, 2], "integration_types": [0]}
USER_INSTALL_ONLY = {"name": "mine", "type": 1, "description": "", "options": [],
                     "contexts": [0, 1, 2], "integration_types": [1]}
UNSET = {"name": "plain", "type": 1, "description": "", "options": [], "contexts": None,
         "integration_types": None}
SERVERS_ONLY = {"name": "stylebot", "type": 1, "description": "", "contexts": [0],
                "integration_types": [0], "dm_permission": False,
                "options": [{"name": "stats", "type": 1, "description": "", "options": []}]}
CONTEXT_MENU = {"name": "Stylize image", "type": 3, "description": "",
                "contexts": [0, 1, 2], "integration_types": [0, 1]}
COMMANDS = [EVERYWHERE, GUILD_INSTALL_ONLY, USER_INSTALL_ONLY, UNSET, SERVERS_ONLY,
            CONTEXT_MENU]


@pytest_asyncio.fixture
async def emu() -> AsyncIterator[DiscordEmulator]:
    """A Discord of the test's own, with the commands above synced globally."""
    emulator = DiscordEmulator(shard_count=2)
    await emulator.start()
    status, _ = await bot_call(emulator, "PUT",
                               f"/applications/{emulator.app_id}/commands", COMMANDS)
    assert status == 200
    yield emulator
    await emulator.close()


async def bot_call(emu: DiscordEmulator, method: str, path: str, body: Any = None
                   ) -> tuple[int, Any]:
    """A REST call as the bot makes it."""
    async with aiohttp.ClientSession() as http, http.request(
            method, emu.api_base + path, json=body,
            headers={"Authorization": f"Bot {emu.token}"}) as r:
        return r.status, (await r.json() if r.status != 204 else None)


class Shard:
    """A raw gateway connection, identified as one shard."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.guild_ids: list[str] = []  # the servers of READY's GUILD_CREATEs
        self.ready: dict[str, Any] = {}

    async def interaction(self) -> dict[str, Any]:
        """The next INTERACTION_CREATE's payload."""
        while True:
            frame = await self.ws.receive_json(timeout=5)
            if frame.get("t") == "INTERACTION_CREATE":
                return dict(frame["d"])


async def connect(emu: DiscordEmulator, http: aiohttp.ClientSession, shard: int = 0) -> Shard:
    ws = await http.ws_connect(emu.gateway_url)
    assert (await ws.receive_json(timeout=5))["op"] == 10
    await ws.send_json({"op": 2, "d": {"token": emu.token, "intents": 0, "properties": {},
                                       "shard": [shard, emu.shard_count]}})
    conn = Shard(ws)
    conn.ready = (await ws.receive_json(timeout=5))["d"]
    for _ in conn.ready["guilds"]:
        conn.guild_ids.append((await ws.receive_json(timeout=5))["d"]["id"])
    await emu.wait_for(lambda: emu.connections >= 1, 5)
    return conn


@pytest_asyncio.fixture
async def gateway(emu: DiscordEmulator) -> AsyncIterator[Shard]:
    """Shard 0 of 2 (where the emulator's own servers and the DMs are)."""
    async with aiohttp.ClientSession() as http:
        yield await connect(emu, http)


async def received(gateway: Shard, ix: Interaction) -> dict[str, Any]:
    payload = await gateway.interaction()
    assert payload["id"] == str(ix.id)
    return payload


# ---- where an interaction says it was made ------------------------------------------
async def test_a_server_with_the_bot(emu: DiscordEmulator, gateway: Shard) -> None:
    gid = str(emu.guild_id)
    d = await received(gateway, await emu.slash("everywhere", emu.admin))
    assert d["context"] == 0
    assert d["guild_id"] == gid
    assert d["guild"] == {"id": gid, "locale": "en-US", "features": []}
    assert d["channel"]["type"] == 0
    assert d["channel"]["guild_id"] == gid
    assert int(d["member"]["permissions"]) & ADMINISTRATOR
    assert "user" not in d
    assert d["authorizing_integration_owners"] == {"0": gid}

    emu.install_for(emu.alice)
    d = await received(gateway, await emu.slash("everywhere", emu.alice))
    assert d["authorizing_integration_owners"] == {"0": gid, "1": str(emu.alice.id)}


async def test_a_server_without_the_bot(emu: DiscordEmulator) -> None:
    """Only through the user's own install; the interaction goes to its server's shard,
    and its admin is still an admin there."""
    far = emu.add_guild("No Bot", shard=1, owner=emu.mallory, members=[emu.alice],
                        bot_member=False)
    with pytest.raises(CommandUnavailable, match="in a server without the bot"):
        await emu.slash("everywhere", emu.mallory, guild=far)
    emu.install_for(emu.mallory)
    async with aiohttp.ClientSession() as http:
        shard0, shard1 = await connect(emu, http, 0), await connect(emu, http, 1)
        assert str(far.id) not in shard1.guild_ids + shard0.guild_ids  # not in READY
        assert {g["id"] for g in shard0.ready["guilds"] + shard1.ready["guilds"]} == {
            str(emu.guild_id), str(emu.other_guild.id)}
        d = await received(shard1, await emu.slash("everywhere", emu.mallory, guild=far))
    assert d["context"] == 0
    assert d["guild_id"] == str(far.id)
    assert d["guild"]["id"] == str(far.id)
    assert int(d["member"]["permissions"]) & ADMINISTRATOR
    assert d["authorizing_integration_owners"] == {"1": str(emu.mallory.id)}
    with pytest.raises(CommandUnavailable, match="integration_types are \\[0\\]"):
        await emu.slash("serverwide", emu.mallory, guild=far)


async def test_the_bots_dm(emu: DiscordEmulator, gateway: Shard) -> None:
    d = await received(gateway, await emu.slash("everywhere", emu.bob, dm=True))
    assert d["context"] == 1
    assert not {"guild_id", "guild", "member"} & set(d)
    assert d["user"]["id"] == str(emu.bob.id)
    assert d["channel"]["type"] == 1
    assert d["authorizing_integration_owners"] == {"0": "0"}

    emu.install_for(emu.bob)
    d = await received(gateway, await emu.slash("plain", emu.bob, dm=True))
    assert d["authorizing_integration_owners"] == {"0": "0"}  # integration_types: [0]
    d = await received(gateway, await emu.slash("everywhere", emu.bob, dm=True))
    assert d["authorizing_integration_owners"] == {"0": "0", "1": str(emu.bob.id)}


async def test_a_group_dm_and_a_dm_between_users(emu: DiscordEmulator,
                                                 gateway: Shard) -> None:
    group = emu.group_dm(emu.alice, emu.bob, emu.mallory)
    pair = emu.private_dm(emu.alice, emu.bob)
    emu.install_for(emu.alice)
    d = await received(gateway, await emu.slash("everywhere", emu.alice, channel_id=group))
    assert d["context"] == 2
    assert not {"guild_id", "guild", "member"} & set(d)
    assert d["user"]["id"] == str(emu.alice.id)
    assert d["channel"]["type"] == 3
    assert {u["id"] for u in d["channel"]["recipients"]} == {str(emu.bob.id),
                                                            str(emu.mallory.id)}
    assert d["authorizing_integration_owners"] == {"1": str(emu.alice.id)}

    d = await received(gateway, await emu.slash("mine", emu.alice, channel_id=pair))
    assert d["context"] == 2
    assert d["channel"]["type"] == 1
    assert [u["id"] for u in d["channel"]["recipients"]] == [str(emu.bob.id)]
    assert d["authorizing_integration_owners"] == {"1": str(emu.alice.id)}

    with pytest.raises(CommandUnavailable, match=r"in a group DM: .*bob has not installed"):
        await emu.slash("everywhere", emu.bob, channel_id=group)


async def test_owners_follow_the_commands_integration_types(emu: DiscordEmulator,
                                                            gateway: Shard) -> None:
    emu.install_for(emu.alice)
    gid, uid = str(emu.guild_id), str(emu.alice.id)
    for name, owners in (("serverwide", {"0": gid}), ("plain", {"0": gid}),
                         ("mine", {"1": uid}), ("everywhere", {"0": gid, "1": uid})):
        d = await received(gateway, await emu.slash(name, emu.alice))
        assert d["authorizing_integration_owners"] == owners, name


# ---- where Discord offers a command ---------------------------------------------------
async def test_a_server_only_command_is_not_offered_in_dms(emu: DiscordEmulator) -> None:
    emu.install_for(emu.admin)
    with pytest.raises(CommandUnavailable,
                       match=r"not offer /stylebot in the bot's DM: its contexts are \[0\]"):
        await emu.slash("stylebot", emu.admin, subcommand="stats", dm=True)
    group = emu.group_dm(emu.admin, emu.bob)
    with pytest.raises(CommandUnavailable, match="not offer /stylebot in a group DM"):
        await emu.slash("stylebot", emu.admin, subcommand="stats", channel_id=group)
    assert emu.interactions == {}  # nothing was sent


async def test_a_guild_install_command_is_not_offered_through_a_user_install(
        emu: DiscordEmulator) -> None:
    emu.install_for(emu.alice)
    group = emu.group_dm(emu.alice, emu.bob)
    for name in ("serverwide", "plain"):  # integration_types [0], and unset (the same)
        with pytest.raises(CommandUnavailable, match=f"not offer /{name} in a group DM"):
            await emu.slash(name, emu.alice, channel_id=group)
    posted = emu.post_user_message(emu.bob, "hi", channel_id=group)
    with pytest.raises(CommandUnavailable, match="not offer the message command"):
        await emu.message_command("Stylize image", emu.bob, posted)  # bob installed nothing
    with pytest.raises(CommandUnavailable):
        await emu.autocomplete("plain", emu.alice, "style", channel_id=group)


async def test_a_servers_own_command_only_in_that_server(emu: DiscordEmulator,
                                                         gateway: Shard) -> None:
    own = {"name": "local", "type": 1, "description": "", "options": []}
    status, _ = await bot_call(
        emu, "PUT", f"/applications/{emu.app_id}/guilds/{emu.guild_id}/commands", [own])
    assert status == 200
    d = await received(gateway, await emu.slash("local", emu.bob))
    assert d["authorizing_integration_owners"] == {"0": str(emu.guild_id)}
    with pytest.raises(CommandUnavailable, match=f"synced to server {emu.guild_id} only"):
        await emu.slash("local", emu.bob, guild=emu.other_guild)
    with pytest.raises(CommandUnavailable):
        await emu.slash("local", emu.bob, dm=True)


async def test_a_message_command_in_a_group_dm(emu: DiscordEmulator, gateway: Shard) -> None:
    group = emu.group_dm(emu.bob, emu.alice)
    posted = emu.post_user_message(emu.bob, "my cat", channel_id=group)
    assert "guild_id" not in emu.message_payload(posted)
    emu.install_for(emu.alice)
    d = await received(gateway, await emu.message_command("Stylize image", emu.alice, posted))
    assert d["context"] == 2
    assert d["channel_id"] == str(group)
    assert "guild_id" not in d["data"]["resolved"]["messages"][str(posted.id)]
    assert d["authorizing_integration_owners"] == {"1": str(emu.alice.id)}


# ---- components -----------------------------------------------------------------------
async def test_a_press_goes_through_the_installs_of_the_interaction_that_made_it(
        emu: DiscordEmulator, gateway: Shard) -> None:
    group = emu.group_dm(emu.alice, emu.bob)
    emu.install_for(emu.alice)
    ix = await emu.slash("everywhere", emu.alice, channel_id=group)
    await received(gateway, ix)
    button = {"type": 1, "components": [{"type": 2, "style": 1, "label": "Again",
                                         "custom_id": "again"}]}
    status, _ = await bot_call(emu, "POST", f"/interactions/{ix.id}/{ix.token}/callback",
                               {"type": 4, "data": {"content": "done",
                                                    "components": [button]}})
    assert status == 200
    answer = emu.original(ix)
    assert answer is not None
    d = await received(gateway, await emu.press(answer, "again", emu.bob))  # bob: no install
    assert d["context"] == 2
    assert d["authorizing_integration_owners"] == {"1": str(emu.alice.id)}

    status, posted = await bot_call(emu, "POST", f"/channels/{emu.channel_id}/messages",
                                    {"content": "menu", "components": [button]})
    assert status == 200
    d = await received(gateway, await emu.press(emu.messages[int(posted["id"])], "again",
                                                emu.bob))
    assert d["context"] == 0
    assert d["authorizing_integration_owners"] == {"0": str(emu.guild_id)}


# ---- what the bot cannot reach --------------------------------------------------------
async def test_the_bot_has_no_access_where_it_is_not(emu: DiscordEmulator) -> None:
    far = emu.add_guild("No Bot", bot_member=False)
    group = emu.group_dm(emu.alice, emu.bob)
    pair = emu.private_dm(emu.alice, emu.bob)
    posted = emu.post_user_message(emu.alice, "hi", guild=far)
    for cid in (far.channel_id, group, pair):
        for method, path, body in (("GET", f"/channels/{cid}", None),
                                   ("POST", f"/channels/{cid}/messages", {"content": "x"}),
                                   ("GET", f"/channels/{cid}/messages/{posted.id}", None),
                                   ("PATCH", f"/channels/{cid}/messages/{posted.id}",
                                    {"content": "y"}),
                                   ("DELETE", f"/channels/{cid}/messages/{posted.id}", None)):
            assert await bot_call(emu, method, path, body) == (
                403, {"code": 50001, "message": "Missing Access"}), (method, path)
    assert (await bot_call(emu, "GET", f"/channels/{emu.channel_id}"))[0] == 200
    status, _ = await bot_call(emu, "POST", f"/channels/{emu.dm_channel(emu.alice)}/messages",
                               {"content": "hi"})
    assert status == 200


async def test_a_user_who_closed_their_dms(emu: DiscordEmulator) -> None:
    emu.close_dms(emu.bob)
    bobs, alices = emu.dm_channel(emu.bob), emu.dm_channel(emu.alice)
    assert await bot_call(emu, "POST", f"/channels/{bobs}/messages", {"content": "hi"}) == (
        403, {"code": 50007, "message": "Cannot send messages to this user"})
    status, _ = await bot_call(emu, "POST", f"/channels/{alices}/messages", {"content": "hi"})
    assert status == 200
    emu.open_dms(emu.bob)
    status, _ = await bot_call(emu, "POST", f"/channels/{bobs}/messages", {"content": "hi"})
    assert status == 200
