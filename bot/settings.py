"""Settings from the environment, in one frozen object built by the composition root.

Every setting has an environment variable (listed beside each field) and a default
that works on a fresh install. `Settings.from_env` reads them; nothing else in the
program reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from stylizer import presets
from stylizer.config import PRECISIONS, EngineConfig

DEVICE_CHOICES = ("auto", "cpu", "cuda")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    data_dir: Path                                   # STYLEBOT_DATA_DIR
    database_url: str                                # STYLEBOT_DATABASE_URL
    styles_dir: Path | None = None                   # STYLEBOT_STYLES_DIR (a style pack)
    device: str = "auto"                             # STYLEBOT_DEVICE auto|cpu|cuda|cuda:N
    workers: int = 1                                 # STYLEBOT_WORKERS (per device)
    weights: str = "caffe"                           # STYLEBOT_WEIGHTS caffe|torchvision|PATH
    precision: str = "auto"                          # STYLEBOT_PRECISION auto|bf16|fp32
    # cuDNN times its kernels for each new batch shape: faster steps, but the first job
    # of every new size and batch size waits for the search.
    autotune: bool = True                            # STYLEBOT_AUTOTUNE on|off
    max_jobs_per_user: int = 2                       # STYLEBOT_MAX_JOBS_PER_USER
    max_queue: int = 50                              # STYLEBOT_MAX_QUEUE
    max_attempts: int = 3                            # STYLEBOT_MAX_ATTEMPTS
    job_timeout_s: float = 600.0                     # STYLEBOT_JOB_TIMEOUT
    # The most compatible queued jobs (same size and settings) one worker paints as one
    # batch; None: 16 on a GPU, 1 on a CPU.
    max_batch: int | None = None                     # STYLEBOT_MAX_BATCH
    default_size: int = 512                          # STYLEBOT_DEFAULT_SIZE
    max_size: int = 1024                             # STYLEBOT_MAX_SIZE
    # Steps per job; None keeps StyleParams' default. Lower it on a CPU-only host.
    default_steps: int | None = None                 # STYLEBOT_DEFAULT_STEPS
    max_upload_bytes: int = 25 * 1024 * 1024         # STYLEBOT_MAX_UPLOAD_BYTES
    max_pixels: int = 40_000_000                     # STYLEBOT_MAX_PIXELS
    # Painting requests a user may make per minute (bad ones included: each one costs a
    # download); 0 turns the limit off.
    requests_per_minute: int = 6                     # STYLEBOT_REQUESTS_PER_MINUTE
    # The token must never reach a log line or a repr.
    discord_token: str | None = field(default=None, repr=False)  # DISCORD_TOKEN
    discord_api_base: str = "https://discord.com/api/v10"        # DISCORD_API_BASE
    discord_gateway_url: str = "wss://gateway.discord.gg/"       # DISCORD_GATEWAY_URL
    dev_guild_id: int | None = None                              # STYLEBOT_DEV_GUILD
    attachment_hosts: tuple[str, ...] = ("cdn.discordapp.com", "media.discordapp.net")
    log_level: str = "INFO"                                      # STYLEBOT_LOG_LEVEL

    def __post_init__(self) -> None:
        dev = self.device
        if dev not in DEVICE_CHOICES and not (dev.startswith("cuda:") and dev[5:].isdigit()):
            raise SettingsError(f"STYLEBOT_DEVICE must be auto, cpu, cuda or cuda:N, not {dev!r}.")
        if self.precision not in PRECISIONS:
            raise SettingsError(f"STYLEBOT_PRECISION must be auto, bf16 or fp32, not "
                                f"{self.precision!r}.")
        for name in ("workers", "max_jobs_per_user", "max_queue", "max_attempts",
                     "default_size", "max_size", "max_upload_bytes", "max_pixels"):
            if getattr(self, name) < 1:
                raise SettingsError(f"{_ENV_NAMES[name]} must be at least 1.")
        if self.job_timeout_s <= 0:
            raise SettingsError("STYLEBOT_JOB_TIMEOUT must be a positive number of seconds.")
        if self.requests_per_minute < 0:
            raise SettingsError("STYLEBOT_REQUESTS_PER_MINUTE must be 0 (no limit) or more.")
        if self.max_batch is not None and not 1 <= self.max_batch <= 64:
            raise SettingsError("STYLEBOT_MAX_BATCH must be between 1 and 64.")
        if self.default_steps is not None and self.default_steps < 1:
            raise SettingsError("STYLEBOT_DEFAULT_STEPS must be at least 1.")
        if self.default_size > self.max_size:
            raise SettingsError("STYLEBOT_DEFAULT_SIZE must not exceed STYLEBOT_MAX_SIZE.")
        if self.log_level not in LOG_LEVELS:
            raise SettingsError(f"STYLEBOT_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}.")

    @property
    def engine(self) -> EngineConfig:
        """The workers' engine settings, as the stylizer takes them."""
        return EngineConfig(device=self.device, weights=self.weights, precision=self.precision,
                            autotune=self.autotune)

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Reads the STYLEBOT_* / DISCORD_* variables; `overrides` win over both.

        Raises `SettingsError` naming the variable when a value cannot be parsed.
        """
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for name, (var, parse) in _PARSERS.items():
            raw = env.get(var)
            if raw is None or raw.strip() == "":
                continue
            try:
                values[name] = parse(raw.strip())
            except ValueError as exc:
                raise SettingsError(f"{var}={raw!r} is not valid: {exc}") from None
        values.update(overrides)
        data_dir = Path(values.get("data_dir") or platformdirs.user_data_dir("stylebot"))
        values["data_dir"] = data_dir.expanduser()
        if not values.get("database_url"):
            values["database_url"] = f"sqlite+aiosqlite:///{values['data_dir'] / 'stylebot.db'}"
        if values.get("styles_dir") is not None:
            values["styles_dir"] = Path(values["styles_dir"]).expanduser()
        elif "styles_dir" not in overrides:
            values["styles_dir"] = presets.find_style_pack(values["data_dir"] / "styles")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        return cls(**values)


def _positive_float(raw: str) -> float:
    value = float(raw)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError("must be a finite number")
    return value


def _hosts(raw: str) -> tuple[str, ...]:
    hosts = tuple(h.strip().lower() for h in raw.split(",") if h.strip())
    if not hosts:
        raise ValueError("needs at least one host")
    return hosts


def _switch(raw: str) -> bool:
    value = raw.lower()
    if value in ("1", "on", "true", "yes"):
        return True
    if value in ("0", "off", "false", "no"):
        return False
    raise ValueError("use on or off")


def _device(raw: str) -> str:
    return raw.lower()


def _level(raw: str) -> str:
    return raw.upper()


_PARSERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "data_dir": ("STYLEBOT_DATA_DIR", Path),
    "database_url": ("STYLEBOT_DATABASE_URL", str),
    "styles_dir": ("STYLEBOT_STYLES_DIR", Path),
    "device": ("STYLEBOT_DEVICE", _device),
    "workers": ("STYLEBOT_WORKERS", int),
    "weights": ("STYLEBOT_WEIGHTS", str),
    "precision": ("STYLEBOT_PRECISION", str.lower),
    "autotune": ("STYLEBOT_AUTOTUNE", _switch),
    "max_jobs_per_user": ("STYLEBOT_MAX_JOBS_PER_USER", int),
    "max_queue": ("STYLEBOT_MAX_QUEUE", int),
    "max_attempts": ("STYLEBOT_MAX_ATTEMPTS", int),
    "job_timeout_s": ("STYLEBOT_JOB_TIMEOUT", _positive_float),
    "max_batch": ("STYLEBOT_MAX_BATCH", int),
    "default_size": ("STYLEBOT_DEFAULT_SIZE", int),
    "default_steps": ("STYLEBOT_DEFAULT_STEPS", int),
    "max_size": ("STYLEBOT_MAX_SIZE", int),
    "max_upload_bytes": ("STYLEBOT_MAX_UPLOAD_BYTES", int),
    "max_pixels": ("STYLEBOT_MAX_PIXELS", int),
    "requests_per_minute": ("STYLEBOT_REQUESTS_PER_MINUTE", int),
    "discord_token": ("DISCORD_TOKEN", str),
    "discord_api_base": ("DISCORD_API_BASE", str),
    "discord_gateway_url": ("DISCORD_GATEWAY_URL", str),
    "dev_guild_id": ("STYLEBOT_DEV_GUILD", int),
    "attachment_hosts": ("STYLEBOT_ATTACHMENT_HOSTS", _hosts),
    "log_level": ("STYLEBOT_LOG_LEVEL", _level),
}
_ENV_NAMES = {name: var for name, (var, _) in _PARSERS.items()}
