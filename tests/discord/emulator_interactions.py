"""Interactions a test sends: slash commands, autocomplete, context menus, components.

Each comes from a channel, and says so as Discord does: its `context`, and the installs of
the app it runs through (`authorizing_integration_owners`). A command goes only where
Discord would offer it to the user; anything else raises `CommandUnavailable`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from emulator_model import (
    BOT_DM,
    BOT_DM_APP_PERMISSIONS,
    DEFAULT_PERMISSIONS,
    GUILD,
    GUILD_INSTALL,
    PRIVATE_APP_PERMISSIONS,
    PRIVATE_CHANNEL,
    USER_INSTALL,
    CommandUnavailable,
    Guild,
    Interaction,
    Message,
    PrivateChannel,
    StoredFile,
    Upload,
    User,
)


class InteractionSender:
    """Builds INTERACTION_CREATE payloads the way Discord does (options typed from the
    synced command schema) and reads the bot's answers. Mixed into `DiscordEmulator`."""

    app_id: int
    global_commands: list[dict[str, Any]]
    guild_commands: dict[int, list[dict[str, Any]]]
    interactions: dict[int, Interaction]
    messages: dict[int, Message]
    snowflake: Callable[[], int]
    guild: Guild
    dm_channels: dict[int, int]
    private_channels: dict[int, PrivateChannel]
    user_installs: set[int]
    channel_payload: Callable[..., dict[str, Any]]
    guild_of_channel: Callable[[int], Guild | None]
    dm_channel: Callable[[User], int]
    add_file: Callable[[Upload], StoredFile]
    attachment_payload: Callable[..., dict[str, Any]]
    message_payload: Callable[[Message], dict[str, Any]]
    clock: Callable[[], float]

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    async def wait_for(self, predicate: Callable[[], Any], within: float = 30.0) -> Any:
        raise NotImplementedError

    async def _send(self, ix: Interaction) -> None:
        ix.sent_at = self.clock()
        await self.dispatch("INTERACTION_CREATE", ix.payload)

    def command(self, name: str, type_: int = 1) -> dict[str, Any]:
        for cmd in self.global_commands + [c for cs in self.guild_commands.values() for c in cs]:
            if cmd["name"] == name and cmd.get("type", 1) == type_:
                return cmd
        raise KeyError(f"no synced command {name!r} of type {type_}")

    def _options(self, schema: list[dict[str, Any]], values: dict[str, Any],
                 resolved: dict[str, Any], focused: str | None) -> list[dict[str, Any]]:
        by_name = {o["name"]: o for o in schema}
        out = []
        for name, value in values.items():
            opt = by_name[name]  # KeyError: the test used an option the bot does not have
            entry: dict[str, Any] = {"name": name, "type": opt["type"]}
            if opt["type"] == 11:  # attachment: value is the attachment id
                assert isinstance(value, Upload)
                stored = self.add_file(value)
                resolved.setdefault("attachments", {})[str(stored.id)] = self.attachment_payload(
                    stored, value.declared_size)
                entry["value"] = str(stored.id)
            else:
                entry["value"] = value
            if name == focused:
                entry["focused"] = True
            out.append(entry)
        return out

    def where(self, channel_id: int) -> tuple[int, Guild | None]:
        """The context of an interaction made in the channel (GUILD, BOT_DM or
        PRIVATE_CHANNEL), and its server."""
        guild = self.guild_of_channel(channel_id)
        if guild is not None:
            return GUILD, guild
        if channel_id in self.dm_channels:
            return BOT_DM, None
        if channel_id in self.private_channels:
            return PRIVATE_CHANNEL, None
        raise KeyError(f"no channel {channel_id}")

    def owners(self, user: User, channel_id: int, integration_types: Collection[int]
               ) -> dict[str, str]:
        """`authorizing_integration_owners`: the installs, of `integration_types`, that
        apply to `user` in the channel. The server's ("0": its id) where the bot is, or
        "0" in the bot's DM; the user's own ("1": their id) where they installed the app."""
        context, guild = self.where(channel_id)
        out: dict[str, str] = {}
        if GUILD_INSTALL in integration_types:
            if guild is not None and guild.bot_member:
                out[str(GUILD_INSTALL)] = str(guild.id)
            elif context == BOT_DM:
                out[str(GUILD_INSTALL)] = "0"
        if USER_INSTALL in integration_types and user.id in self.user_installs:
            out[str(USER_INSTALL)] = str(user.id)
        return out

    def offered(self, name: str, type_: int, user: User, channel_id: int
                ) -> tuple[dict[str, Any], dict[str, str]]:
        """The synced command as Discord offers it to `user` in the channel, and the
        installs it runs through. A global command needs the context in its `contexts`
        (all by default, less the bot's DM with `dm_permission` false) and an install of
        its `integration_types` (the server's by default) that applies; a server's own
        command goes only in that server, with the bot there. CommandUnavailable if none
        of that name is offered there; KeyError if none is synced."""
        context, guild = self.where(channel_id)
        synced = [c for c in self.global_commands + [
            c for cs in self.guild_commands.values() for c in cs]
            if c["name"] == name and c.get("type", 1) == type_]
        if not synced:
            raise KeyError(f"no synced command {name!r} of type {type_}")
        why = []
        for cmd in synced:
            if "guild_id" in cmd:
                if guild is not None and guild.bot_member and str(guild.id) == cmd["guild_id"]:
                    return cmd, self.owners(user, channel_id, [GUILD_INSTALL])
                why.append(f"a copy is synced to server {cmd['guild_id']} only")
                continue
            contexts = cmd.get("contexts")
            if contexts is None:
                contexts = [GUILD, PRIVATE_CHANNEL] + (
                    [] if cmd.get("dm_permission") is False else [BOT_DM])
            types = cmd.get("integration_types") or [GUILD_INSTALL]
            owners = self.owners(user, channel_id, types)
            if context in contexts and owners:
                return cmd, owners
            if context not in contexts:
                why.append(f"its contexts are {sorted(contexts)}")
            else:
                server = "" if self.owners(user, channel_id, [GUILD_INSTALL]) else " not"
                own = "" if user.id in self.user_installs else " not"
                why.append(f"its integration_types are {sorted(types)}, the server install "
                           f"does{server} apply here, {user.username} has{own} installed "
                           "the app")
        label = f"/{name}" if type_ == 1 else f"the message command {name!r}"
        raise CommandUnavailable(f"Discord would not offer {label} in "
                                 f"{self.place(channel_id)}: " + "; ".join(why))

    def place(self, channel_id: int) -> str:
        """The kind of place the channel is, in words."""
        context, guild = self.where(channel_id)
        if guild is not None:
            return "a server" if guild.bot_member else "a server without the bot"
        if context == BOT_DM:
            return "the bot's DM"
        return "a group DM" if self.private_channels[channel_id].type == 3 else (
            "a DM between users")

    def _channel(self, user: User, channel_id: int | None, guild: Guild | None, dm: bool
                 ) -> int:
        """The channel `channel_id`, else the user's DM with the bot with `dm`, else the
        channel of `guild` (the main server when None)."""
        if channel_id is not None:
            return channel_id
        return self.dm_channel(user) if dm else (guild or self.guild).channel_id

    def _base_payload(self, type_: int, user: User, data: dict[str, Any],
                      filesize_limit: int | None, channel_id: int, owners: dict[str, str]
                      ) -> Interaction:
        """An interaction from `user` in the channel, through the installs `owners`. In a
        server: its id, a partial guild and the member with their permissions (with or
        without the bot there); elsewhere only the user (no server, no permissions)."""
        context, guild = self.where(channel_id)
        iid = self.snowflake()
        token = f"itoken-{iid}"
        payload: dict[str, Any] = {
            "id": str(iid), "application_id": str(self.app_id), "type": type_, "data": data,
            "token": token, "version": 1, "locale": "en-US", "entitlements": [],
            "attachment_size_limit": filesize_limit or 10 << 20,
            "channel_id": str(channel_id), "channel": self.channel_payload(channel_id, user),
            "context": context, "authorizing_integration_owners": owners,
        }
        if guild is not None:
            payload.update({
                "guild_id": str(guild.id), "app_permissions": str(DEFAULT_PERMISSIONS),
                "guild": {"id": str(guild.id), "locale": "en-US", "features": []},
                "member": user.member_payload(admin=guild.is_admin(user)),
                "guild_locale": "en-US"})
        else:
            payload.update({"user": user.payload(), "app_permissions": str(
                BOT_DM_APP_PERMISSIONS if context == BOT_DM else PRIVATE_APP_PERMISSIONS)})
        ix = Interaction(iid, token, type_, user, payload,
                         filesize_limit=filesize_limit or 10 << 20)
        self.interactions[iid] = ix
        return ix

    async def slash(self, name: str, user: User, *, subcommand: str | None = None,
                    filesize_limit: int | None = None, channel_id: int | None = None,
                    guild: Guild | None = None, dm: bool = False,
                    **options: Any) -> Interaction:
        """Sends a chat-input command; options are typed from the synced schema. It comes
        from `guild` (the main server by default), from the user's DM with `dm`, or from
        any channel by `channel_id`."""
        cid = self._channel(user, channel_id, guild, dm)
        cmd, owners = self.offered(name, 1, user, cid)
        resolved: dict[str, Any] = {}
        schema = cmd.get("options", [])
        if subcommand is not None:
            sub = next(o for o in schema if o["name"] == subcommand)
            opts = [{"name": subcommand, "type": sub["type"],
                     "options": self._options(sub.get("options", []), options, resolved, None)}]
        else:
            opts = self._options(schema, options, resolved, None)
        data = {"id": cmd["id"], "name": name, "type": 1, "options": opts}
        if resolved:
            data["resolved"] = resolved
        ix = self._base_payload(2, user, data, filesize_limit, cid, owners)
        await self._send(ix)
        return ix

    async def autocomplete(self, name: str, user: User, focused: str, *,
                           channel_id: int | None = None, guild: Guild | None = None,
                           dm: bool = False, **options: Any) -> Interaction:
        """Asks for the choices of option `focused`, from where `slash` would send from."""
        cid = self._channel(user, channel_id, guild, dm)
        cmd, owners = self.offered(name, 1, user, cid)
        resolved: dict[str, Any] = {}
        opts = self._options(cmd.get("options", []), options, resolved, focused)
        for o in opts:  # attachments are not resolved during autocomplete
            if o["type"] == 11:
                o["value"] = str(o["value"])
        data = {"id": cmd["id"], "name": name, "type": 1, "options": opts}
        ix = self._base_payload(4, user, data, None, cid, owners)
        await self._send(ix)
        return ix

    async def message_command(self, name: str, user: User, target: Message) -> Interaction:
        """The message context-menu command `name` on `target`, from its channel."""
        cmd, owners = self.offered(name, 3, user, target.channel_id)
        data = {"id": cmd["id"], "name": name, "type": 3, "target_id": str(target.id),
                "resolved": {"messages": {str(target.id): self.message_payload(target)}}}
        ix = self._base_payload(2, user, data, None, target.channel_id, owners)
        await self._send(ix)
        return ix

    async def press(self, message: Message, custom_id: str, user: User, *,
                    values: list[str] | None = None, filesize_limit: int | None = None,
                    ) -> Interaction:
        """A button press (or, with `values`, a select-menu submit) on `message`, from
        wherever the message is, through the installs of the interaction that made the
        message (any that apply, for one the bot posted itself)."""
        assert custom_id in message.custom_ids(), (custom_id, message.custom_ids())
        data: dict[str, Any] = {"custom_id": custom_id,
                                "component_type": 2 if values is None else 3}
        if values is not None:
            data["values"] = values
        made_by = next((ix for ix in self.interactions.values()
                        if message.interaction_token is not None
                        and ix.token == message.interaction_token), None)
        owners = (dict(made_by.payload["authorizing_integration_owners"]) if made_by
                  else self.owners(user, message.channel_id, (GUILD_INSTALL, USER_INSTALL)))
        ix = self._base_payload(3, user, data, filesize_limit, message.channel_id, owners)
        ix.payload["message"] = self.message_payload(message)
        await self._send(ix)
        return ix

    async def response(self, ix: Interaction, within: float = 10.0) -> dict[str, Any]:
        """The interaction's callback (type + data), once the bot has sent it."""
        await self.wait_for(lambda: ix.callbacks, within)
        return ix.callbacks[0]

    def original(self, ix: Interaction) -> Message | None:
        return self.messages.get(ix.original_id) if ix.original_id else None

    def followups(self, ix: Interaction) -> list[Message]:
        return [self.messages[i] for i in ix.followup_ids]
