"""How jobs, presets and stats look in Discord. Pure functions of plain data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord

from bot.jobs.records import dead_message
from bot.jobs.states import JobStatus

if TYPE_CHECKING:
    from bot.jobs.records import JobRecord
    from stylizer.presets import Preset

COLOURS = {
    JobStatus.queued: discord.Colour.light_grey(),
    JobStatus.running: discord.Colour.blurple(),
    JobStatus.succeeded: discord.Colour.green(),
    JobStatus.failed: discord.Colour.red(),
    JobStatus.dead: discord.Colour.red(),
    JobStatus.cancelled: discord.Colour.dark_grey(),
}
STATUS_WORDS = {
    JobStatus.queued: "queued",
    JobStatus.running: "painting",
    JobStatus.succeeded: "done",
    JobStatus.failed: "failed",
    JobStatus.dead: "failed",
    JobStatus.cancelled: "cancelled",
}
PREVIEW_NAME = "preview.jpg"


def style_label(job: JobRecord) -> str:
    return "your style image" if job.style == "custom" else f"`{job.style}`"


def when(dt: datetime | None) -> str:
    return f"<t:{int(dt.timestamp())}:R>" if dt is not None else "—"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{seconds // 60:.0f} min {seconds % 60:.0f} s"


def result_link(job: JobRecord) -> str | None:
    """A link to the message that carries the job's result (in its channel, or a DM)."""
    if not job.result_channel_id or not job.result_message_id:
        return None
    in_guild = job.guild_id and job.result_channel_id == job.channel_id
    return (f"https://discord.com/channels/{job.guild_id if in_guild else '@me'}/"
            f"{job.result_channel_id}/{job.result_message_id}")


def _base(job: JobRecord, title: str) -> discord.Embed:
    embed = discord.Embed(title=title, colour=COLOURS[JobStatus(job.status)])
    embed.set_footer(text=f"job {job.id} · {job.user_name}")
    return embed


def queued(job: JobRecord, *, position: int | None, eta_s: float | None) -> discord.Embed:
    embed = _base(job, "Queued")
    lines = [f"Style: {style_label(job)} · size {job.params.get('size', '?')} px"]
    if position is not None:
        lines.append(f"Position in the queue: **{position}**")
    elif eta_s is not None:  # a worker took it before this reply was written
        lines.append("A worker has started on it")
    else:  # and finished it: its result replaces this message
        lines.append("Finished already; the result follows")
    if eta_s is not None:
        lines.append("Expected to be ready in a moment" if eta_s < 1
                     else f"Expected to be ready in about {duration(eta_s)}")
    embed.description = "\n".join(lines)
    return embed


def running(job: JobRecord, *, step: int, total: int, preview: bool) -> discord.Embed:
    percent = int(100 * step / total) if total else 0
    embed = _base(job, f"Painting… {percent}%")
    embed.description = f"Style: {style_label(job)} · step {step} of {total}"
    if preview:
        embed.set_image(url=f"attachment://{PREVIEW_NAME}")
    return embed


def result(job: JobRecord, *, filename: str, width: int, height: int, note: str | None = None
           ) -> discord.Embed:
    embed = _base(job, "Your painting is ready")
    steps = job.total_steps or job.params.get("steps", "?")
    parts = [f"Style: {style_label(job)}", f"{width}×{height} px", f"{steps} steps",
             f"{duration(job.seconds)}"]
    embed.description = " · ".join(parts)
    if note:
        embed.description += f"\n{note}"
    embed.set_image(url=f"attachment://{filename}")
    return embed


def failed(job: JobRecord) -> discord.Embed:
    embed = _base(job, "That did not work")
    if job.error_code in (None, "internal", "worker_died") or JobStatus(job.status) == "dead":
        embed.description = (f"Sorry, something went wrong while painting. (reference "
                             f"`{job.id}`)")
    else:
        embed.description = job.error_message or "The painting failed."
    return embed


def cancelled(job: JobRecord) -> discord.Embed:
    embed = _base(job, "Cancelled")
    embed.description = f"Style: {style_label(job)}"
    return embed


def history(jobs: Sequence[JobRecord], *, page: int, pages: int, total: int) -> discord.Embed:
    embed = discord.Embed(title="Your paintings", colour=discord.Colour.blurple())
    if not jobs:
        embed.description = "No jobs yet. Try `/stylize`."
    for job in jobs:
        link = result_link(job)
        value = (f"{style_label(job)} · **{STATUS_WORDS[JobStatus(job.status)]}** · "
                 f"{when(job.created_at)} · {duration(job.seconds)}")
        if link:
            value += f" · [result]({link})"
        embed.add_field(name=f"`{job.id}`", value=value, inline=False)
    embed.set_footer(text=f"page {page + 1} of {max(pages, 1)} · {total} job(s)")
    return embed


def job_detail(job: JobRecord, *, input_name: str | None, output_name: str | None
               ) -> discord.Embed:
    embed = _base(job, f"Job {job.id}: {STATUS_WORDS[JobStatus(job.status)]}")
    embed.add_field(name="Style", value=style_label(job))
    embed.add_field(name="Created", value=when(job.created_at))
    embed.add_field(name="Took", value=duration(job.seconds))
    shown = {k: job.params[k] for k in ("size", "steps", "style_weight", "preserve_colors",
                                        "seed") if k in job.params}
    embed.add_field(name="Parameters", value=", ".join(f"{k}={v}" for k, v in shown.items())
                    or "defaults", inline=False)
    if JobStatus(job.status) is JobStatus.dead:
        # Worded from the code, not the stored text: rows written before the advice was
        # made to depend on the cause told everyone to try a smaller size.
        embed.add_field(name="Error", value=dead_message(job.attempts, job.error_code),
                        inline=False)
    elif job.error_message and JobStatus(job.status) is JobStatus.failed:
        embed.add_field(name="Error", value=job.error_message[:1000], inline=False)
    link = result_link(job)
    if link:
        embed.add_field(name="Result", value=f"[jump to the message]({link})", inline=False)
    if input_name:
        embed.set_thumbnail(url=f"attachment://{input_name}")
    if output_name:
        embed.set_image(url=f"attachment://{output_name}")
    return embed


def preset(p: Preset, *, index: int, count: int, thumbnail: str | None) -> discord.Embed:
    embed = discord.Embed(title=p.title, colour=discord.Colour.gold(),
                          description=f"{p.artist}, {p.year}")
    embed.add_field(name="Use it with", value=f"`/stylize style:{p.name}`")
    if thumbnail:
        embed.set_image(url=f"attachment://{thumbnail}")
    embed.set_footer(text=f"style {index + 1} of {count}")
    return embed


def stats(data: Mapping[str, Any]) -> discord.Embed:
    """`data` from `JobService.stats`: one server's jobs, and the shared worker pool."""
    embed = discord.Embed(title="stylebot stats", colour=discord.Colour.blurple(),
                          description="Jobs made in this server; the workers paint for "
                                      "every server the bot is in.")
    labels = [("queue_depth", "Queued"), ("running", "Running"), ("workers", "Workers"),
              ("busy", "Busy"), ("idle", "Idle"), ("batch_limit", "Batch limit"),
              ("jobs_today", "Jobs today")]
    for key, label in labels:
        embed.add_field(name=label, value=str(data.get(key, "—")))
    avg = data.get("avg_seconds_today")
    embed.add_field(name="Average today", value=duration(avg) if avg is not None else "—")
    return embed
