"""Settings, ids, blob storage and logging: the small pieces under the service."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from bot.jobs.ids import ALPHABET, looks_like_job_id, new_job_id, normalize_job_id
from bot.jobs.storage import BlobNotFound, BlobStorage, sha256_hex
from bot.logging_setup import RedactingFormatter
from bot.settings import Settings, SettingsError


def test_settings_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ../shared/styles beside it
    s = Settings.from_env({"STYLEBOT_DATA_DIR": str(tmp_path)})
    assert s.data_dir == tmp_path
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path / 'stylebot.db'}"
    assert (s.device, s.workers, s.max_jobs_per_user, s.max_queue, s.max_attempts) == (
        "auto", 1, 2, 50, 3)
    assert (s.precision, s.autotune) == ("auto", True)
    assert s.styles_dir is None
    assert s.discord_token is None
    assert s.attachment_hosts == ("cdn.discordapp.com", "media.discordapp.net")


def test_settings_find_a_style_pack_in_the_data_dir(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "styles").mkdir()
    assert Settings.from_env({"STYLEBOT_DATA_DIR": str(tmp_path)}).styles_dir is None
    (tmp_path / "styles" / "starry-night.jpg").write_bytes(b"")
    assert Settings.from_env({"STYLEBOT_DATA_DIR": str(tmp_path)}).styles_dir == tmp_path / "styles"


def test_settings_from_env_and_overrides(tmp_path: Path) -> None:
    env = {"STYLEBOT_DATA_DIR": str(tmp_path), "STYLEBOT_DEVICE": "CUDA:1",
           "STYLEBOT_WORKERS": "2", "STYLEBOT_JOB_TIMEOUT": "12.5", "DISCORD_TOKEN": "sekrit",
           "STYLEBOT_ATTACHMENT_HOSTS": "localhost:8080, cdn.example", "STYLEBOT_DEV_GUILD": "42",
           "STYLEBOT_STYLES_DIR": str(tmp_path / "styles"), "STYLEBOT_LOG_LEVEL": "debug",
           "STYLEBOT_DEFAULT_STEPS": "60", "STYLEBOT_REQUESTS_PER_MINUTE": "0",
           "STYLEBOT_PRECISION": "FP32", "STYLEBOT_AUTOTUNE": "Off"}
    s = Settings.from_env(env, workers=3)
    assert (s.default_steps, s.requests_per_minute, s.precision) == (60, 0, "fp32")
    assert s.autotune is False
    assert (s.device, s.workers, s.job_timeout_s, s.dev_guild_id) == ("cuda:1", 3, 12.5, 42)
    assert s.attachment_hosts == ("localhost:8080", "cdn.example")
    assert s.styles_dir == tmp_path / "styles"
    assert s.log_level == "DEBUG"
    assert s.discord_token is not None
    assert s.discord_token.get_secret_value() == "sekrit"
    assert s.secrets() == ["sekrit"]
    assert "sekrit" not in repr(s)
    assert "sekrit" not in f"{s} {s.discord_token}"


def test_settings_blank_variables_are_unset_and_replace_checks_again(tmp_path: Path) -> None:
    s = Settings.from_env({"STYLEBOT_DATA_DIR": str(tmp_path), "STYLEBOT_WORKERS": "  ",
                           "STYLEBOT_STYLES_DIR": "", "STYLEBOT_DISCORD_TOKEN": "not read",
                           "STYLEBOT_JOB_TIMEOUT_S": "1"})  # only the variables named above
    assert (s.workers, s.secrets(), s.job_timeout_s) == (1, [], 600.0)
    assert Settings.from_env({"STYLEBOT_DATA_DIR": str(tmp_path)}, styles_dir=None
                             ).styles_dir is None  # None given: no search
    assert s.replace(workers=3).workers == 3
    assert s.replace(workers=3).data_dir == tmp_path
    with pytest.raises(SettingsError, match="STYLEBOT_MAX_QUEUE must be at least 1"):
        s.replace(max_queue=0)
    with pytest.raises(SettingsError, match="STYLEBOT_DEVICE must be auto, cpu"):
        Settings.from_env({}, data_dir=tmp_path, device="tpu")  # an override names it too
    with pytest.raises(TypeError, match="unknown settings: colour"):
        Settings.from_env({}, data_dir=tmp_path, colour="red")


@pytest.mark.parametrize(("var", "value", "fragment"), [
    ("STYLEBOT_WORKERS", "two", "STYLEBOT_WORKERS"),
    ("STYLEBOT_WORKERS", "-1", "STYLEBOT_WORKERS must be 0"),
    ("STYLEBOT_LEASE", "1", "STYLEBOT_LEASE must be at least three times"),
    ("STYLEBOT_POLL_INTERVAL", "0", "STYLEBOT_POLL_INTERVAL must be between"),
    ("STYLEBOT_DATABASE_URL", "postgresql://u@h/db", "must name an async driver"),
    ("STYLEBOT_DEFAULT_STEPS", "0", "STYLEBOT_DEFAULT_STEPS"),
    ("STYLEBOT_REQUESTS_PER_MINUTE", "-1", "STYLEBOT_REQUESTS_PER_MINUTE"),
    ("STYLEBOT_DEVICE", "tpu", "STYLEBOT_DEVICE"),
    ("STYLEBOT_PRECISION", "fp16", "STYLEBOT_PRECISION"),
    ("STYLEBOT_AUTOTUNE", "maybe", "STYLEBOT_AUTOTUNE.*on or off"),
    ("STYLEBOT_JOB_TIMEOUT", "nan", "STYLEBOT_JOB_TIMEOUT"),
    ("STYLEBOT_DEFAULT_SIZE", "4096", "STYLEBOT_DEFAULT_SIZE"),
    ("STYLEBOT_DEV_GUILD", "general", "STYLEBOT_DEV_GUILD='general' is not valid"),
    ("STYLEBOT_ATTACHMENT_HOSTS", " , ", "STYLEBOT_ATTACHMENT_HOSTS.*at least one host"),
    ("STYLEBOT_MAX_BATCH", "100", "STYLEBOT_MAX_BATCH must be between 1 and 64"),
    ("STYLEBOT_DATABASE_URL", "bogus://x", "STYLEBOT_DATABASE_URL is not a database URL"),
    ("STYLEBOT_DATABASE_URL", "not a url", "STYLEBOT_DATABASE_URL is not a database URL"),
    ("STYLEBOT_DATABASE_URL", "sqlite+nosuchdriver:///x.db", "STYLEBOT_DATABASE_URL"),
])
def test_settings_errors_name_the_variable(tmp_path: Path, var: str, value: str,
                                           fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment) as info:
        Settings.from_env({"STYLEBOT_DATA_DIR": str(tmp_path), var: value})
    message = str(info.value)
    assert "\n" not in message  # one line, not pydantic's report
    assert "validation error" not in message
    assert "pydantic" not in message


def test_job_ids() -> None:
    ids = {new_job_id() for _ in range(500)}
    assert len(ids) == 500
    assert all(len(i) == 6 and set(i) <= set(ALPHABET) and looks_like_job_id(i) for i in ids)
    for typed in ("  #K3X9P2 ", "`k3x9p2`", "job k3x9p2", "Job `k3x9p2`", "``k3x9p2``"):
        assert normalize_job_id(typed) == "k3x9p2", typed
    assert not looks_like_job_id("k3x9p")
    assert not looks_like_job_id("l0l0l0")


def test_blob_storage_roundtrip(tmp_path: Path) -> None:
    storage = BlobStorage(tmp_path / "blobs")
    digest = storage.put(b"hello")
    assert digest == sha256_hex(b"hello")
    assert storage.path_for(digest) == tmp_path / "blobs" / digest[:2] / digest
    assert storage.get(digest) == b"hello"
    assert storage.exists(digest)
    assert storage.put(b"hello") == digest  # idempotent
    # Atomic writes leave no temporary files behind.
    assert [p.name for p in (tmp_path / "blobs" / digest[:2]).iterdir()] == [digest]


def test_blob_storage_refuses_bad_names(tmp_path: Path) -> None:
    storage = BlobStorage(tmp_path)
    with pytest.raises(ValueError, match="sha256"):
        storage.get("../../etc/passwd")
    with pytest.raises(BlobNotFound):
        storage.get("0" * 64)


def test_blob_storage_replaces_a_truncated_blob(tmp_path: Path) -> None:
    storage = BlobStorage(tmp_path)
    digest = sha256_hex(b"complete bytes")
    path = storage.path_for(digest)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"compl")  # e.g. a copy cut short by a full disk
    storage.put(b"complete bytes")
    assert storage.get(digest) == b"complete bytes"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".tmp")]
    assert os.access(path, os.R_OK)


def test_the_log_formatter_redacts_the_token_in_the_message_and_the_traceback() -> None:
    try:
        raise RuntimeError("bad token abc.def")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "token is %s", ("abc.def",),
                               exc_info)
    line = RedactingFormatter("%(message)s", ["abc.def"]).format(record)
    assert "abc.def" not in line
    assert line.startswith("token is [redacted]")
    assert "RuntimeError: bad token [redacted]" in line
