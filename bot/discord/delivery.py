"""Showing a job's life in Discord: progress edits, then the result, never lost.

The composition root (`bot.app`) builds `Delivery` from the job service and the client
it sends through; the client starts it (`start`, `client_ready`) and stops it. The job
service calls `on_event`, which only queues the event: each job gets its own
worker task, so one job's Discord calls never hold up the service or another job, and
one job's events are handled in order.

A result goes, in this order of preference, (1) into the job's progress message
through the interaction's webhook token while it lives (15 minutes), (2) as a channel
message replying to the user, (3) as a DM when the channel refuses. Only then is the
job marked delivered, and a restart delivers again what was not marked. Before sending,
the process claims the delivery in the job's row (`JobService.claim_delivery`), so that
of several bot processes sharing a database exactly one sends each result.

Exactly once, even when the process dies after Discord took the message and before the
database heard of it: every way a result is sent can be repeated without a second
message. (1) is an edit of a message whose id was recorded before the job ran (for a
private job, its placeholder); (2) and (3) carry a nonce made from the job id, which
discord.py sends with `enforce_nonce`, so Discord answers a repeat within a few minutes
with the message it already has. A restart whose token has expired meanwhile first
looks at the progress message in the channel, where (1) may already have put the
result. What is left: a private job whose placeholder is gone gets a new private
follow-up (webhooks take no nonce), and a private progress message cannot be read back
once the token has expired; a crash just after either can leave two copies, as can a
restart after Discord has forgotten the nonce.

Where the bot is not a member (a server that only the user installed the app for, a
group DM, a DM between users: `access.bot_in_channel`), and for a private job, only
the interaction's webhook reaches the job's message, and (2) is never tried. Such a job
that outlives its token gets a last update a minute before the token ends
(`_last_call`): a DM tells the user the painting will come there, with a link back to
where they asked, and the message says so; if their DMs are closed, it says to find the
painting in /history, where it then waits (marked delivered, with no message).

Several bot processes, each running some of the bot's shards, may share the database;
each hears of every job (`bot.jobs.watch`). A job belongs to the process whose shard
received its interaction (`shard_of`): only that process shows the job's progress, and
it delivers the result at once. Any other process delivers a result only when it has
been left undelivered for `takeover_s` (the job's lease, `STYLEBOT_LEASE`): its owner
is down, or died delivering it. A process starting up delivers its own leftovers at once
and other processes' leftovers once they have waited as long. Whoever sends, the claim
in the row makes it exactly one process, and every route works from any process: an
interaction's webhook, a channel and a DM are all reached through the REST API.

Long because those three routes, their fallbacks and the restart check are one decision
about one message; split up, the rules above would be spread over several files.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import io
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import discord

from bot.discord import embeds, pictures, views
from bot.jobs import access
from bot.jobs.errors import UserError
from bot.jobs.events import (
    FINAL_EVENTS,
    JobCancelled,
    JobEvent,
    JobFailed,
    JobProgress,
    JobQueued,
    JobStarted,
    JobSucceeded,
)
from bot.jobs.intake import AnimationPlan, stored_animation
from bot.jobs.records import JobRecord
from bot.jobs.states import JobStatus

if TYPE_CHECKING:
    from bot.jobs.service import JobService

log = logging.getLogger(__name__)

# Jobs this front end created (the CLI delivers its own).
DISCORD_SOURCES = frozenset({"slash", "context_menu", "button"})
PROGRESS_INTERVAL_S = 4.0
QUEUED_REFRESH_S = 5.0  # how often queued jobs' messages may show their new place
# Do not start a webhook call on a token this close to its end.
TOKEN_MARGIN = timedelta(seconds=30)
# Where only the interaction reaches a job's message, its last update (`_last_call`) is
# made this long before the token's usable end.
LAST_CALL = timedelta(seconds=60)
# Discord's answers meaning "that interaction token is no longer valid".
DEAD_TOKEN_CODES = frozenset({10015, 50027})
UNKNOWN_MESSAGE = 10008
TOO_LARGE = 40005
STOP_GRACE_S = 15.0
RESULT_FILE_PREFIX = "stylebot-"
ANIMATED_EXTS = frozenset({"gif", "webp"})  # `pictures.Fitted.ext` of an animation
# How long another shard's result waits for its owner before this process delivers it.
TAKEOVER_S = 60.0
# Tries at `takeover_s` apart while another process holds the delivery's claim: enough
# to outlast a dead claimant's claim (`bot.jobs.service.DELIVERY_CLAIM_S`).
TAKEOVER_TRIES = 5
# The first wait before trying a result again after Discord failed to take it (then 2×,
# 4×…, `TAKEOVER_TRIES` tries in all: about 8 minutes).
RETRY_S = 15.0


def shard_of(guild_id: str | int | None, shard_count: int) -> int:
    """The shard Discord sends a server's events to, its interactions included:
    `(guild_id >> 22) % shard_count` (the id's timestamp part, modulo the number of
    shards); DMs go to shard 0. Discord API, "Gateway" events, "Sharding":
    https://discord.com/developers/docs/events/gateway#sharding"""
    if guild_id is None:
        return 0
    return (int(guild_id) >> 22) % shard_count


def result_nonce(job_id: str, kind: str = "") -> str:
    """The nonce of the job's result message, or of another `kind` of message about it
    (Discord takes at most 25 characters)."""
    return f"stylebot-{job_id}{'-' + kind if kind else ''}"


@dataclass(frozen=True)
class _Redeliver:
    """Deliver a finished job found undelivered at start-up, or another shard's left
    undelivered for `takeover_s` (an earlier run, or that process, may have sent it
    already and died before recording that). `tries`: how many more times to look while
    another process holds the delivery's claim."""

    job_id: str
    tries: int = TAKEOVER_TRIES


@dataclass(frozen=True)
class _LastCall:
    """The job's token is about to end and only its interaction reaches the job's
    message: say there where the painting will go (`Delivery._last_call`)."""

    job_id: str


@dataclass(frozen=True)
class _Refresh:
    """Show a queued job's new place and time estimate, if they changed."""

    job_id: str


_Item = JobEvent | _Redeliver | _Refresh | _LastCall | None

# Puts the result's message fields (`Delivery._content`) in front of the user.
_Send = Callable[..., Awaitable[discord.Message]]


def _as_new_message(send: Callable[..., Awaitable[Any]], **extra: Any) -> _Send:
    """`send` (a channel's, a DM's or a webhook's) taking the fields an edit takes: a new
    message has its pictures as `files`, and no view as MISSING rather than None.
    `extra` goes with every try (the nonce, the mention, the reply)."""

    async def send_new(*, embed: discord.Embed, attachments: list[discord.File],
                       view: discord.ui.View | None) -> discord.Message:
        message: discord.Message = await send(embed=embed, files=attachments,
                                              view=view or discord.utils.MISSING, **extra)
        return message

    return send_new


class Delivery:
    """See the module docstring. `shard_ids` of `shard_count`: the shards this process
    runs; None: all of them (one bot process)."""

    def __init__(self, service: JobService, client: discord.Client, *,
                 shard_count: int | None = None, shard_ids: Collection[int] | None = None,
                 takeover_s: float = TAKEOVER_S,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.service = service
        self.client = client
        self.shard_count = shard_count
        self.shard_ids = None if shard_ids is None else frozenset(shard_ids)
        self.takeover_s = takeover_s
        self.retry_s = RETRY_S
        self.clock = clock or (lambda: datetime.now(UTC))
        self._since = self.clock()  # jobs made before are a previous run's
        self._queues: dict[str, asyncio.Queue[_Item]] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._holds: dict[str, asyncio.Event] = {}
        self._limits: dict[str, int] = {}
        self._last_progress: dict[str, float] = {}
        # Jobs whose interaction token Discord has already refused: stop trying it.
        self._dead_tokens: set[str] = set()
        # Running jobs this process does not show (other shards', the CLI's): their
        # progress is dropped without reading their rows.
        self._foreign: set[str] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # Jobs whose message only their interaction reaches: the timer of its last update,
        # and the jobs that had it (their message is not updated again but for the end).
        self._last_call_timers: dict[str, asyncio.TimerHandle] = {}
        self._last_called: set[str] = set()
        # What is painted of each shown job's photo, read from it once: None for a still.
        self._animations: dict[str, AnimationPlan | None] = {}
        self._ready = asyncio.Event()
        self._startup: asyncio.Task[None] | None = None
        # Until the start's sweep is done: the jobs whose end this run has seen. Their own
        # event delivers them; the sweep's list, read a moment earlier, may not know it.
        self._ended_here: set[str] | None = set()
        # This process's queued jobs, and the place their message shows; how often those
        # messages may be edited as the queue moves.
        self._queued: dict[str, int | None] = {}
        self.refresh_s = QUEUED_REFRESH_S
        self._refresh_timer: asyncio.TimerHandle | None = None
        self._last_refresh = float("-inf")

    # ---- wiring ----------------------------------------------------------------------
    def start(self) -> None:
        self.service.subscribe(self.on_event)

    def client_ready(self) -> None:
        """Called on every READY; the first one redelivers what a previous run left."""
        if not self._ready.is_set():
            self._ready.set()
            self._startup = asyncio.create_task(self._redeliver_all(), name="redeliver")

    async def stop(self) -> None:
        if self._startup is not None:
            self._startup.cancel()
        if self._refresh_timer is not None:
            self._refresh_timer.cancel()
        for timer in [*self._timers.values(), *self._last_call_timers.values()]:
            timer.cancel()
        self._timers.clear()
        self._last_call_timers.clear()
        for queue in self._queues.values():
            queue.put_nowait(None)
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
            for task in pending:
                task.cancel()

    def hold(self, job_id: str) -> None:
        """Holds the job's events while its messages are being set up (and stored), until
        `release`. Synchronous, so that it can be called the moment the job is committed,
        before the event loop runs anything else (a fast painter could otherwise finish
        the job and deliver it before its progress message exists)."""
        self._holds.setdefault(job_id, asyncio.Event())  # one gate, however many holds

    def release(self, job_id: str) -> None:
        gate = self._holds.pop(job_id, None)
        if gate is not None:
            gate.set()

    def remember_upload_limit(self, job_id: str, limit: int) -> None:
        self._limits[job_id] = limit

    def watch_token(self, job: JobRecord, expires_at: datetime | None) -> None:
        """Plans the last update of the job's message before its interaction token ends
        (`expires_at`), where nothing else reaches that message: a private job's reply,
        or a job asked where the bot is not a member (`access.may_post_in_channel`)."""
        if (expires_at is None or access.may_post_in_channel(job) or not self.owns(job)
                or job.id in self._last_called):
            return
        old = self._last_call_timers.pop(job.id, None)
        if old is not None:
            old.cancel()
        delay = (expires_at - TOKEN_MARGIN - LAST_CALL - self.clock()).total_seconds()

        def fire() -> None:
            self._last_call_timers.pop(job.id, None)
            self._enqueue(job.id, _LastCall(job.id))

        self._last_call_timers[job.id] = asyncio.get_running_loop().call_later(
            max(0.0, delay), fire)

    def shown_place(self, job_id: str, position: int | None) -> None:
        """The place in the queue a job's reply has just shown."""
        if job_id in self._queued:
            self._queued[job_id] = position

    def owns(self, job: JobRecord) -> bool:
        """Whether this process received the job's interaction: a job from Discord asked
        in a server on one of its shards, or in a DM when it runs shard 0. A job from the
        command line belongs to no bot."""
        if job.source not in DISCORD_SOURCES:
            return False
        if self.shard_ids is None or self.shard_count is None:
            return True
        return shard_of(job.guild_id, self.shard_count) in self.shard_ids

    async def on_event(self, event: JobEvent) -> None:
        job_id = event.job_id
        if isinstance(event, (JobQueued, JobStarted, *FINAL_EVENTS)):
            self._queue_moved()  # one in or out: places may change (the fair order)
        job = None if isinstance(event, JobProgress) else event.job
        if self._ended_here is not None and isinstance(event, FINAL_EVENTS):
            self._ended_here.add(job_id)
        if job is not None:
            if self.owns(job):
                self._foreign.discard(job_id)
            else:
                self._foreign.add(job_id)
        if job_id not in self._foreign:
            if isinstance(event, JobQueued):
                # What its message shows: its reply sets it (`shown_place`); a job put back
                # shows painting.
                self._queued.setdefault(job_id, None)
            else:
                self._queued.pop(job_id, None)
            self._enqueue(job_id, event)
            return
        if isinstance(event, FINAL_EVENTS):
            self._foreign.discard(job_id)
        if isinstance(event, (JobSucceeded, JobFailed)) and event.job.source in DISCORD_SOURCES:
            # Its owner delivers it; if that process is down, this one will.
            self._later(job_id, self.takeover_s)

    def _later(self, job_id: str, delay_s: float, tries: int = TAKEOVER_TRIES) -> None:
        """Delivers the job's result after `delay_s` (at once if not positive), if it is
        still undelivered then."""
        item = _Redeliver(job_id, tries)
        old = self._timers.pop(job_id, None)
        if old is not None:
            old.cancel()
        if delay_s <= 0:
            self._enqueue(job_id, item)
            return

        def fire() -> None:
            self._timers.pop(job_id, None)
            self._enqueue(job_id, item)

        self._timers[job_id] = asyncio.get_running_loop().call_later(delay_s, fire)

    def _enqueue(self, job_id: str, item: _Item) -> None:
        queue = self._queues.get(job_id)
        if queue is None:
            queue = self._queues[job_id] = asyncio.Queue()
            self._tasks[job_id] = asyncio.create_task(self._worker(job_id, queue),
                                                      name=f"delivery-{job_id}")
        queue.put_nowait(item)

    async def _worker(self, job_id: str, queue: asyncio.Queue[_Item]) -> None:
        try:
            await self._ready.wait()
            while True:
                item = await queue.get()
                if item is None:
                    return
                gate = self._holds.get(job_id)
                if gate is not None:
                    await gate.wait()
                try:
                    await self._handle(item)
                except Exception:
                    log.exception("showing an update of job %s in Discord failed", job_id)
                final = isinstance(item, (*FINAL_EVENTS, _Redeliver))
                if final and queue.empty():
                    return
        finally:
            # No await between the last empty check and here: no event can slip in between.
            self._queues.pop(job_id, None)
            self._tasks.pop(job_id, None)

    async def _redeliver_all(self) -> None:
        try:
            jobs = await self.service.undelivered()
            active = await self.service.active_jobs()
        except Exception:
            log.exception("could not list undelivered jobs")
            self._ended_here = None
            return
        ended_here, self._ended_here = self._ended_here or set(), None
        for job in active:  # a previous run's, whose last update is still to make
            self.watch_token(job, job.token_expires_at)
        now = self.clock()
        for job in jobs:
            if job.id in self._queues or job.id in ended_here:
                # Of this run: its own events are on their way (held until ready) or have
                # been handled. One whose event is yet to come is claimed and sent once
                # whichever comes first (`_deliver`).
                continue
            if self.owns(job):
                how = ("left over from a previous run" if job.created_at < self._since
                       else "finished before Discord was ready")
                log.info("delivering job %s, %s", job.id, how)
                self._enqueue(job.id, _Redeliver(job.id))
            elif job.source in DISCORD_SOURCES:
                # Another shard's: its owner may be up and about to deliver it.
                waited = (now - (job.finished_at or job.created_at)).total_seconds()
                self._later(job.id, self.takeover_s - waited)

    # ---- events ----------------------------------------------------------------------
    def _queue_moved(self) -> None:
        """A job entered or left the queue or a worker: each queued job's message may show
        its new place, at most every `refresh_s` (Discord limits edits). A job that
        arrives with an earlier turn of the fair order goes ahead of others: theirs go
        down."""
        if self._refresh_timer is not None or not self._queued:
            return
        delay = max(0.0, self._last_refresh + self.refresh_s - time.monotonic())
        self._refresh_timer = asyncio.get_running_loop().call_later(delay, self._refresh_all)

    def _refresh_all(self) -> None:
        self._refresh_timer = None
        self._last_refresh = time.monotonic()
        for job_id in list(self._queued):  # each through its own worker, in order
            self._enqueue(job_id, _Refresh(job_id))

    async def _handle(self, item: JobEvent | _Redeliver | _Refresh | _LastCall) -> None:
        if isinstance(item, JobQueued):
            return  # the submitting command shows the queued state itself
        if isinstance(item, _Refresh):
            await self._show_place(item.job_id)
            return
        if isinstance(item, _LastCall):
            await self._last_call(item.job_id)
            return
        if isinstance(item, JobStarted):
            job = await self.service.get(item.job_id)
            plan = await self.animation(job)
            frames = plan.painted if plan is not None and plan.painted > 1 else 0
            await self._edit_progress(job, embeds.running(job, step=0, total=job.total_steps,
                                                          preview=False, frames=frames), [])
        elif isinstance(item, JobProgress):
            await self._progress(item)
        elif isinstance(item, JobCancelled):
            self._forget(item.job_id)
            job = await self.service.get(item.job_id)
            await self._edit_progress(job, embeds.cancelled(job), [], view=None, last=True)
        elif isinstance(item, (JobSucceeded, JobFailed)):
            png = item.png if isinstance(item, JobSucceeded) else None
            await self._deliver_or_retry(item.job_id, png, tries=TAKEOVER_TRIES)
        else:
            await self._deliver_or_retry(item.job_id, None, tries=item.tries, again=True)

    async def _deliver_or_retry(self, job_id: str, png: bytes | None, *, tries: int,
                                again: bool = False) -> None:
        """`_deliver`, tried again later (`tries` times in all) when another process holds
        the claim (it is delivering, or died doing so and its claim will expire), or when
        Discord failed (a server error that outlasted discord.py's own retries): each wait
        twice the one before, from `retry_s`. After that, the next start delivers it."""
        try:
            if await self._deliver(job_id, png, again=again) or tries <= 1:
                return
            delay = self.takeover_s
        except discord.HTTPException as exc:
            if tries <= 1:
                raise
            delay = self.retry_s * 2 ** (TAKEOVER_TRIES - tries)
            log.warning("job %s: Discord failed to take its result (%s); trying again in "
                        "%.0f s", job_id, exc, delay)
        self._later(job_id, delay, tries - 1)

    async def _show_place(self, job_id: str) -> None:
        if job_id not in self._queued:
            return  # started or ended meanwhile
        position, eta = await self.service.position_and_eta(job_id)
        job = await self.service.get(job_id)
        if position is None or job_id not in self._queued or position == self._queued[job_id]:
            return  # started meanwhile (its own events follow this), or nothing new
        self._queued[job_id] = position
        embed = embeds.queued(job, position=position, eta_s=eta,
                              animation=await self.animation(job))
        await self._edit_progress(job, embed, [])

    async def _last_call(self, job_id: str) -> None:
        """The last update of a message only the job's interaction reaches, a minute
        before its token ends: where the painting will go, since it cannot go there. A
        DM says so first; whether the user's DMs took it decides what the message says:
        the painting will come by DM, or waits in /history."""
        job = await self.service.get(job_id)
        if JobStatus(job.status).is_final or not self._token_alive(job):
            return
        self._last_called.add(job.id)
        dms_open = await self._dm_note(job)
        await self._edit_progress(job, embeds.token_ending(job, dms_open=dms_open), [],
                                  last=True)
        log.info("job %s outlives its interaction token: its painting goes %s", job.id,
                 "by DM" if dms_open is not False else "to /history (DMs closed)")

    async def _dm_note(self, job: JobRecord) -> bool | None:
        """Tells the user by DM where the painting will come; whether their DMs took it
        (None: Discord failed otherwise). Its nonce makes a repeat one message."""
        try:
            dm = await self.client.create_dm(discord.Object(int(job.user_id)))
            await dm.send(embeds.token_ending_dm(job), nonce=result_nonce(job.id, "note"))
            return True
        except (discord.Forbidden, discord.NotFound) as exc:
            log.info("user %s takes no DMs from the bot (job %s): %s", job.user_id, job.id,
                     exc)
            return False
        except discord.HTTPException as exc:
            log.warning("could not DM user %s about job %s: %s", job.user_id, job.id, exc)
            return None

    async def animation(self, job: JobRecord, photo: bytes | None = None
                        ) -> AnimationPlan | None:
        """What is painted of the job's photo, if it is animated, from the header of
        `photo` (its bytes, when the caller has them) or of the stored photo, read once per
        job. None when it is gone or cannot be read: these are words on a message, and
        never stop the message itself."""
        if job.id not in self._animations:
            if photo is None:
                try:
                    photo = await self.service.read_input(job.id)
                except (UserError, OSError, ValueError) as exc:  # gone (PicturesGone), unread
                    log.info("job %s: its photo cannot be read to describe it: %s", job.id,
                             exc)
            self._animations[job.id] = None if photo is None else await asyncio.to_thread(
                stored_animation, photo, job.params)
        return self._animations[job.id]

    async def _progress(self, event: JobProgress) -> None:
        now = time.monotonic()
        last = self._last_progress.get(event.job_id)
        if last is not None and now - last < PROGRESS_INTERVAL_S:
            return
        self._last_progress[event.job_id] = now
        job = await self.service.get(event.job_id)
        if JobStatus(job.status) != JobStatus.running:
            return
        files = []
        if event.preview_jpeg:
            files.append(discord.File(io.BytesIO(event.preview_jpeg), embeds.PREVIEW_NAME))
        embed = embeds.running(job, step=event.step, total=event.total,
                               preview=bool(event.preview_jpeg), frame=event.frame,
                               frames=event.frames)
        await self._edit_progress(job, embed, files)

    def _forget(self, job_id: str) -> None:
        timer = self._last_call_timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()
        self._last_called.discard(job_id)
        self._last_progress.pop(job_id, None)
        self._animations.pop(job_id, None)
        self._limits.pop(job_id, None)
        self._dead_tokens.discard(job_id)

    def _token_alive(self, job: JobRecord) -> bool:
        if not job.interaction_token or not job.application_id or job.id in self._dead_tokens:
            return False
        return job.token_expires_at is None or self.clock() < job.token_expires_at - TOKEN_MARGIN

    def _webhook(self, job: JobRecord) -> discord.Webhook:
        """The interaction's own webhook, rebuilt from the stored token.

        An application webhook (type 3), as `discord.Interaction.followup` builds it:
        Discord takes ephemeral follow-ups, which a private job's result needs, only from
        those; discord.py refuses them from `Webhook.partial`'s incoming type."""
        assert job.application_id
        assert job.interaction_token
        data: dict[str, Any] = {"id": int(job.application_id), "type": 3,
                                "token": job.interaction_token}
        return discord.Webhook.from_state(data=data,  # type: ignore[arg-type]
                                          state=self.client._connection)

    async def _edit_progress(self, job: JobRecord, embed: discord.Embed,
                             files: list[discord.File], *, view: Any = ...,
                             last: bool = False) -> None:
        """Shows `embed` in the job's message; after its `_last_call`, only a `last` one
        (how the job ended), so that the word there of where the painting goes stays."""
        if not job.progress_message_id or not self._token_alive(job) or not self.owns(job):
            return
        if job.id in self._last_called and not last:
            return
        if view is ...:
            view = views.progress_view(job.id)
        try:
            await self._webhook(job).edit_message(int(job.progress_message_id), embed=embed,
                                                  attachments=files, view=view)
        except discord.HTTPException as exc:
            if exc.code in DEAD_TOKEN_CODES or exc.status == 401:
                self._dead_tokens.add(job.id)
            log.info("could not update the progress message of job %s: %s", job.id, exc)

    async def retract(self, jobs: Iterable[JobRecord]) -> tuple[int, int]:
        """Deletes the messages this bot posted with the jobs' results (in a channel or a
        DM; a private reply is its owner's to dismiss): (how many went, how many are out
        of reach). One in a conversation the bot is not in can go only through its
        interaction, while the token lives; after that it is out of reach. One that is
        gone already is neither; one Discord refuses otherwise is left, and logged."""
        removed = kept = 0
        for job in jobs:
            if not job.result_message_id or not job.result_channel_id:
                continue
            message_id = int(job.result_message_id)
            bots_own = (access.bot_in_channel(job) or job.private
                        or job.result_channel_id != job.channel_id)
            if not bots_own and not self._token_alive(job):
                kept += 1
                continue
            try:
                if bots_own:
                    await self.client.http.delete_message(int(job.result_channel_id),
                                                          message_id)
                else:
                    await self._webhook(job).delete_message(message_id)
                removed += 1
            except discord.HTTPException as exc:
                if exc.code in DEAD_TOKEN_CODES:  # the token ended before we thought
                    self._dead_tokens.add(job.id)
                    kept += 1
                elif not isinstance(exc, discord.NotFound):
                    log.info("could not delete the result message of job %s: %s", job.id,
                             exc)
        return removed, kept

    # ---- results ---------------------------------------------------------------------
    async def _deliver(self, job_id: str, png: bytes | None, *, again: bool = False) -> bool:
        """Sends the job's result unless it has been; False when another process holds
        the claim to send it (True otherwise, sent or not)."""
        self._last_progress.pop(job_id, None)
        job = await self.service.get(job_id)
        if job.delivered or job.source not in DISCORD_SOURCES:
            return True
        if not await self.service.claim_delivery(job.id):
            # Several bot processes may share the database: exactly one sends it.
            log.info("job %s: another process is delivering its result", job.id)
            return False
        if not self.owns(job):
            log.info("job %s: delivering another shard's result (its owner has not, within "
                     "%.0f s)", job.id, self.takeover_s)
        if job.pictures_gone:
            # Its owner deleted its pictures before it was shown: say so in its own
            # message if that can still be edited, and post nothing anywhere else.
            message = await self._via_interaction(job, None)
            await self.service.mark_delivered(
                job.id, result_message_id=str(message.id) if message else None,
                result_channel_id=str(message.channel.id) if message else None)
            self._forget(job.id)
            log.info("job %s: its pictures were deleted before it was shown", job.id)
            return True
        message = None
        try:
            message = await self._send_result(job, png, again=again)
        finally:
            if message is None:  # for the next start, or another process
                await self.service.release_delivery(job.id)
        if message is None and not access.may_post_in_channel(job) and not self._token_alive(
                job):
            # Only its interaction and a DM could show it: the one has ended, the user's
            # DMs are closed. It waits in /history, as its message's last update said.
            await self.service.mark_delivered(job.id)
            self._forget(job.id)
            log.info("job %s: kept for /history (its token has ended, DMs are closed)",
                     job.id)
            return True
        if message is None:
            log.error("job %s could not be delivered anywhere; trying again at the next start",
                      job.id)
            return True
        await self.service.mark_delivered(job.id, result_message_id=str(message.id),
                                          result_channel_id=str(message.channel.id))
        self._forget(job.id)
        log.info("job %s delivered (message %s)", job.id, message.id)
        return True

    async def _send_result(self, job: JobRecord, png: bytes | None, *, again: bool
                           ) -> discord.Message | None:
        """Sends the result by the first route that takes it (see the module docstring)."""
        if JobStatus(job.status) == JobStatus.succeeded and png is None:
            png = await self.service.read_output(job.id)
        message = await self._via_interaction(job, png)
        if message is None and again:
            message = await self._shown_before(job, png)
        if message is None and access.may_post_in_channel(job):
            message = await self._via_channel(job, png)
        if message is None:
            message = await self._via_dm(job, png)
        return message

    async def _content(self, job: JobRecord, png: bytes | None, limit: int
                       ) -> dict[str, Any]:
        """Message fields for the finished job; the painting shrunk to `limit` bytes."""
        if png is None:
            embed = embeds.gone(job) if job.pictures_gone else embeds.failed(job)
            return {"embed": embed, "attachments": [], "view": None}
        fitted = await asyncio.to_thread(pictures.fit_to_limit, png, limit)
        # The extension is the format's (png, jpg; gif or webp for an animation), in the
        # file name and so in the embed's attachment:// link.
        filename = f"{RESULT_FILE_PREFIX}{job.id}.{fitted.ext}"
        plan = await self.animation(job)
        if plan is not None and fitted.ext not in ANIMATED_EXTS:
            plan = dataclasses.replace(plan, painted=1)  # its first frame, as a still
        embed = embeds.result(job, filename=filename, width=fitted.width, height=fitted.height,
                              note=fitted.note, animation=plan)
        return {"embed": embed, "attachments": [discord.File(io.BytesIO(fitted.data), filename)],
                "view": views.result_view(job.id)}

    async def _send_fitting(self, send: _Send, job: JobRecord, png: bytes | None,
                            limit: int) -> discord.Message:
        """Sends; when Discord still says "too large" (our idea of the limit was wrong),
        halves the limit and tries again."""
        for _ in range(4):
            fields = await self._content(job, png, limit)
            try:
                return await send(**fields)
            except discord.HTTPException as exc:
                if exc.code != TOO_LARGE and exc.status != 413:
                    raise
                log.info("job %s: result too large for %d bytes; shrinking", job.id, limit)
                limit //= 2
        raise RuntimeError(f"job {job.id}: the result never fitted")

    async def _via_interaction(self, job: JobRecord, png: bytes | None) -> discord.Message | None:
        if not self._token_alive(job):
            return None
        webhook = self._webhook(job)
        limit = self._limits.get(job.id, discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES)
        pmid = int(job.progress_message_id) if job.progress_message_id else None
        try:
            if pmid is not None:
                edit = functools.partial(webhook.edit_message, pmid)
                try:
                    return await self._send_fitting(edit, job, png, limit)
                except discord.NotFound as exc:
                    if exc.code != UNKNOWN_MESSAGE:
                        raise
                    log.info("progress message of job %s is gone", job.id)
            if access.may_post_in_channel(job):
                # A new public message goes to the channel, where its nonce makes a
                # repeat after a crash harmless; a webhook follow-up has no nonce.
                return None
            # A private job whose placeholder is gone: only a new private follow-up keeps
            # the painting for its owner's eyes within the interaction. Where the bot is
            # not a member, a follow-up is the only way to that channel at all.
            follow_up = _as_new_message(webhook.send, wait=True, ephemeral=job.private)
            return await self._send_fitting(follow_up, job, png, limit)
        except discord.HTTPException as exc:
            if exc.code in DEAD_TOKEN_CODES or exc.status == 401:
                log.info("interaction token of job %s has expired", job.id)
                self._dead_tokens.add(job.id)
            else:
                # Whatever Discord refused here, the channel or a DM may still take it.
                log.warning("could not deliver job %s through its interaction: %s", job.id,
                            exc)
            return None

    def _channel(self, job: JobRecord) -> Any:
        """The channel the job was asked in (a partial one when it is not cached)."""
        assert job.channel_id
        channel_id = int(job.channel_id)
        guild_id = int(job.guild_id) if job.guild_id else None
        return self.client.get_channel(channel_id) or self.client.get_partial_messageable(
            channel_id, guild_id=guild_id)

    async def _shown_before(self, job: JobRecord, png: bytes | None) -> discord.Message | None:
        """The progress message, if an earlier run already put the result in it.

        That run died before recording it, and the token it used may have expired since:
        the message is read from the channel instead (a private one cannot be)."""
        if not job.progress_message_id or not job.channel_id or not access.may_post_in_channel(
                job):
            return None
        try:
            message: discord.Message = await self._channel(job).fetch_message(
                int(job.progress_message_id))
        except discord.HTTPException as exc:
            log.info("could not read the progress message of job %s back: %s", job.id, exc)
            return None
        if png is not None:
            prefix = f"{RESULT_FILE_PREFIX}{job.id}."
            shown = any(a.filename.startswith(prefix) for a in message.attachments)
        else:
            shown = any(e.title == embeds.failed(job).title for e in message.embeds)
        if shown:
            log.info("job %s: its progress message already shows the result", job.id)
        return message if shown else None

    async def _via_channel(self, job: JobRecord, png: bytes | None) -> discord.Message | None:
        if not job.channel_id:
            return None
        channel = self._channel(job)
        channel_id = channel.id
        guild = self.client.get_guild(int(job.guild_id)) if job.guild_id else None
        limit = guild.filesize_limit if guild else discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES
        reference = None
        if job.progress_message_id:
            reference = discord.MessageReference(message_id=int(job.progress_message_id),
                                                 channel_id=channel_id, fail_if_not_exists=False)
        # discord.py sends a nonce with `enforce_nonce`: a repeat gets the same message.
        send = _as_new_message(channel.send, content=f"<@{job.user_id}>", reference=reference,
                               nonce=result_nonce(job.id))
        try:
            return await self._send_fitting(send, job, png, limit)
        except (discord.Forbidden, discord.NotFound) as exc:
            log.info("channel %s refused the result of job %s: %s", channel_id, job.id, exc)
            return None

    async def _via_dm(self, job: JobRecord, png: bytes | None) -> discord.Message | None:
        try:
            user_id = int(job.user_id)
        except ValueError:
            return None
        try:
            dm = await self.client.create_dm(discord.Object(user_id))
            # Where it was asked, when that was not this DM.
            send = _as_new_message(dm.send, nonce=result_nonce(job.id),
                                   content=embeds.dm_result_note(job))
            return await self._send_fitting(send, job, png,
                                            discord.utils.DEFAULT_FILE_SIZE_LIMIT_BYTES)
        except (discord.Forbidden, discord.NotFound) as exc:
            log.warning("could not DM user %s the result of job %s: %s", user_id, job.id, exc)
            return None
