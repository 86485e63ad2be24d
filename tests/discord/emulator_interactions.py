"""Interactions a test sends: slash commands, autocomplete, context menus, components."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator_model import (
    DEFAULT_PERMISSIONS,
    Guild,
    Interaction,
    Message,
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
    channel_payload: Callable[[int], dict[str, Any]]
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

    def _base_payload(self, type_: int, user: User, data: dict[str, Any],
                      filesize_limit: int | None, channel_id: int | None,
                      guild: Guild | None = None, dm: bool = False) -> Interaction:
        """An interaction from `user` in `guild` (the main server when None), or, with
        `dm`, from their DM with the bot (no server, no member, no permissions there)."""
        iid = self.snowflake()
        token = f"itoken-{iid}"
        payload: dict[str, Any] = {
            "id": str(iid), "application_id": str(self.app_id), "type": type_, "data": data,
            "token": token, "version": 1, "app_permissions": str(DEFAULT_PERMISSIONS),
            "locale": "en-US", "entitlements": [],
            "attachment_size_limit": filesize_limit or 10 << 20,
        }
        if dm:
            cid = channel_id or self.dm_channel(user)
            payload.update({
                "channel_id": str(cid), "channel": self.channel_payload(cid),
                "user": user.payload(), "context": 1,
                "authorizing_integration_owners": {"0": str(self.guild.id)}})
        else:
            guild = guild or self.guild
            cid = channel_id or guild.channel_id
            payload.update({
                "guild_id": str(guild.id), "channel_id": str(cid),
                "channel": self.channel_payload(cid),
                "member": user.member_payload(admin=guild.is_admin(user)),
                "guild_locale": "en-US", "context": 0,
                "authorizing_integration_owners": {"0": str(guild.id)}})
        ix = Interaction(iid, token, type_, user, payload,
                         filesize_limit=filesize_limit or 10 << 20)
        self.interactions[iid] = ix
        return ix

    async def slash(self, name: str, user: User, *, subcommand: str | None = None,
                    filesize_limit: int | None = None, channel_id: int | None = None,
                    guild: Guild | None = None, dm: bool = False,
                    **options: Any) -> Interaction:
        """Sends a chat-input command; options are typed from the synced schema. It comes
        from `guild` (the main server by default), or from the user's DM with `dm`."""
        cmd = self.command(name)
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
        ix = self._base_payload(2, user, data, filesize_limit, channel_id, guild, dm)
        await self._send(ix)
        return ix

    async def autocomplete(self, name: str, user: User, focused: str, **options: Any,
                           ) -> Interaction:
        cmd = self.command(name)
        resolved: dict[str, Any] = {}
        opts = self._options(cmd.get("options", []), options, resolved, focused)
        for o in opts:  # attachments are not resolved during autocomplete
            if o["type"] == 11:
                o["value"] = str(o["value"])
        data = {"id": cmd["id"], "name": name, "type": 1, "options": opts}
        ix = self._base_payload(4, user, data, None, None)
        await self._send(ix)
        return ix

    async def message_command(self, name: str, user: User, target: Message) -> Interaction:
        cmd = self.command(name, 3)
        data = {"id": cmd["id"], "name": name, "type": 3, "target_id": str(target.id),
                "resolved": {"messages": {str(target.id): self.message_payload(target)}}}
        ix = self._base_payload(2, user, data, None, target.channel_id,
                                self.guild_of_channel(target.channel_id),
                                dm=target.channel_id in self.dm_channels)
        await self._send(ix)
        return ix

    async def press(self, message: Message, custom_id: str, user: User, *,
                    values: list[str] | None = None, filesize_limit: int | None = None,
                    ) -> Interaction:
        """A button press (or, with `values`, a select-menu submit) on `message`, from
        wherever the message is."""
        assert custom_id in message.custom_ids(), (custom_id, message.custom_ids())
        data: dict[str, Any] = {"custom_id": custom_id,
                                "component_type": 2 if values is None else 3}
        if values is not None:
            data["values"] = values
        ix = self._base_payload(3, user, data, filesize_limit, message.channel_id,
                                self.guild_of_channel(message.channel_id),
                                dm=message.channel_id in self.dm_channels)
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
