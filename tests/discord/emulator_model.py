"""The emulator's state: users, files, messages and interactions as plain data."""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

DISCORD_EPOCH_MS = 1420070400000
API_PREFIX = "/api/v10"
EPHEMERAL = 1 << 6
LOADING = 1 << 7
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
DEFAULT_PERMISSIONS = (1 << 10) | (1 << 11) | (1 << 15) | (1 << 16) | (1 << 31)  # view, send..
# What `app_permissions` holds where the bot is no member: attach files, embed links and
# mention everyone in any DM or group DM, and use external emojis too in its own DM.
PRIVATE_APP_PERMISSIONS = (1 << 15) | (1 << 14) | (1 << 17)
BOT_DM_APP_PERMISSIONS = PRIVATE_APP_PERMISSIONS | (1 << 18)
# Application integration types: where the app is installed.
GUILD_INSTALL, USER_INSTALL = 0, 1
# Interaction context types: where an interaction is made.
GUILD, BOT_DM, PRIVATE_CHANNEL = 0, 1, 2


@dataclass
class User:
    id: int
    username: str

    def payload(self) -> dict[str, Any]:
        return {"id": str(self.id), "username": self.username, "global_name": self.username,
                "discriminator": "0", "avatar": None, "bot": False, "public_flags": 0}

    def member_payload(self, *, admin: bool = False) -> dict[str, Any]:
        """As a member of a server; an admin has Administrator and Manage Server there."""
        perms = DEFAULT_PERMISSIONS | (ADMINISTRATOR | MANAGE_GUILD if admin else 0)
        return {"user": self.payload(), "roles": [], "nick": None, "avatar": None,
                "joined_at": "2024-01-01T00:00:00+00:00", "deaf": False, "mute": False,
                "flags": 0, "pending": False, "permissions": str(perms)}


@dataclass
class Guild:
    """A server: one text channel, its members, who administers it, and whether the bot
    is in it (the app installed to the server); without the bot, only users who installed
    the app to their account can use it there."""

    id: int
    name: str
    channel_id: int
    owner: User
    members: list[User]
    admins: set[int] = field(default_factory=set)
    bot_member: bool = True

    def is_admin(self, user: User) -> bool:
        return user.id in self.admins


@dataclass
class PrivateChannel:
    """A DM between two users (type 1) or a group DM (type 3): the bot is in neither."""

    id: int
    type: int
    recipients: list[User]

    def payload(self, viewer: User | None = None) -> dict[str, Any]:
        """As `viewer` sees it: the recipients are the others."""
        others = [u.payload() for u in self.recipients if u != viewer]
        out: dict[str, Any] = {"id": str(self.id), "type": self.type, "recipients": others,
                               "last_message_id": None, "flags": 0}
        if self.type == 3:
            out.update(name=None, icon=None, owner_id=str(self.recipients[0].id))
        return out


@dataclass
class Upload:
    """A file a test attaches to an interaction (an option value or a message)."""

    filename: str
    data: bytes
    content_type: str | None = None
    declared_size: int | None = None  # lie about the size in the metadata


@dataclass
class StoredFile:
    id: int
    filename: str
    content_type: str | None
    data: bytes
    width: int | None = None
    height: int | None = None


@dataclass
class Message:
    id: int
    channel_id: int
    author: dict[str, Any]
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    files: list[StoredFile] = field(default_factory=list)
    flags: int = 0
    message_reference: dict[str, Any] | None = None
    webhook_id: int | None = None
    interaction_token: str | None = None
    edits: int = 0
    deleted: bool = False
    # What the sender passed as `nonce` (returned as it was given), and when the message
    # was made (the emulator's monotonic clock), for `enforce_nonce`.
    nonce: str | int | None = None
    created_at: float = 0.0
    # (text, file names) as posted and after each edit, oldest first.
    history: list[tuple[str, list[str]]] = field(default_factory=list)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    def custom_ids(self) -> list[str]:
        out: list[str] = []
        for row in self.components:
            for comp in row.get("components", []):
                if "custom_id" in comp:
                    out.append(comp["custom_id"])
        return out

    def text(self) -> str:
        """Content plus every embed's visible text, for assertions."""
        parts = [self.content]
        for e in self.embeds:
            parts += [e.get("title", ""), e.get("description", "")]
            parts += [f"{f.get('name', '')} {f.get('value', '')}" for f in e.get("fields", [])]
            parts.append((e.get("footer") or {}).get("text", ""))
        return "\n".join(p for p in parts if p)


@dataclass
class Interaction:
    id: int
    token: str
    type: int
    user: User
    payload: dict[str, Any]
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    original_id: int | None = None
    followup_ids: list[int] = field(default_factory=list)
    filesize_limit: int = 10 * 1024 * 1024
    # Monotonic times: sent to the bot, first callback (a reply or a deferral), and the
    # first answer after a deferral (an edit of "@original" or a follow-up).
    sent_at: float | None = None
    answered_at: float | None = None
    replied_at: float | None = None


@dataclass
class Call:
    method: str
    path: str
    status: int
    body: Any = None


@dataclass
class Hold:
    """Once a request that `matches` has been carried out, `hook` runs before the answer
    goes back: a test can kill the caller in the window between the two."""

    matches: Callable[[Call, list[StoredFile]], bool]
    hook: Callable[[], Awaitable[None]]


@dataclass
class Fault:
    method: str
    pattern: re.Pattern[str]
    status: int
    retry_after: float
    times: int


class CommandUnavailable(AssertionError):
    """A test sent a command where Discord would not offer it to the user."""


class ApiError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def image_size(data: bytes) -> tuple[int | None, int | None]:
    """Width and height from the header, as Discord reports them for images."""
    with contextlib.suppress(Exception), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    return None, None
