"""`stylebot worker` processes sharing a PostgreSQL database with a `stylebot stylize` that
paints nothing itself: the painting arrives, a worker killed mid-job costs one retry on
the other, a stopped worker puts its job back; and the one-line errors."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jobs_helpers import png, until
from jobs_postgres import postgresql_only
from PIL import Image
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import main as cli
from bot.cli.common import OPERATOR
from bot.jobs import db

PAINT = ["--size", "32", "--scales", "1", "--optimizer", "adam"]
RUNNER = re.compile(r"worker (\S+:\d+:[0-9a-f]+): 1 worker process")


def _env(data_dir: Path, url: str, workers: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STYLEBOT_")}
    env.update(STYLEBOT_DATA_DIR=str(data_dir), STYLEBOT_DATABASE_URL=url,
               STYLEBOT_DEVICE="cpu", STYLEBOT_WORKERS=str(workers),
               STYLEBOT_POLL_INTERVAL="0.25", PYTHONPATH=os.pathsep.join(sys.path))
    return env


def _start(args: list[str], cwd: Path, env: dict[str, str], log: Path
           ) -> subprocess.Popen[bytes]:
    cwd.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:  # the child keeps its own handle
        return subprocess.Popen([sys.executable, "-m", "bot.cli", *args], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def _stylize_in_background(cwd: Path, env: dict[str, str], steps: str, out: str
                           ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bot.cli", "stylize", "p.png", "-s", "mosaic", "--steps", steps,
         "-o", out, *PAINT], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


async def _row(sm: async_sessionmaker[AsyncSession], job_id: str) -> db.Job:
    async with sm() as session:
        job = await db.get_job(session, job_id=job_id)
        assert job is not None
        return job


async def _only_job(sm: async_sessionmaker[AsyncSession], status: str) -> db.Job | None:
    async with sm() as session:
        jobs = await db.jobs_with_status(session, statuses=[db.JobStatus(status)])
    return jobs[0] if jobs else None


@postgresql_only
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_workers_on_a_shared_database_paint_what_a_stylize_without_workers_queues(
        migrated_database_url: str, sessionmaker: async_sessionmaker[AsyncSession],
        tmp_path: Path) -> None:
    url = migrated_database_url
    # Every process has a data folder of its own, as on machines of their own: the images
    # can only travel through the database.
    workers = [_start(["worker", "--grace", "600"], tmp_path / f"w{n}",
                      _env(tmp_path / f"w{n}" / "data", url, 1), tmp_path / f"w{n}.log")
               for n in (1, 2)]
    logs = [tmp_path / "w1.log", tmp_path / "w2.log"]
    cli_dir = tmp_path / "cli"
    cli_dir.mkdir()
    (cli_dir / "p.png").write_bytes(png(1, 48, 40))
    cli_env = _env(cli_dir / "data", url, 0)
    try:
        # Both workers ready (VGG19 loaded), each with its own runner id.
        await until(lambda: all(RUNNER.search(p.read_text()) for p in logs), within=120,
                    interval=0.5)
        runners = [m.group(1) for p in logs if (m := RUNNER.search(p.read_text()))]
        assert len(set(runners)) == 2
        pids = dict(zip(runners, workers, strict=True))

        # 1. A painting queued where nothing paints arrives, with the usual progress.
        done = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "bot.cli", "stylize", "p.png", "-s",
                             "mosaic", "--steps", "6", *PAINT], cwd=cli_dir, env=cli_env,
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr + "".join(p.read_text() for p in logs)
        assert "waiting for a worker" in done.stderr
        assert "painting…" in done.stderr
        assert "step 6/6" in done.stderr
        with Image.open(cli_dir / "p-mosaic.png") as img:
            assert img.size == (32, 27)
        first = re.search(r"job (\w{6}) done", done.stdout)
        assert first, done.stdout
        row = await _row(sessionmaker, first.group(1))
        assert (row.status, row.attempts, row.delivered) == ("succeeded", 1, True)
        assert row.runner in runners
        assert not (cli_dir / "data" / "blobs").exists()

        # 2. The worker painting a job is killed: the other one paints it (attempt 2).
        stylize = _stylize_in_background(cli_dir, cli_env, "24", "k.png")
        try:
            async def painting() -> db.Job | None:
                job = await _only_job(sessionmaker, "running")
                return job if job is not None and job.step > 0 else None
            await until(painting, within=60, interval=0.1)
            victim = await painting()
            assert victim is not None
            killed = pids[victim.runner or ""]
            killed.kill()  # SIGKILL: no goodbye, its lease and its pool left behind
            # Reaped, as its parent would on a real machine: a zombie still has its pid,
            # and recovery would wait for its lease to run out instead.
            await asyncio.to_thread(killed.wait, 10)
            _, err = await asyncio.to_thread(stylize.communicate, timeout=120)
        finally:
            if stylize.poll() is None:
                stylize.kill()
        assert stylize.returncode == 0, err
        assert "trying again (attempt 2)" in err
        assert "step 24/24" in err
        assert (cli_dir / "k.png").is_file()
        row = await _row(sessionmaker, victim.id)
        survivor = next(r for r in runners if r != victim.runner)
        assert (row.status, row.attempts, row.runner) == ("succeeded", 2, survivor)

        # 3. A stopped worker puts the job it was painting back in the queue: its grace
        #    (600 s) cut short by a second signal, as a second Ctrl-C does.
        stylize = _stylize_in_background(cli_dir, cli_env, "2000", "s.png")
        survivor_log = logs[runners.index(survivor)]
        try:
            await until(painting, within=60, interval=0.1)
            remaining = pids[survivor]
            remaining.send_signal(signal.SIGTERM)
            await until(lambda: "stopping; running jobs get 600 s" in survivor_log.read_text(),
                        within=30, interval=0.1)
            remaining.send_signal(signal.SIGTERM)
            assert await asyncio.to_thread(remaining.wait, 60) == 0
            queued = await _only_job(sessionmaker, "queued")
            assert queued is not None
            # The run a clean stop cut short does not count.
            assert (queued.attempts, queued.runner, queued.step) == (0, None, 0)
            stylize.send_signal(signal.SIGINT)  # nobody left to paint it: give up
            _, err = await asyncio.to_thread(stylize.communicate, timeout=60)
        finally:
            if stylize.poll() is None:
                stylize.kill()
        assert stylize.returncode == 130, err
        assert (await _row(sessionmaker, queued.id)).status == "cancelled"
        assert "stopping now; running jobs go back to the queue" in survivor_log.read_text()
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
            proc.wait(30)


@pytest.mark.parametrize(("env", "status", "message"), [
    ({"STYLEBOT_DATABASE_URL": "postgresql://postgres@127.0.0.1/x"}, 2,
     "stylebot: STYLEBOT_DATABASE_URL must name an async driver, such as "
     "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DATABASE (not postgresql)."),
    ({"STYLEBOT_DATABASE_URL": "postgresql+asyncpg://postgres:s3cret@127.0.0.1:1/x"}, 1,
     "stylebot: cannot connect to the database postgresql+asyncpg://postgres:***@127.0.0.1:1"
     "/x: Connect call failed ('127.0.0.1', 1)"),
    ({"STYLEBOT_WORKERS": "0"}, 2,
     "stylebot: a worker paints: set STYLEBOT_WORKERS to 1 or more (it is 0)."),
])
def test_worker_errors_are_one_line(in_process: Path, monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str], env: dict[str, str],
                                    status: int, message: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    started = time.monotonic()
    assert cli.main(["worker"]) == status
    assert capsys.readouterr().err == message + "\n"
    assert time.monotonic() - started < 15


def test_the_worker_command_is_listed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["worker", "--help"])
    assert "--grace SECONDS" in capsys.readouterr().out


async def test_a_bot_with_no_workers_starts_without_a_pool(
        tmp_path: Path) -> None:
    from bot.app import build
    from bot.jobs.executor import OfflineExecutor
    from bot.settings import Settings

    settings = Settings.from_env({}, data_dir=tmp_path / "data", workers=0, device="cpu")
    app = await build(settings)
    try:
        assert isinstance(app.executor, OfflineExecutor)
        await app.service.start()
        assert (await app.service.stats(caller=OPERATOR))["workers"] == 0
    finally:
        await app.shutdown(grace_s=0)
