"""A picture too thin for VGG19 through the whole pipeline (issue 15): a real worker paints
it once, where it used to crash three times and end dead with advice that made it worse."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from jobs_helpers import ServiceFactory, png
from jobs_postgres import sqlite_only

from bot.jobs.executor import LocalPoolExecutor
from bot.jobs.records import dead_message
from bot.jobs.states import JobStatus
from bot.jobs.storage import BlobStorage
from bot.settings import Settings
from stylizer import images


@sqlite_only  # what it checks is the painting, done the same on either database
@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_a_thin_picture_job_succeeds_at_the_first_attempt(
        make_service: ServiceFactory, settings: Settings, storage: BlobStorage) -> None:
    executor = LocalPoolExecutor.from_settings(settings, preview_interval_s=0.2)
    service = make_service(executor, clock=lambda: datetime.now(UTC))
    await service.start()
    # 1200x300 at the settings' default size of 48: 48x12, thinner than the network sees.
    view = await service.submit(user_id="u", user_name="u", content=png(1, 1200, 300),
                                style_image=png(99), params={"steps": 2, "scales": 1})
    assert view.params["size"] == 48
    done = await service.wait(view.id, timeout_s=90)
    assert done.status is JobStatus.succeeded, (done.error_code, done.error_message)
    assert done.attempts == 1
    assert done.output_hash is not None
    assert images.decode(storage.get(done.output_hash)).size == (48, 12)


def test_only_a_vanished_worker_is_told_to_try_a_smaller_size() -> None:
    assert "smaller size" in dead_message(3, "worker_died")
    internal = dead_message(3, "internal")
    assert "smaller" not in internal
    assert "3 times" in internal
