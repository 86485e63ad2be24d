"""`stylebot jobs delete`, `stylebot forget --user` and `stylebot gc`: the operator's
side of people's pictures (`bot.cli.pictures`), run as the command runs."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest
from jobs_helpers import FakeExecutor, png

from bot.cli import main as cli
from bot.cli.common import job_parts
from bot.jobs.records import JobRecord
from bot.settings import Settings
from stylizer.pool.messages import JobSucceeded


async def _paint(settings: Settings, jobs: list[tuple[str, int]]) -> list[JobRecord]:
    """Paints (with a stand-in painter) one job per (user, photo seed)."""
    paintings = itertools.count(50)
    fake = FakeExecutor(auto=lambda r: [JobSucceeded(r.job_id, png(next(paintings)), {})])
    async with job_parts(settings.replace(max_jobs_per_user=10), executor=fake) as parts:
        await parts.service.start()
        done = []
        for user, seed in jobs:
            job = await parts.service.submit(user_id=user, user_name="someone",
                                             content=png(seed), style="mosaic")
            done.append(await parts.service.wait(job.id, timeout_s=10))
        return done


async def _state(settings: Settings, job_ids: list[str]
                 ) -> tuple[list[str | None], int]:
    async with job_parts(settings) as parts:
        gone = [(await parts.service.get(i)).pictures_gone for i in job_ids]
        return gone, (await parts.storage.usage_async())[0]


def test_the_operator_deletes_pictures_and_cleans_the_store(
        in_process: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = Settings.from_env(device="cpu")
    a1, a2, b1 = asyncio.run(_paint(settings, [("111", 1), ("111", 2), ("222", 3)]))
    ids = [a1.id, a2.id, b1.id]
    _, before = asyncio.run(_state(settings, ids))

    assert cli.main(["jobs", "delete", a1.id]) == 0
    assert f"{a1.id}: pictures of 1 job(s) deleted, 2 image(s) removed" in capsys.readouterr().out
    assert cli.main(["forget", "--user", "111"]) == 0
    assert "user 111: pictures of 1 job(s) deleted" in capsys.readouterr().out
    gone, after = asyncio.run(_state(settings, ids))
    assert gone == ["deleted", "deleted", None]
    assert after == before - 4  # two photos, two paintings; the preset's painting stays

    assert cli.main(["gc"]) == 0
    assert f"the store keeps {after} image(s)" in capsys.readouterr().out

    # A typo among the ids deletes nothing; a user with no jobs is said to have none.
    assert cli.main(["jobs", "delete", b1.id, "zzzzzz"]) == 2
    assert "There is no job 'zzzzzz'" in capsys.readouterr().err
    assert asyncio.run(_state(settings, ids))[0] == ["deleted", "deleted", None]
    assert cli.main(["forget", "--user", "333"]) == 1
    assert "user '333' has no jobs here" in capsys.readouterr().err
    assert cli.main(["jobs"]) == 0
    assert capsys.readouterr().out.count("succeeded (pictures deleted)") == 2
    assert cli.main(["job", a1.id, "-o", "out.png"]) == 1
    assert "its pictures were deleted" in capsys.readouterr().err
