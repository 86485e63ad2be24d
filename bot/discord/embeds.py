"""How jobs, presets and stats look in Discord. Pure functions of plain data."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import discord

from bot.jobs.access import Context, bot_in_channel
from bot.jobs.records import dead_message
from bot.jobs.states import JobStatus

if TYPE_CHECKING:
    from bot.jobs.intake import AnimationPlan
    from bot.jobs.records import JobRecord
    from bot.jobs.retention import Removed
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
# An animated photo's format as users know it, by Pillow's name (an APNG is a "PNG").
ANIMATION_KINDS = {"GIF": "GIF", "WEBP": "WebP", "PNG": "PNG"}


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


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, ..., 21st, ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def animation_line(plan: AnimationPlan) -> str:
    """What will be painted of an animated photo: "Animated GIF: 48 of its 144 frames
    will be painted (every 3rd)"."""
    kind = f"Animated {ANIMATION_KINDS.get(plan.format, plan.format)}"
    n, painted = plan.source_frames, plan.painted
    if painted <= 1:
        return f"{kind}: only its first frame will be painted"
    if painted >= n:
        return f"{kind}: all {n} of its frames will be painted"
    spacing = f"every {ordinal(plan.every)}" if plan.every else "evenly spaced"
    return f"{kind}: {painted} of its {n} frames will be painted ({spacing})"


def painted_frames(plan: AnimationPlan) -> str:
    """A finished animation's frames: "48 of 144 frames, evenly spaced"."""
    n, painted = plan.source_frames, plan.painted
    if painted <= 1:
        return f"the first of its {n} frames"
    if painted >= n:
        return f"{n} frames"
    return f"{painted} of {n} frames, evenly spaced"


def pictures_gone(job: JobRecord, *, retention_days: float) -> str | None:
    """Why the job has no pictures any more ("Pictures deleted at its owner's request",
    "Pictures expired (kept for 30 days)"), or None while it has them."""
    if job.pictures_gone is None:
        return None
    if job.pictures_gone == "deleted":
        return "Pictures deleted at its owner's request"
    if retention_days <= 0:
        return "Pictures expired"
    unit = "day" if retention_days == 1 else "days"
    return f"Pictures expired (kept for {retention_days:g} {unit})"


def forget_question(jobs: Sequence[JobRecord]) -> str:
    """`/forget`'s question, about the caller's `jobs` that still have pictures."""
    count = f"{len(jobs)} job" if len(jobs) == 1 else f"{len(jobs)} jobs"
    lines = [f"Delete the pictures of your {count}: your photos, style images, paintings "
             "and previews, and the messages I posted your paintings in? This cannot be "
             "undone. Your jobs stay listed in `/history`, without pictures."]
    if any(job.result_message_id and not bot_in_channel(job) and not job.private
           for job in jobs):
        lines.append("Messages I posted in conversations I am not part of can be deleted "
                     "only within 15 minutes of asking for them.")
    active = sum(JobStatus(job.status).is_active for job in jobs)
    if active:
        lines.append(f"{active} of them {'is' if active == 1 else 'are'} queued or painting "
                     "and will be cancelled.")
    return "\n".join(lines)


def _posts(posts: int) -> str:
    if not posts:
        return ""
    return " and the message I posted a painting in" if posts == 1 else \
        f" and the {posts} messages I posted paintings in"


def _kept(kept: int) -> str:
    if not kept:
        return ""
    if kept == 1:
        return (" One message with a painting, in a conversation I am not part of, can no "
                "longer be deleted: Discord lets me change it for 15 minutes only.")
    return (f" {kept} messages with paintings, in conversations I am not part of, can no "
            "longer be deleted: Discord lets me change them for 15 minutes only.")


def forgotten(removed: Removed, *, posts: int = 0, kept: int = 0) -> str:
    """What `/forget` did, in words; `posts`: messages with paintings deleted; `kept`:
    those out of the bot's reach (`Delivery.retract`)."""
    if not removed.jobs and not removed.active:
        return "You have no pictures left to delete."
    lines = []
    if removed.jobs:
        jobs = "job" if removed.jobs == 1 else "jobs"
        lines.append(f"Deleted the pictures of {removed.jobs} {jobs}{_posts(posts)}. They "
                     f"stay in `/history`, without pictures.{_kept(kept)}")
    if removed.active:
        jobs = "job is" if removed.active == 1 else "jobs are"
        lines.append(f"{removed.active} {jobs} still painting and could not be stopped yet, "
                     "so their pictures are still here: try `/forget` again in a minute.")
    return "\n".join(lines)


def forgotten_job(job_id: str, removed: Removed, *, posts: int = 0, kept: int = 0) -> str:
    """What a job's Delete button did, in words; `posts`: messages with its painting
    deleted; `kept`: those out of the bot's reach."""
    if removed.jobs:
        return (f"Deleted the pictures of job `{job_id}`{_posts(posts)}. It stays in "
                f"`/history`, without pictures.{_kept(kept)}")
    if removed.active:
        return (f"Job `{job_id}` is still painting and could not be stopped yet: try again "
                "in a minute.")
    return f"The pictures of job `{job_id}` were already gone."


def result_link(job: JobRecord) -> str | None:
    """A link to the message that carries the job's result (in its channel, or a DM)."""
    if not job.result_channel_id or not job.result_message_id:
        return None
    in_guild = job.guild_id and job.result_channel_id == job.channel_id
    return (f"https://discord.com/channels/{job.guild_id if in_guild else '@me'}/"
            f"{job.result_channel_id}/{job.result_message_id}")


def asked_in(job: JobRecord) -> str | None:
    """A link to where the job was asked: its progress message when that is public, else
    its channel (a private reply cannot be linked to)."""
    if not job.channel_id:
        return None
    url = f"https://discord.com/channels/{job.guild_id or '@me'}/{job.channel_id}"
    if job.progress_message_id and not job.private:
        url += f"/{job.progress_message_id}"
    return url


def token_ending(job: JobRecord, *, dms_open: bool | None) -> discord.Embed:
    """The last update of a job's message where nothing but its interaction reaches it
    (the interaction's webhook lives 15 minutes): the job's state, without a place in the
    queue or a time that would go stale, and where the painting will go. `dms_open`:
    whether the user's DMs took the bot's note (None: unknown)."""
    queued = JobStatus(job.status) is JobStatus.queued
    embed = _base(job, "Queued" if queued else "Painting…")
    embed.description = f"Style: {style_label(job)}"
    later = f"find the painting with `/job {job.id}` or in `/history`"
    if dms_open is False:
        where = f"Your DMs are closed to me, so once it is done, {later}."
    elif dms_open:
        where = "If it is not done by then, the painting will come to your DMs."
    else:
        where = (f"If it is not done by then, the painting will come to your DMs if they "
                 f"are open to me; if not, {later}.")
    embed.add_field(name="This message stops updating in a minute",
                    value=f"Discord lets me update it for 15 minutes only. {where}",
                    inline=False)
    return embed


def token_ending_dm(job: JobRecord) -> str:
    """The DM that tells a user where their painting will come, as its message stops
    updating (`token_ending`)."""
    link = asked_in(job)
    where = f" ({link})" if link else ""
    return (f"Job `{job.id}` is taking a while, and Discord lets me update its message"
            f"{where} for 15 minutes only: if it is not done within a minute, the painting "
            "will come here.")


def dm_result_note(job: JobRecord) -> str | None:
    """The words above a job's result sent by DM (its painting, or why there is none):
    where it was asked (None: in this DM)."""
    link = asked_in(job)
    if link is None or job.context == Context.bot_dm:
        return None
    return f"Job `{job.id}`, which you asked for here: {link}"


def _base(job: JobRecord, title: str) -> discord.Embed:
    embed = discord.Embed(title=title, colour=COLOURS[JobStatus(job.status)])
    # A job whose pictures are gone has forgotten its user's name too.
    embed.set_footer(text=f"job {job.id} · {job.user_name}" if job.user_name
                     else f"job {job.id}")
    return embed


def queued(job: JobRecord, *, position: int | None, eta_s: float | None,
           animation: AnimationPlan | None = None) -> discord.Embed:
    """`animation`: what will be painted of an animated photo. A job a worker took, or
    finished, before this was written is titled so, not "Queued"."""
    embed = _base(job, "Queued" if position is not None else
                  "Starting" if eta_s is not None else "Finishing")
    lines = [f"Style: {style_label(job)} · size {job.params.get('size', '?')} px"]
    if animation is not None:
        lines.append(animation_line(animation))
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


def running(job: JobRecord, *, step: int, total: int, preview: bool, frame: int = 0,
            frames: int = 0) -> discord.Embed:
    """`step` of `total` steps; an animation's `frame` frames finished of `frames` (0 for a
    still). An animation's steps count over all its frames, a total its run reports: until
    it has (`step` 0), only the frames are shown."""
    percent = int(100 * step / total) if total else 0
    embed = _base(job, f"Painting… {percent}%")
    parts = [f"Style: {style_label(job)}"]
    if frames:
        parts.append(f"{min(frame, frames)} of {frames} frames done")
    if step or not frames:
        parts.append(f"step {step} of {total}")
    embed.description = " · ".join(parts)
    if preview:
        embed.set_image(url=f"attachment://{PREVIEW_NAME}")
    return embed


def result(job: JobRecord, *, filename: str, width: int, height: int, note: str | None = None,
           animation: AnimationPlan | None = None) -> discord.Embed:
    """`animation`: what was painted of an animated photo (`painted` 1: its first frame,
    as a still)."""
    embed = _base(job, "Your painting is ready")
    steps = job.total_steps or job.params.get("steps", "?")
    parts = [f"Style: {style_label(job)}", f"{width}×{height} px"]
    if animation is not None:
        parts.append(painted_frames(animation))
    parts += [f"{steps} steps", f"{duration(job.seconds)}"]
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


def gone(job: JobRecord) -> discord.Embed:
    """A finished job whose pictures went before its result was shown."""
    embed = _base(job, "Pictures deleted" if job.pictures_gone == "deleted"
                  else "Pictures expired")
    embed.description = (f"{pictures_gone(job, retention_days=0)}: there is no painting to "
                         "show.")
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
        if job.pictures_gone:
            value += f" · pictures {job.pictures_gone}"
        embed.add_field(name=f"`{job.id}`", value=value, inline=False)
    embed.set_footer(text=f"page {page + 1} of {max(pages, 1)} · {total} job(s)")
    return embed


def job_detail(job: JobRecord, *, input_name: str | None, output_name: str | None,
               retention_days: float = 0) -> discord.Embed:
    """`retention_days`: how long pictures are kept, for a job whose pictures expired."""
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
    gone = pictures_gone(job, retention_days=retention_days)
    if gone:  # "Pictures: Deleted at its owner's request"
        embed.add_field(name="Pictures", value=gone.removeprefix("Pictures ").capitalize(),
                        inline=False)
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
    """`data` from `JobService.stats`: one server's jobs, and the shared worker pool; with
    the shared image store's `store_blobs`, `store_bytes` and `free_bytes` (None: unknown)."""
    embed = discord.Embed(title="stylebot stats", colour=discord.Colour.blurple(),
                          description="Jobs made in this server; the workers and the image "
                                      "store serve every server the bot is in.")
    labels = [("queue_depth", "Queued"), ("running", "Running"), ("workers", "Workers"),
              ("busy", "Busy"), ("idle", "Idle"), ("batch_limit", "Batch limit"),
              ("jobs_today", "Jobs today")]
    for key, label in labels:
        embed.add_field(name=label, value=str(data.get(key, "—")))
    avg = data.get("avg_seconds_today")
    embed.add_field(name="Average today", value=duration(avg) if avg is not None else "—")
    if "store_bytes" in data:
        embed.add_field(name="Image store", value=f"{data['store_blobs']} images, "
                                                  f"{data['store_bytes'] / 2**20:.1f} MB")
    free = data.get("free_bytes")
    embed.add_field(name="Free space", value=f"{free / 2**20:.0f} MB" if free is not None
                    else "—")
    return embed
