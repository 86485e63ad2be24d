"""The Discord token never reaches the logs: not from the bot, not from a worker process,
not inside an exception's text or a traceback. What is checked is what the real handlers
write to stderr (the file descriptor, which spawned workers share)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from bot.logging_setup import setup_logging
from bot.settings import Settings
from stylizer.config import EngineConfig
from stylizer.pool.messages import JobFailed, JobRequest
from stylizer.pool.spec import Engine, WorkerSpec
from stylizer.pool.supervisor import WorkerPool
from stylizer.pool.worker import Task, Worker

pytestmark = pytest.mark.timeout(120)

TOKEN = "MTA5ODc2NTQzMjEwOTg3NjU0.GxYz12.s3cr3t-t0ken_value-0123456789abcdef"


class LeakyWorker(Worker):
    """A worker (no torch) whose every job fails with an error that quotes the token."""

    def make_engine(self) -> Engine:
        return cast(Engine, object())

    def prepare(self, task: Task) -> None:
        raise RuntimeError(f"cannot reach the API with Authorization: Bot "
                           f"{os.environ['DISCORD_TOKEN']}")


def leaky_worker(spec: WorkerSpec) -> None:
    LeakyWorker(spec).serve()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """setup_logging changes process-wide state: put it back for the next tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    hooks = sys.excepthook, threading.excepthook
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    sys.excepthook, threading.excepthook = hooks


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.setenv("DISCORD_TOKEN", TOKEN)  # spawned workers inherit it too
    settings = Settings.from_env(os.environ, data_dir=tmp_path / "data")
    assert settings.discord_token is not None
    assert settings.discord_token.get_secret_value() == TOKEN
    return settings


async def test_the_token_never_reaches_the_logs(
        settings: Settings, restore_logging: None, capfd: pytest.CaptureFixture[str]) -> None:
    # As the bot's entry point does (bot.app.run_bot).
    setup_logging("INFO", secrets=settings.secrets())
    log = logging.getLogger("bot.test")

    # In a worker process, an exception's text and traceback.
    pool = WorkerPool(engine=EngineConfig(device="cpu"), workers=1, worker_target=leaky_worker,
                      start_method="spawn")  # spawned: the worker writes to our stderr
    await pool.start()
    try:
        await pool.submit(JobRequest("leaky-1", b"photo", (b"style",), ("k",), {}))
        async for event in pool.events():
            if isinstance(event, JobFailed):
                assert (event.job_id, event.code) == ("leaky-1", "internal")
                break
    finally:
        await pool.close(grace_s=5)

    # In this process: a message, an exception's text, a traceback, an uncaught exception.
    assert settings.discord_token is not None
    log.warning("logging in with %s", settings.discord_token.get_secret_value())
    try:
        raise RuntimeError(f"401 Unauthorized (token {TOKEN})")
    except RuntimeError:
        log.exception("could not log in")
    try:
        raise ValueError(TOKEN)
    except ValueError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)

    out, err = capfd.readouterr()
    written = out + err
    assert TOKEN not in written
    lines = written.splitlines()

    def line(text: str) -> str:
        return next((x for x in lines if text in x), f"no line with {text!r}")

    assert "stylizer.pool.worker: worker-0[" in line("jobs leaky-1: failed")
    assert line("RuntimeError: cannot reach the API") == (
        "RuntimeError: cannot reach the API with Authorization: Bot [redacted]")
    assert line("logging in with").endswith("bot.test: logging in with [redacted]")
    assert "could not log in" in line("could not log in")
    assert line("RuntimeError: 401") == "RuntimeError: 401 Unauthorized (token [redacted])"
    assert "CRITICAL" in line("uncaught exception")
    assert line("ValueError: ") == "ValueError: [redacted]"
    assert written.count("Traceback (most recent call last)") == 3

