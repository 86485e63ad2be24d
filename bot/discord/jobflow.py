"""Starting a job from an interaction, and the buttons on a job's messages.

`JobFlow` is built by the composition root (`bot.app`) from the job service, the blob
storage and the delivery, and held by the client: the cogs reach it as `bot.flow`, a
`views.JobButton` press as `interaction.client.flow`.

Every path that makes a job (the slash command, the context menu, "Again" / "More
style" / "Less style") ends in `JobFlow.start_job`. Its interaction has already been
answered with a private ("ephemeral") placeholder, so errors before this point reach
only the user; `start_job` turns that placeholder into a short receipt and posts the
job's public progress message as a follow-up (or, for a private job, uses the
placeholder itself).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import discord

from bot.discord import embeds, validation, views
from bot.discord.callers import caller_of, origin_of
from bot.jobs.access import Action
from bot.jobs.errors import PicturesGone
from bot.jobs.records import token_expiry

if TYPE_CHECKING:
    from bot.discord.delivery import Delivery
    from bot.jobs.access import Caller
    from bot.jobs.admission import Admission, Ticket
    from bot.jobs.records import JobRecord
    from bot.jobs.retention import Privacy, Removed
    from bot.jobs.service import JobService
    from bot.jobs.storage import BlobStore

log = logging.getLogger(__name__)


class JobFlow:
    def __init__(self, service: JobService, storage: BlobStore, delivery: Delivery,
                 admission: Admission, privacy: Privacy) -> None:
        self.service = service
        self.storage = storage
        self.delivery = delivery
        self.admission = admission
        self.privacy = privacy

    @contextlib.asynccontextmanager
    async def place(self, interaction: discord.Interaction[Any]) -> AsyncIterator[Ticket]:
        """The request's place at the door (`bot.jobs.admission`): its number is taken on
        entry, so enter before anything awaits; `admission.admit(ticket)` waits for its turn. The
        place is given back on exit, or when the job is committed (`start_job`)."""
        ticket = self.admission.arrive(str(interaction.user.id))
        try:
            yield ticket
        finally:
            self.admission.release(ticket)

    async def start_job(self, interaction: discord.Interaction[Any], *, content: bytes,
                        style: str | None, style_image: bytes | None, params: dict[str, Any],
                        private: bool, source: str, parent_id: str | None = None,
                        ticket: Ticket | None = None) -> JobRecord:
        """Queues the job and shows it (see the module docstring); `ticket`, the admitted
        place of its request, is given back the moment the job's row is committed."""
        held: list[str] = []

        def hold(job_id: str) -> None:
            if ticket is not None:
                self.admission.release(ticket)  # the row counts from now on
            held.append(job_id)
            self.delivery.hold(job_id)

        try:
            job = await self.service.submit(
                user_id=str(interaction.user.id), user_name=interaction.user.display_name,
                content=content, style=style, style_image=style_image, params=params,
                source=source, origin=origin_of(interaction), private=private,
                parent_id=parent_id, on_committed=hold,
                arrived_at=ticket.arrived_at if ticket is not None else None)
        except BaseException:
            for job_id in held:  # committed, then something failed: let its events through
                self.delivery.release(job_id)
            raise
        # Held from the commit on: the job's events wait until its messages exist and are
        # recorded.
        try:
            self.delivery.remember_upload_limit(job.id, interaction.filesize_limit)
            on_the_way = None if ticket is None else functools.partial(
                self.admission.ahead_of, ticket)
            position, eta = await self.service.position_and_eta(job.id, on_the_way=on_the_way)
            embed = embeds.queued(job, position=position, eta_s=eta,
                                  animation=await self.delivery.animation(job, content))
            self.delivery.shown_place(job.id, position)
            progress_id: str | None = None
            msg: discord.Message
            try:
                if job.private:
                    msg = await _private_placeholder(interaction, job, embed)
                else:
                    await interaction.edit_original_response(
                        content=f"Job `{job.id}` is in the queue; the painting will appear "
                                "below.", embed=None, view=None)
                    msg = await interaction.followup.send(embed=embed, wait=True,
                                                          view=views.progress_view(job.id))
                progress_id = str(msg.id)
            except discord.HTTPException:
                # The job is safe in the database; delivery falls back to the channel or a
                # DM.
                log.warning("could not post the progress message of job %s", job.id,
                            exc_info=True)
            expires_at = token_expiry(interaction.created_at)
            await self.service.set_delivery(
                job.id, interaction_token=interaction.token, token_expires_at=expires_at,
                application_id=str(interaction.application_id),
                progress_message_id=progress_id)
            self.delivery.watch_token(job, expires_at)
        finally:
            self.delivery.release(job.id)
        log.info("job %s queued for user %s (%s)", job.id, interaction.user.id, source)
        return job

    async def on_job_button(self, interaction: discord.Interaction[Any], action: str,
                            job_id: str) -> None:
        caller = caller_of(interaction)
        if action == "cancel":
            await interaction.response.defer(ephemeral=True, thinking=True)
            await self.service.cancel(job_id, caller=caller)
            await interaction.edit_original_response(content=f"Job `{job_id}` is cancelled.")
            return
        if action == "delete":
            # Only the owner may (refused privately, before anything is touched); then the
            # `/job` reply the button is on becomes the answer, its pictures gone with them.
            await self.service.authorize(job_id, caller=caller, action=Action.delete)
            await interaction.response.defer()  # an update of that reply, to come
            removed, posts, kept = await self.forget(caller, job_id)
            await interaction.edit_original_response(
                content=embeds.forgotten_job(job_id, removed, posts=posts, kept=kept), embed=None,
                attachments=[], view=None)
            return
        async with self.place(interaction) as ticket:
            # The job id comes from the button's custom id: the rule is checked on the job.
            job = await self.service.authorize(job_id, caller=caller, action=Action.reuse)
            if job.pictures_gone is not None:
                raise PicturesGone(job.id, job.pictures_gone)
            params = validation.derive_params(job.params, action,
                                              new_seed=secrets.randbelow(2**31))
            await interaction.response.defer(ephemeral=True, thinking=True)
            await self.admission.admit(ticket)
            content = await self.service.read_input(job.id)
            style_image = None
            if job.style == "custom" and job.style_hash:
                style_image = await self.storage.get_async(job.style_hash)
            await self.start_job(interaction, content=content,
                                 style=None if style_image is not None else job.style,
                                 style_image=style_image, params=params, private=job.private,
                                 source="button", parent_id=job.id, ticket=ticket)


    async def forget(self, caller: Caller, job_id: str | None = None
                     ) -> tuple[Removed, int, int]:
        """Deletes the pictures of one of the caller's jobs, or of all their jobs
        (`Privacy`), then the messages the bot posted the paintings in
        (`Delivery.retract`): (what went from the store, messages deleted, messages out
        of the bot's reach). Raises
        `JobNotFound` for a job the caller may not delete."""
        if job_id is None:
            removed = await self.privacy.forget_user(caller=caller)
            jobs = await self.service.list_for_user(
                caller.user_id, limit=await self.service.count_for_user(caller.user_id))
        else:
            removed = await self.privacy.forget_job(job_id, caller=caller)
            jobs = [await self.service.get(job_id)]
        posts, kept = await self.delivery.retract(j for j in jobs if j.pictures_gone)
        return removed, posts, kept


async def _private_placeholder(interaction: discord.Interaction[Any], job: JobRecord,
                               embed: discord.Embed) -> discord.Message:
    """The private placeholder, showing the queued job: a private job's only message.

    When Discord refuses that edit, the placeholder is still the job's message: its id is
    looked up so that the result is an edit there, which a restart can repeat, rather
    than a new follow-up, which it could not without sending the painting twice."""
    try:
        return await interaction.edit_original_response(content=None, embed=embed,
                                                        view=views.progress_view(job.id))
    except discord.HTTPException as exc:
        log.warning("could not show job %s in its private placeholder: %s", job.id, exc)
        return await interaction.original_response()
