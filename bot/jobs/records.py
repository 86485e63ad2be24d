"""`JobRecord`: a plain snapshot of one job row (never an ORM object), and what is
derived from a job's data alone: its interaction token's expiry, the words for a job
given up."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.jobs.db import Job
from bot.jobs.states import JobStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


def size_of(params: dict[str, Any] | None) -> int | None:
    """A job's `size` parameter (long side, px), if it has one."""
    size = (params or {}).get("size")
    return int(size) if isinstance(size, int | float) else None


def dead_message(attempts: int, code: str | None) -> str:
    """What a user is told about a job given up after `attempts` runs that ended
    abnormally, the last with `code` (see `stylizer.pool.messages.JobFailed`). Advice only
    where it is true: a worker that vanished ("worker_died") was most likely killed for
    using too much memory, which a smaller size may cure; an error inside the painter
    ("internal") is a bug, which a smaller size does not (a picture the network is too
    small for was made worse by it). The job's own bad input never gets here: it fails at
    once, with its own message."""
    if code == "worker_died":
        return (f"The painter stopped unexpectedly on this picture {attempts} times, so I "
                "gave up on it. It may have run out of memory: a smaller size needs less.")
    return (f"The painter failed on this picture {attempts} times, so I gave up on it. "
            "The fault is ours, not your picture's, and it has been logged.")


@dataclass(frozen=True)
class JobRecord:
    id: str
    user_id: str
    user_name: str
    guild_id: str | None
    channel_id: str | None
    source: str
    style: str                      # preset name, or "custom" for an uploaded style image
    style_hash: str | None
    input_hash: str | None  # None once its pictures are gone (`pictures_gone`)
    output_hash: str | None
    params: dict[str, Any]
    status: JobStatus
    error_code: str | None
    error_message: str | None
    attempts: int
    step: int
    total_steps: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    private: bool
    parent_id: str | None
    # The interaction token is a credential for 15 minutes: kept out of reprs.
    interaction_token: str | None = field(repr=False)
    token_expires_at: datetime | None
    application_id: str | None
    progress_message_id: str | None
    result_message_id: str | None
    result_channel_id: str | None
    delivered: bool
    batch_key: str | None = None  # see stylizer.batching
    runner: str | None = None  # the process running it, or that ran it last
    version: int = 0  # one more at each change readers may show
    pictures_gone: str | None = None  # "deleted" or "expired" (`bot.jobs.retention`)
    frame: int = 0  # an animation's frames finished, of `frames` (0 for a still)
    frames: int = 0
    # Where it was asked: Discord's interaction context ("guild", "bot_dm",
    # "private_channel"; None from the command line), and whether through the app's
    # install in that server (`bot.jobs.access.Origin`).
    context: str | None = None
    guild_install: bool = False

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return max(0.0, (self.finished_at - self.started_at).total_seconds())

    @property
    def size(self) -> int | None:
        return size_of(self.params)

    def to_dict(self, *, include_token: bool = False) -> dict[str, Any]:
        """JSON-ready; the interaction token is left out unless asked for."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "interaction_token" and not include_token:
                out["has_interaction_token"] = self.interaction_token is not None
                continue
            value = getattr(self, f.name)
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, JobStatus):
                value = value.value
            out[f.name] = value
        out["seconds"] = self.seconds
        return out

    @classmethod
    def from_row(cls, job: Job) -> JobRecord:
        return cls(
            id=job.id, user_id=job.user_id, user_name=job.user_name, guild_id=job.guild_id,
            channel_id=job.channel_id, source=job.source, style=job.style,
            style_hash=job.style_hash, input_hash=job.input_hash, output_hash=job.output_hash,
            params=dict(job.params), status=JobStatus(job.status), error_code=job.error_code,
            error_message=job.error_message, attempts=job.attempts, step=job.step,
            total_steps=job.total_steps, created_at=job.created_at, started_at=job.started_at,
            finished_at=job.finished_at, private=job.private, parent_id=job.parent_id,
            interaction_token=job.interaction_token, token_expires_at=job.token_expires_at,
            application_id=job.application_id, progress_message_id=job.progress_message_id,
            result_message_id=job.result_message_id, result_channel_id=job.result_channel_id,
            delivered=job.delivered, batch_key=job.batch_key, runner=job.runner,
            version=job.version or 0, pictures_gone=job.pictures_gone, frame=job.frame or 0,
            frames=job.frames or 0, context=job.context, guild_install=bool(job.guild_install))




def token_expiry(created_at: datetime) -> datetime:
    """Interaction tokens are valid for 15 minutes after the interaction was created
    (Discord API: "Receiving and Responding", interaction tokens)."""
    return created_at + timedelta(minutes=15)
