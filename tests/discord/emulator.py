"""A small emulator of Discord's REST API, gateway and CDN, for end-to-end tests.

It speaks enough of Discord's wire protocol for discord.py's own client code to log in,
connect, sync application commands, receive interactions and answer them: the
gateway (HELLO, IDENTIFY -> READY + GUILD_CREATE, heartbeats, RESUME), interaction
callbacks, webhook follow-ups and edits, channel messages, DM channels, multipart
uploads and a CDN route for attachments. Long because it is one Discord, whose routes
share its state; the interactions a test sends and the data are in modules of their own.

Faults a test can ask for: a 429 (with `retry_after`, the way Discord sends it) or a
500 on the next matching request, an expired interaction token (webhook calls answer
404 "Unknown Webhook", code 10015), a channel that refuses messages (403, code 50013),
users who refuse DMs (403, code 50007: everyone with `refuse_dms`, one user who
closed theirs with `close_dms`), a per-interaction upload size limit (413,
code 40005), and a hold (`hold_answer`): a request carried out in full whose answer waits
until a test's hook has run, e.g. one that kills the bot in between.

Sharding as Discord does it: GET /gateway/bot recommends `shard_count` shards; a
connection that identifies with `shard: [id, count]` gets that shard's servers in READY
and GUILD_CREATE, and only their events (interactions included): a server's go to shard
`(guild_id >> 22) % count`, a DM's to shard 0. A connection that names no shard is shard
0 of 1 and gets everything. `add_guild` makes another server, on a shard of one's choice.

User-installable apps as Discord has them. An app is installed to a server (the bot is a
member there) or to a user's account (`install_for`); a server may be without the bot
(`add_guild(bot_member=False)`), and `group_dm` and `private_dm` make channels between
users that the bot is not in. The bot is told of none of them (no READY, no
GUILD_CREATE), and its REST calls on their channels answer 403 "Missing Access" (50001),
but interactions from them still come over the gateway (a server's to its shard). Every
interaction says where it was made, `context`: 0 in a server (with `guild_id`, a partial
`guild`, and the `member` with permissions), 1 in the bot's DM, 2 in a group DM or a DM
between users (with the `user` and the `channel`); and through which installs,
`authorizing_integration_owners`: "0", the server's (its id, or "0" in the bot's DM),
where the bot is and the command's `integration_types` include 0; "1", the user's own
(their id), where they installed the app and the command allows 1. Discord offers a
command only where its `contexts` allow and an install applies (a server's own commands
only in that server); sending one it would not offer raises `CommandUnavailable`. A
component on a message answers through the installs of the interaction that made the
message.

Channel messages honour `nonce` and `enforce_nonce` as Discord documents them: a nonce
(an integer or a string of at most 25 characters) comes back in the message; with
`enforce_nonce`, a message the same author made with the same nonce within
`nonce_window_s` is returned instead of a new one being made.

State is plain data (`Message`, `Interaction`) that tests read directly; every change
wakes `wait_for`.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import mimetypes
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import BodyPartReader, WSMsgType, web
from emulator_interactions import InteractionSender
from emulator_model import (
    API_PREFIX,
    DEFAULT_PERMISSIONS,
    DISCORD_EPOCH_MS,
    EPHEMERAL,
    LOADING,
    ApiError,
    Call,
    CommandUnavailable,
    Fault,
    Guild,
    Hold,
    Interaction,
    Message,
    PrivateChannel,
    StoredFile,
    Upload,
    User,
    image_size,
)

__all__ = ["Call", "CommandUnavailable", "DiscordEmulator", "Guild", "Interaction", "Message",
           "PrivateChannel", "StoredFile", "Upload", "User"]

log = logging.getLogger(__name__)

# Discord: "checked for uniqueness in the past few minutes"; it publishes no exact figure.
NONCE_WINDOW_S = 300.0
NONCE_MAX_CHARS = 25


class DiscordEmulator(InteractionSender):
    """Runs on 127.0.0.1 on a free port; `api_base`, `gateway_url`, `cdn_host` point at it."""

    def __init__(self, *, token: str = "emulator-token", guild_filesize_limit: int = 10 << 20,
                 shard_count: int = 1) -> None:
        if shard_count < 1:
            raise ValueError("shard_count must be at least 1")
        self.token = token
        # What GET /gateway/bot recommends, and the count `add_guild` places servers by.
        self.shard_count = shard_count
        self._ids = itertools.count()
        self.app_id = self.snowflake()
        self.bot_user = {"id": str(self.app_id), "username": "stylebot", "global_name": None,
                         "discriminator": "0", "avatar": None, "bot": True, "public_flags": 0}
        self.alice = User(self.snowflake(), "alice")
        self.bob = User(self.snowflake(), "bob")
        self.admin = User(self.snowflake(), "admin")
        self.mallory = User(self.snowflake(), "mallory")
        self.users = {u.id: u for u in (self.alice, self.bob, self.admin, self.mallory)}
        # Two servers: the main one (where `admin` is the administrator) and Mallory's,
        # which anyone could make in seconds. Bob is a member of both, and no admin. Both
        # on shard 0.
        self.guild = Guild(self.snowflake(shard=0), "Emulated Guild", self.snowflake(),
                           self.admin, [self.alice, self.bob, self.admin], {self.admin.id})
        self.other_guild = Guild(self.snowflake(shard=0), "Mallory's Guild", self.snowflake(),
                                 self.mallory, [self.mallory, self.bob], {self.mallory.id})
        self.guilds = {g.id: g for g in (self.guild, self.other_guild)}
        self.guild_id = self.guild.id
        self.channel_id = self.guild.channel_id
        self.guild_filesize_limit = guild_filesize_limit
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.messages: dict[int, Message] = {}
        self.interactions: dict[int, Interaction] = {}
        self.files: dict[int, StoredFile] = {}
        # Seconds the CDN takes to start sending an attachment, by file name (a slow
        # download).
        self.cdn_delay_s: dict[str, float] = {}
        self.dm_channels: dict[int, int] = {}  # dm channel id -> user id
        # DMs between users and group DMs, which the bot is not in.
        self.private_channels: dict[int, PrivateChannel] = {}
        # Who installed the app to their account, and who closed their DMs.
        self.user_installs: set[int] = set()
        self.closed_dms: set[int] = set()
        self.calls: list[Call] = []
        self.expired_tokens: set[str] = set()
        self.refusing_channels: set[int] = set()
        self.refuse_dms = False
        self.identifies = 0
        self.resumes = 0
        # The `[id, count]` of every IDENTIFY, in order ((0, 1) when it named none).
        self.identified_shards: list[tuple[int, int]] = []
        self._faults: list[Fault] = []
        self._holds: list[Hold] = []
        self.nonce_window_s = NONCE_WINDOW_S
        self.clock: Callable[[], float] = time.monotonic
        self._sockets: list[web.WebSocketResponse] = []
        # Each open connection's shard, and each session's (for a RESUME).
        self._socket_shards: dict[web.WebSocketResponse, tuple[int, int]] = {}
        self._session_shards: dict[str, tuple[int, int]] = {}
        self._acks: set[asyncio.Task[None]] = set()
        self._seq = 0
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ---- lifecycle -------------------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=64 << 20)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/cdn/attachments/{file_id}/{filename}", self._cdn)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._api)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base(self) -> str:
        return self.base + API_PREFIX

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def cdn_host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def snowflake(self, *, shard: int | None = None) -> int:
        """A new id; with `shard`, one of a server on that shard of `shard_count` (its
        timestamp moved up to a few milliseconds ahead)."""
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        if shard is not None:
            ms += (shard - ms) % self.shard_count
        return (ms << 22) | (next(self._ids) % 4096)

    def shard_of(self, guild: Guild | None) -> int:
        """The shard of `shard_count` that gets `guild`'s events (None: a DM's, shard 0)."""
        return 0 if guild is None else (guild.id >> 22) % self.shard_count

    # ---- what tests control ----------------------------------------------------------
    def fail_next(self, method: str, path_regex: str, status: int, *, retry_after: float = 0.3,
                  times: int = 1) -> None:
        """The next `times` requests matching answer `status` (429 carries retry_after)."""
        self._faults.append(Fault(method.upper(), re.compile(path_regex), status, retry_after,
                                   times))

    def clear_faults(self) -> None:
        """Forgets the faults asked for and not yet served."""
        self._faults.clear()

    def add_user(self, username: str) -> User:
        """A new member of the main server (seen by a bot that connects after this)."""
        user = User(self.snowflake(), username)
        self.users[user.id] = user
        self.guild.members.append(user)
        return user

    def add_guild(self, name: str = "Another Guild", *, shard: int = 0,
                  owner: User | None = None, members: list[User] | None = None,
                  bot_member: bool = True) -> Guild:
        """A new server on `shard` (of `shard_count`) with a text channel of its own;
        `owner` (default: `admin`) administers it, and `members` (default: alice, bob and
        admin, plus the owner) are in it. Seen by a bot that connects after this; with
        `bot_member=False` the bot is not in it (nor told of it), and only users who
        installed the app to their account can use it there."""
        if not 0 <= shard < self.shard_count:
            raise ValueError(f"shard {shard} is not one of {self.shard_count}")
        owner = owner or self.admin
        members = list(members if members is not None else [self.alice, self.bob, self.admin])
        if owner not in members:
            members.append(owner)
        guild = Guild(self.snowflake(shard=shard), name, self.snowflake(), owner, members,
                      {owner.id}, bot_member)
        self.guilds[guild.id] = guild
        return guild

    def group_dm(self, *users: User) -> int:
        """A new group DM (channel type 3) between `users`, the first its owner; the bot
        is not in it."""
        return self._private_channel(3, list(users))

    def private_dm(self, a: User, b: User) -> int:
        """A new DM (channel type 1) between two users; the bot is not in it."""
        return self._private_channel(1, [a, b])

    def _private_channel(self, type_: int, users: list[User]) -> int:
        cid = self.snowflake()
        self.private_channels[cid] = PrivateChannel(cid, type_, users)
        return cid

    def install_for(self, user: User) -> None:
        """`user` installs the app to their account: they can use its commands that allow
        a user install wherever they are."""
        self.user_installs.add(user.id)

    def close_dms(self, user: User) -> None:
        """`user` takes no DMs from the bot: a message there answers 403 (50007)."""
        self.closed_dms.add(user.id)

    def open_dms(self, user: User) -> None:
        """`user` takes DMs from the bot again."""
        self.closed_dms.discard(user.id)

    def expire_token(self, token: str) -> None:
        self.expired_tokens.add(token)

    def refuse_channel(self, channel_id: int) -> None:
        self.refusing_channels.add(channel_id)

    def faults_left(self) -> int:
        return sum(f.times for f in self._faults)

    def hold_answer(self, matches: Callable[[Call, list[StoredFile]], bool],
                    hook: Callable[[], Awaitable[None]]) -> None:
        """The next request that `matches` (the call as recorded, and the files it
        uploaded) is carried out in full; then `hook` is awaited, and only then does the
        answer go back. A hook that kills the bot makes the crash between Discord accepting
        a message and the bot hearing of it."""
        self._holds.append(Hold(matches, hook))

    @property
    def connections(self) -> int:
        """Open gateway connections."""
        return len(self._sockets)

    @property
    def connected_shards(self) -> list[tuple[int, int]]:
        """The `(id, count)` of each open gateway connection, sorted."""
        return sorted(self._socket_shards[ws] for ws in self._sockets)

    async def wait_for(self, predicate: Callable[[], Any], within: float = 30.0) -> Any:
        """Waits until `predicate()` is truthy and returns its value."""
        async def loop() -> Any:
            async with self._changed:
                while True:
                    value = predicate()
                    if value:
                        return value
                    await self._changed.wait()
        return await asyncio.wait_for(loop(), within)

    async def _touch(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def calls_to(self, method: str, path_regex: str) -> list[Call]:
        rx = re.compile(path_regex)
        return [c for c in self.calls if c.method == method and rx.search(c.path)]

    def messages_in(self, channel_id: int) -> list[Message]:
        return [m for m in self.messages.values() if m.channel_id == channel_id and not m.deleted]

    def file_bytes(self, message: Message, index: int = 0) -> bytes:
        return message.files[index].data

    def add_file(self, upload: Upload) -> StoredFile:
        fid = self.snowflake()
        ctype = upload.content_type or mimetypes.guess_type(upload.filename)[0]
        width, height = image_size(upload.data)
        stored = StoredFile(fid, upload.filename, ctype, upload.data, width, height)
        self.files[fid] = stored
        return stored

    def attachment_payload(self, f: StoredFile, declared_size: int | None = None
                           ) -> dict[str, Any]:
        url = f"{self.base}/cdn/attachments/{f.id}/{f.filename}"
        out: dict[str, Any] = {"id": str(f.id), "filename": f.filename,
                               "size": declared_size if declared_size is not None else len(f.data),
                               "url": url, "proxy_url": url}
        if f.content_type:
            out["content_type"] = f.content_type
        if f.width is not None:
            out["width"], out["height"] = f.width, f.height
        return out

    def message_payload(self, m: Message) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": str(m.id), "channel_id": str(m.channel_id), "author": m.author,
            "content": m.content, "embeds": m.embeds, "components": m.components,
            "attachments": [self.attachment_payload(f) for f in m.files], "flags": m.flags,
            "type": 0 if m.message_reference is None else 19, "tts": False, "pinned": False,
            "mentions": [], "mention_roles": [], "mention_everyone": False,
            "timestamp": "2024-01-01T00:00:00+00:00", "edited_timestamp": None,
        }
        guild = self.guild_of_channel(m.channel_id)
        if guild is not None:
            out["guild_id"] = str(guild.id)
        if m.message_reference is not None:
            out["message_reference"] = m.message_reference
        if m.nonce is not None:
            out["nonce"] = m.nonce
        if m.webhook_id is not None:
            out["webhook_id"] = str(m.webhook_id)
            out["application_id"] = str(self.app_id)
        return out

    def post_user_message(self, user: User, content: str = "",
                          uploads: tuple[Upload, ...] = (), *, guild: Guild | None = None,
                          channel_id: int | None = None) -> Message:
        """A message some user sent to a server's channel, or to any channel by
        `channel_id` (a group DM, say), for the context menu."""
        channel_id = channel_id or (guild or self.guild).channel_id
        m = Message(self.snowflake(), channel_id, user.payload(), content,
                    files=[self.add_file(u) for u in uploads])
        self.messages[m.id] = m
        return m

    # ---- gateway ----------------------------------------------------------------------
    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Sends an event to the connections of its shard: a server's (`guild_id` in
        `data`) to the shard that has the server, any other to shard 0. Waits until one
        is connected."""
        guild_id = data.get("guild_id")
        receivers = await self.wait_for(lambda: [
            ws for ws in self._sockets
            if _receives(self._socket_shards[ws], int(guild_id) if guild_id else None)], 30)
        self._seq += 1
        frame = {"op": 0, "t": event, "s": self._seq, "d": data}
        for ws in receivers:
            await ws.send_str(json.dumps(frame))

    async def drop_connections(self) -> None:
        """Closes every gateway socket with a resumable code (as a network blip would)."""
        for ws in list(self._sockets):
            await ws.close(code=4000)

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op, d = frame.get("op"), frame.get("d")
                if op == 1:
                    # A few ms of "network": an instant ACK can beat discord.py's own
                    # bookkeeping of when it sent the heartbeat (a spurious warning).
                    task = asyncio.create_task(_ack(ws))
                    self._acks.add(task)
                    task.add_done_callback(self._acks.discard)
                elif op == 2:
                    if d.get("token") != self.token:
                        await ws.close(code=4004, message=b"Authentication failed.")
                        break
                    shard_id, count = d.get("shard") or (0, 1)
                    if not 0 <= shard_id < count:
                        await ws.close(code=4010, message=b"Invalid shard.")
                        break
                    self.identifies += 1
                    self.identified_shards.append((shard_id, count))
                    self._socket_shards[ws] = (shard_id, count)
                    self._sockets.append(ws)
                    await self._send_ready(ws, sharded="shard" in d)
                elif op == 6:
                    self.resumes += 1
                    self._socket_shards[ws] = self._session_shards.get(d.get("session_id"),
                                                                       (0, 1))
                    self._sockets.append(ws)
                    self._seq += 1
                    await ws.send_str(json.dumps({"op": 0, "t": "RESUMED", "s": self._seq,
                                                  "d": {}}))
                await self._touch()
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
            self._socket_shards.pop(ws, None)
            await self._touch()
        return ws

    async def _send_ready(self, ws: web.WebSocketResponse, *, sharded: bool) -> None:
        """READY and a GUILD_CREATE for each of the connection's shard's servers (those
        the bot is in)."""
        shard = self._socket_shards[ws]
        guilds = [g for g in self.guilds.values() if g.bot_member and _receives(shard, g.id)]
        session_id = f"session-{self.snowflake()}"
        self._session_shards[session_id] = shard
        self._seq += 1
        ready: dict[str, Any] = {
            "v": 10, "user": self.bot_user, "session_id": session_id,
            "resume_gateway_url": self.gateway_url,
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "application": {"id": str(self.app_id), "flags": 0}}
        if sharded:
            ready["shard"] = list(shard)
        await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": self._seq, "d": ready}))
        for guild in guilds:
            self._seq += 1
            await ws.send_str(json.dumps({"op": 0, "t": "GUILD_CREATE", "s": self._seq,
                                          "d": self._guild_payload(guild)}))

    def channel_payload(self, channel_id: int, viewer: User | None = None) -> dict[str, Any]:
        """A server's text channel, a DM channel with the bot, or a DM or group DM
        between users (as `viewer` sees it)."""
        if channel_id in self.private_channels:
            return self.private_channels[channel_id].payload(viewer)
        if channel_id in self.dm_channels:
            user = self.users[self.dm_channels[channel_id]]
            return {"id": str(channel_id), "type": 1, "recipients": [user.payload()],
                    "last_message_id": None}
        guild = self.guild_of_channel(channel_id)
        if guild is None:
            raise ApiError(404, 10003, "Unknown Channel")
        return {"id": str(channel_id), "type": 0, "guild_id": str(guild.id), "name": "general",
                "position": 0, "permission_overwrites": []}

    def guild_of_channel(self, channel_id: int) -> Guild | None:
        return next((g for g in self.guilds.values() if g.channel_id == channel_id), None)

    def dm_channel(self, user: User) -> int:
        """The id of the DM channel between `user` and the bot (made on first use)."""
        cid = next((c for c, u in self.dm_channels.items() if u == user.id), None)
        if cid is None:
            cid = self.snowflake()
            self.dm_channels[cid] = user.id
        return cid

    def _guild_payload(self, guild: Guild) -> dict[str, Any]:
        gid = str(guild.id)
        members = [u.member_payload(admin=guild.is_admin(u)) for u in guild.members]
        members.append({"user": self.bot_user, "roles": [], "joined_at": "2024-01-01T00:00:00",
                        "deaf": False, "mute": False, "flags": 0})
        return {
            "id": gid, "name": guild.name, "owner_id": str(guild.owner.id),
            "unavailable": False, "member_count": len(members), "premium_tier": 0,
            "roles": [{"id": gid, "name": "@everyone", "permissions": str(DEFAULT_PERMISSIONS),
                       "position": 0, "color": 0, "hoist": False, "managed": False,
                       "mentionable": False, "flags": 0}],
            "channels": [{"id": str(guild.channel_id), "type": 0, "name": "general",
                          "position": 0, "guild_id": gid, "permission_overwrites": []}],
            "members": members, "threads": [], "emojis": [], "stickers": [],
            "features": [], "large": False,
        }

    # ---- HTTP -------------------------------------------------------------------------
    async def _cdn(self, request: web.Request) -> web.StreamResponse:
        f = self.files.get(int(request.match_info["file_id"]))
        if f is None or f.filename != request.match_info["filename"]:
            return web.Response(status=404, text="not found")
        await asyncio.sleep(self.cdn_delay_s.get(f.filename, 0.0))
        return web.Response(body=f.data, content_type=f.content_type or
                            "application/octet-stream")

    async def _api(self, request: web.Request) -> web.StreamResponse:
        path = "/" + request.match_info["tail"]
        method = request.method
        fault = self._take_fault(method, path)
        if fault is not None:
            self.calls.append(Call(method, path, fault.status))
            await self._touch()
            return _fault_response(fault)
        try:
            body, uploads = await _read_body(request)
            files = [self.add_file(u) for u in uploads]
            status, result = await self._route(method, path, body, files, request)
        except ApiError as exc:
            self.calls.append(Call(method, path, exc.status))
            await self._touch()
            return _json({"message": exc.message, "code": exc.code},
                                     status=exc.status)
        call = Call(method, path, status, body)
        self.calls.append(call)
        await self._touch()
        hold = next((h for h in self._holds if h.matches(call, files)), None)
        if hold is not None:
            self._holds.remove(hold)
            await hold.hook()
        if status == 204:
            return web.Response(status=204)
        return _json(result, status=status)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.pattern.search(path) and fault.times > 0:
                fault.times -= 1
                if fault.times == 0:
                    self._faults.remove(fault)
                return fault
        return None

    async def _route(self, method: str, path: str, body: Any, files: list[StoredFile],
                     request: web.Request) -> tuple[int, Any]:
        auth = request.headers.get("Authorization")
        p = path.rstrip("/")
        if p in ("/gateway", "/gateway/bot"):
            return 200, {"url": self.gateway_url, "shards": self.shard_count,
                         "session_start_limit": {
                "total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}
        if p.startswith(("/interactions/", "/webhooks/")):
            return self._webhook_route(method, p, body, files, request)
        if auth != f"Bot {self.token}":
            raise ApiError(401, 0, "401: Unauthorized")
        if p == "/users/@me":
            return 200, self.bot_user
        if p == "/oauth2/applications/@me":
            return 200, {"id": str(self.app_id), "name": "stylebot", "description": "",
                         "icon": None, "bot_public": True, "bot_require_code_grant": False,
                         "owner": self.admin.payload(), "verify_key": "0" * 64, "flags": 0,
                         "interactions_endpoint_url": None}
        if m := re.fullmatch(r"/applications/(\d+)(?:/guilds/(\d+))?/commands", p):
            return self._commands(method, int(m[1]), m[2], body)
        if p == "/users/@me/channels" and method == "POST":
            return 200, self.channel_payload(self.dm_channel(self.users[int(body["recipient_id"])]))
        if m := re.fullmatch(r"/users/(\d+)", p):
            if int(m[1]) not in self.users:
                raise ApiError(404, 10013, "Unknown User")
            return 200, self.users[int(m[1])].payload()
        if m := re.fullmatch(r"/channels/(\d+)", p):
            self._check_access(int(m[1]))
            return 200, self.channel_payload(int(m[1]))
        if m := re.fullmatch(r"/channels/(\d+)/messages(?:/(\d+))?", p):
            self._check_access(int(m[1]))
            return self._channel_messages(method, int(m[1]), m[2], body, files)
        raise ApiError(404, 0, f"404: Not Found ({method} {path})")

    def _commands(self, method: str, app_id: int, guild: str | None, body: Any
                  ) -> tuple[int, Any]:
        if app_id != self.app_id:
            raise ApiError(403, 50001, "Missing Access")
        store = self.global_commands if guild is None else self.guild_commands.setdefault(
            int(guild), [])
        if method == "PUT":
            store.clear()
            for cmd in body:
                cmd = dict(cmd, id=str(self.snowflake()), application_id=str(self.app_id),
                           version=str(self.snowflake()))
                cmd.setdefault("description", "")
                if guild is not None:
                    cmd["guild_id"] = guild
                store.append(cmd)
        return 200, store

    def _check_access(self, cid: int) -> None:
        """The bot sees no channel of a server it is not in, nor any DM it is not in."""
        guild = self.guild_of_channel(cid)
        if cid in self.private_channels or (guild is not None and not guild.bot_member):
            raise ApiError(403, 50001, "Missing Access")

    def _channel_messages(self, method: str, cid: int, mid: str | None, body: Any,
                          files: list[StoredFile]) -> tuple[int, Any]:
        if self.guild_of_channel(cid) is None and cid not in self.dm_channels:
            raise ApiError(404, 10003, "Unknown Channel")
        if method == "POST" and mid is None:
            if cid in self.refusing_channels:
                raise ApiError(403, 50013, "Missing Permissions")
            if cid in self.dm_channels and (self.refuse_dms
                                            or self.dm_channels[cid] in self.closed_dms):
                raise ApiError(403, 50007, "Cannot send messages to this user")
            self._check_size(files, self.guild_filesize_limit)
            nonce = body.get("nonce")
            if nonce is not None and len(str(nonce)) > NONCE_MAX_CHARS:
                raise ApiError(400, 50035, "Invalid Form Body (nonce: at most 25 characters)")
            if nonce is not None and body.get("enforce_nonce"):
                earlier = self._same_nonce(str(self.bot_user["id"]), nonce)
                if earlier is not None:
                    if earlier.deleted:
                        # discord.py documents a NotFound for a nonce whose message was
                        # deleted shortly before.
                        raise ApiError(404, 10008, "Unknown Message")
                    return 200, self.message_payload(earlier)
            m = Message(self.snowflake(), cid, self.bot_user, nonce=nonce,
                        created_at=self.clock())
            self._apply(m, body, files, edit=False)
            m.message_reference = body.get("message_reference")
            self.messages[m.id] = m
            return 200, self.message_payload(m)
        msg = self.messages.get(int(mid)) if mid else None
        # Ephemeral messages are the interaction's: the channel does not show them.
        if msg is None or msg.deleted or msg.channel_id != cid or msg.ephemeral:
            raise ApiError(404, 10008, "Unknown Message")
        if method == "GET":
            return 200, self.message_payload(msg)
        if method == "PATCH":
            self._check_size(files, self.guild_filesize_limit)
            self._apply(msg, body, files, edit=True)
            return 200, self.message_payload(msg)
        if method == "DELETE":
            # The bot may delete its own messages anywhere; others' need Manage Messages,
            # which it is not given here.
            if msg.author.get("id") != self.bot_user["id"]:
                raise ApiError(403, 50013, "Missing Permissions")
            msg.deleted = True
            return 204, None
        raise ApiError(405, 0, "405: Method Not Allowed")

    def _same_nonce(self, author_id: str, nonce: str | int) -> Message | None:
        """The latest message `author_id` made with `nonce` within the nonce window."""
        since = self.clock() - self.nonce_window_s
        found = [m for m in self.messages.values()
                 if m.nonce is not None and str(m.nonce) == str(nonce)
                 and m.author.get("id") == author_id and m.created_at >= since]
        return max(found, key=lambda m: m.created_at, default=None)

    def _interaction_for(self, token: str) -> Interaction:
        if token in self.expired_tokens:
            raise ApiError(404, 10015, "Unknown Webhook")
        for ix in self.interactions.values():
            if ix.token == token:
                return ix
        raise ApiError(404, 10015, "Unknown Webhook")

    def _webhook_route(self, method: str, p: str, body: Any, files: list[StoredFile],
                       request: web.Request) -> tuple[int, Any]:
        if m := re.fullmatch(r"/interactions/(\d+)/([^/]+)/callback", p):
            ix = self._interaction_for(m[2])
            if int(m[1]) != ix.id:
                raise ApiError(404, 10062, "Unknown interaction")
            if ix.callbacks:
                raise ApiError(400, 40060, "Interaction has already been acknowledged.")
            self._check_size(files, ix.filesize_limit)
            return self._callback(ix, body, files)
        m = re.fullmatch(r"/webhooks/(\d+)/([^/]+)(?:/messages/(@original|\d+))?", p)
        if m is None or int(m[1]) != self.app_id:
            raise ApiError(404, 10015, "Unknown Webhook")
        ix = self._interaction_for(m[2])
        target = m[3]
        if target is None:
            if method != "POST":
                raise ApiError(405, 0, "405: Method Not Allowed")
            self._check_size(files, ix.filesize_limit)
            return self._followup(ix, body, files)
        mid = ix.original_id if target == "@original" else int(target)
        msg = self.messages.get(mid) if mid else None
        if msg is None or msg.deleted or (msg.interaction_token != ix.token
                                          and msg.id != ix.original_id):
            raise ApiError(404, 10008, "Unknown Message")
        if method == "GET":
            return 200, self.message_payload(msg)
        if method == "PATCH":
            self._check_size(files, ix.filesize_limit)
            self._apply(msg, body, files, edit=True)
            msg.flags &= ~LOADING
            if msg.id == ix.original_id and ix.replied_at is None:
                ix.replied_at = self.clock()
            return 200, self.message_payload(msg)
        if method == "DELETE":
            msg.deleted = True
            return 204, None
        raise ApiError(405, 0, "405: Method Not Allowed")

    def _callback(self, ix: Interaction, body: Any, files: list[StoredFile]
                  ) -> tuple[int, Any]:
        kind = body["type"]
        data = body.get("data") or {}
        ix.callbacks.append(body)
        ix.answered_at = self.clock()
        if kind in (4, 7):  # the answer itself is the reply
            ix.replied_at = ix.answered_at
        info: dict[str, Any] = {"id": str(ix.id), "type": ix.type,
                                "response_message_loading": kind == 5,
                                "response_message_ephemeral": bool(data.get("flags", 0)
                                                                   & EPHEMERAL)}
        resource: dict[str, Any] = {"type": kind}
        if kind in (4, 5):  # a new message: the reply, or the "thinking..." placeholder
            m = Message(self.snowflake(), int(ix.payload["channel_id"]), self.bot_user,
                        webhook_id=self.app_id, interaction_token=ix.token)
            self._apply(m, data, files, edit=False)
            if kind == 5:
                m.flags |= LOADING
            self.messages[m.id] = m
            ix.original_id = m.id
            info["response_message_id"] = str(m.id)
            resource["message"] = self.message_payload(m)
        elif kind in (6, 7):  # (deferred) update of the message the component is on,
            # which then is the interaction's "@original"
            src = self.messages[int(ix.payload["message"]["id"])]
            ix.original_id = src.id
            if kind == 7:
                self._apply(src, data, files, edit=True)
                resource["message"] = self.message_payload(src)
        return 200, {"interaction": info, "resource": resource}

    def _followup(self, ix: Interaction, body: Any, files: list[StoredFile]
                  ) -> tuple[int, Any]:
        if not ix.callbacks:
            raise ApiError(404, 10015, "Unknown Webhook")
        if ix.replied_at is None:
            ix.replied_at = self.clock()
        original = self.original(ix)
        if original is not None and original.loading and not ix.followup_ids:
            # Discord: the first follow-up after a deferral replaces the "thinking..."
            # message and keeps its flags (an ephemeral deferral stays ephemeral).
            flags = original.flags & EPHEMERAL
            self._apply(original, body, files, edit=True)
            original.flags = flags
            ix.followup_ids.append(original.id)
            return 200, self.message_payload(original)
        m = Message(self.snowflake(), int(ix.payload["channel_id"]), self.bot_user,
                    webhook_id=self.app_id, interaction_token=ix.token)
        self._apply(m, body, files, edit=False)
        self.messages[m.id] = m
        ix.followup_ids.append(m.id)
        return 200, self.message_payload(m)

    def _apply(self, m: Message, body: dict[str, Any], files: list[StoredFile], *, edit: bool
               ) -> None:
        if "content" in body:
            m.content = body["content"] or ""
        if "embeds" in body:
            m.embeds = body["embeds"] or []
        if "components" in body:
            m.components = body["components"] or []
        if "flags" in body and not edit:
            m.flags = body["flags"] or 0
        if "attachments" in body:
            keep = {int(a["id"]) for a in body["attachments"]}
            m.files = [f for f in m.files if f.id in keep] + files
        elif files:
            m.files = (m.files if edit else []) + files
        m.edits += edit
        m.history.append((m.text(), [f.filename for f in m.files]))

    @staticmethod
    def _check_size(files: list[StoredFile], limit: int) -> None:
        if any(len(f.data) > limit for f in files):
            raise ApiError(413, 40005, "Request entity too large")


def _receives(shard: tuple[int, int], guild_id: int | None) -> bool:
    """Whether a connection identified as `shard` ([id, count]) gets the events of the
    server `guild_id` (None: of a DM): Discord's sharding formula."""
    shard_id, count = shard
    return shard_id == (0 if guild_id is None else (guild_id >> 22) % count)


async def _ack(ws: web.WebSocketResponse) -> None:
    await asyncio.sleep(0.05)
    if not ws.closed:
        await ws.send_str(json.dumps({"op": 11}))


def _json(data: Any, *, status: int = 200, headers: dict[str, str] | None = None
          ) -> web.Response:
    # Exactly "application/json", no charset: discord.py parses only that as JSON.
    return web.Response(body=json.dumps(data).encode(), status=status, headers=headers,
                        content_type="application/json")


def _fault_response(fault: Fault) -> web.Response:
    if fault.status == 429:
        # discord.py only trusts a 429 that came through Discord's proxy (a Via header).
        return _json(
            {"message": "You are being rate limited.", "retry_after": fault.retry_after,
             "global": False},
            status=429, headers={"Via": "1.1 google", "Retry-After": str(fault.retry_after),
                                 "X-RateLimit-Scope": "user"})
    return _json({"message": "500: Internal Server Error", "code": 0},
                             status=fault.status)


async def _read_body(request: web.Request) -> tuple[Any, list[Upload]]:
    """JSON, or multipart with `payload_json` and `files[n]` parts (as discord.py sends)."""
    if request.content_type.startswith("multipart/"):
        payload: Any = {}
        uploads: list[tuple[int, Upload]] = []
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                continue
            name = part.name or ""
            data = bytes(await part.read())
            if name == "payload_json":
                payload = json.loads(data)
            elif m := re.fullmatch(r"files\[(\d+)\]", name):
                uploads.append((int(m[1]), Upload(part.filename or "file", data,
                                                  part.headers.get("Content-Type"))))
        return payload, [u for _, u in sorted(uploads, key=lambda t: t[0])]
    raw = await request.read()
    return (json.loads(raw) if raw else None), []
