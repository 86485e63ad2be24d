"""The words of a job's queued message (`bot.discord.embeds.queued`) in each case its
reply can meet: still queued, taken by a worker, already finished."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.discord import embeds
from bot.jobs.records import JobRecord
from bot.jobs.states import JobStatus

JOB = JobRecord(
    id="k3x9p2", user_id="1", user_name="alice", guild_id=None, channel_id=None,
    source="slash", style="starry-night", style_hash=None, input_hash="0" * 64,
    output_hash=None, params={"size": 256}, status=JobStatus.queued, error_code=None,
    error_message=None, attempts=0, step=0, total_steps=100,
    created_at=datetime(2026, 1, 1, tzinfo=UTC), started_at=None, finished_at=None,
    private=False, parent_id=None, interaction_token=None, token_expires_at=None,
    application_id=None, progress_message_id=None, result_message_id=None,
    result_channel_id=None, delivered=False)


@pytest.mark.parametrize(("position", "eta_s", "lines"), [
    (3, 75.0, ["Position in the queue: **3**", "Expected to be ready in about 1 min 15 s"]),
    (1, 0.4, ["Position in the queue: **1**", "Expected to be ready in a moment"]),
    (None, 12.0, ["A worker has started on it", "Expected to be ready in about 12 s"]),
    (None, None, ["Finished already; the result follows"]),
])
def test_a_queued_message_says_where_the_job_is_and_when_it_should_be_ready(
        position: int | None, eta_s: float | None, lines: list[str]) -> None:
    embed = embeds.queued(JOB, position=position, eta_s=eta_s)
    assert embed.title == "Queued"
    assert (embed.description or "").splitlines() == [
        "Style: `starry-night` · size 256 px", *lines]
    assert embed.footer.text == "job k3x9p2 · alice"
