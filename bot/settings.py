"""Settings from the environment, in one frozen object built by the composition root.

Every setting has an environment variable (STYLEBOT_ and the field's name in capitals,
unless the field names another; listed beside each field) and a default that works on a
fresh install. `Settings.from_env` reads them; nothing else in the program reads the
environment. A value we cannot use raises `SettingsError`: one line naming the variable,
never a pydantic report.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from stylizer import presets
from stylizer.config import EngineConfig
from stylizer.errors import InvalidParams
from stylizer.params import limits

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Counts that make no sense below one.
_AT_LEAST_ONE = ("max_jobs_per_user", "max_queue", "max_attempts", "default_size",
                 "max_size", "animation_size", "max_upload_bytes", "max_pixels")


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the variable."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="STYLEBOT_", frozen=True, extra="forbid",
                                      validate_by_name=True, validate_by_alias=True)

    # Both derived in `_fill_in_defaults` when not set: the platform's data folder, and a
    # SQLite file in it.
    data_dir: Path = Field(default_factory=lambda: _default_data_dir())  # STYLEBOT_DATA_DIR
    database_url: str = ""                           # STYLEBOT_DATABASE_URL
    # A style pack with the paintings; not set: one found in the data dir or beside the
    # working directory (`presets.find_style_pack`).
    styles_dir: Path | None = None                   # STYLEBOT_STYLES_DIR
    device: str = "auto"                             # STYLEBOT_DEVICE auto|cpu|cuda|cuda:N
    # Worker processes (per device); 0: this process paints nothing, and its jobs wait
    # for a `stylebot worker` sharing the database.
    workers: int = 1                                 # STYLEBOT_WORKERS
    weights: str = "caffe"                           # STYLEBOT_WEIGHTS caffe|torchvision|PATH
    precision: str = "auto"                          # STYLEBOT_PRECISION auto|bf16|fp32
    # cuDNN times its kernels for each new batch shape: faster steps, but the first job
    # of every new size and batch size waits for the search.
    autotune: bool = True                            # STYLEBOT_AUTOTUNE on|off
    max_jobs_per_user: int = 2                       # STYLEBOT_MAX_JOBS_PER_USER
    max_queue: int = 50                              # STYLEBOT_MAX_QUEUE
    max_attempts: int = 3                            # STYLEBOT_MAX_ATTEMPTS
    # How long a claimed job stays a process's without word from it (renewed every third
    # of it): after that, any process sharing the database puts the job back in the queue.
    lease_s: float = Field(60.0, allow_inf_nan=False, validation_alias="STYLEBOT_LEASE")
    # How often the job loops look at the database for other processes' changes
    # (PostgreSQL also wakes them at once, through LISTEN/NOTIFY).
    poll_interval_s: float = Field(2.0, allow_inf_nan=False,
                                   validation_alias="STYLEBOT_POLL_INTERVAL")
    job_timeout_s: float = Field(600.0, allow_inf_nan=False,
                                 validation_alias="STYLEBOT_JOB_TIMEOUT")
    # The most compatible queued jobs (same size and settings) one worker paints as one
    # batch; None: 16 on a GPU, 1 on a CPU.
    max_batch: int | None = None                     # STYLEBOT_MAX_BATCH
    default_size: int = 512                          # STYLEBOT_DEFAULT_SIZE
    max_size: int = 1024                             # STYLEBOT_MAX_SIZE
    # An animated photo (GIF, WebP, APNG): at most this many of its frames are painted,
    # evenly spaced (users cannot ask for more); 1 paints its first frame as a still.
    max_frames: int = 48                             # STYLEBOT_MAX_FRAMES
    # Its painting size when the user picks none: every frame is a painting, so smaller
    # than a still's by default; never above `max_size` (see `animation_default_size`).
    animation_size: int = 256                        # STYLEBOT_ANIMATION_SIZE
    # Steps per job; None keeps StyleParams' default. Lower it on a CPU-only host.
    default_steps: int | None = None                 # STYLEBOT_DEFAULT_STEPS
    max_upload_bytes: int = 25 * 1024 * 1024         # STYLEBOT_MAX_UPLOAD_BYTES
    max_pixels: int = 40_000_000                     # STYLEBOT_MAX_PIXELS
    # Painting requests a user may make per minute (bad ones included: each one costs a
    # download); 0 turns the limit off.
    requests_per_minute: int = 6                     # STYLEBOT_REQUESTS_PER_MINUTE
    # A SecretStr: a repr, a log line or an f-string shows stars, not the token.
    discord_token: SecretStr | None = Field(None, validation_alias="DISCORD_TOKEN")
    discord_api_base: str = Field("https://discord.com/api/v10",
                                  validation_alias="DISCORD_API_BASE")
    discord_gateway_url: str = Field("wss://gateway.discord.gg/",
                                     validation_alias="DISCORD_GATEWAY_URL")
    dev_guild_id: int | None = Field(None, validation_alias="STYLEBOT_DEV_GUILD")
    # Sharding (Discord requires it above 2,500 servers). Not set: one process, with as
    # many shards as Discord recommends. A count alone: this process runs all of them.
    # With the ids too (comma-separated, e.g. "0,1"): this process runs only those, and
    # other bot processes sharing the database run the rest.
    shard_count: int | None = None                   # STYLEBOT_SHARD_COUNT
    shard_ids: Annotated[tuple[int, ...] | None, NoDecode] = None  # STYLEBOT_SHARD_IDS
    # Comma-separated in the environment (NoDecode: not JSON).
    attachment_hosts: Annotated[tuple[str, ...], NoDecode] = (  # STYLEBOT_ATTACHMENT_HOSTS
        "cdn.discordapp.com", "media.discordapp.net")
    log_level: str = "INFO"                          # STYLEBOT_LOG_LEVEL
    # How long people's pictures are kept (`bot.jobs.retention`): a finished job's photo,
    # style image and painting go this many days after it ended; the job itself stays in
    # /history, without them, for `history_days` (0: for good). 0 keeps pictures for good.
    # At most 100 years (a cut-off must stay within the calendar); "for good" is 0.
    retention_days: float = Field(30.0, ge=0, le=36500,  # STYLEBOT_RETENTION_DAYS
                                  allow_inf_nan=False)
    history_days: float = Field(0.0, ge=0, le=36500,     # STYLEBOT_HISTORY_DAYS
                                allow_inf_nan=False)
    # New jobs are refused while the disk holding the pictures has less free than this.
    min_free_mb: int = Field(512, ge=0, le=2**40)    # STYLEBOT_MIN_FREE_MB

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Reads the STYLEBOT_* / DISCORD_* variables of `env` (default: the process's);
        `overrides`, by field name, win over both.

        Raises `SettingsError` naming the variable when a value cannot be used, and
        `TypeError` for an override that is not a setting (a programming error).
        """
        _known_fields(overrides)
        sources = (InitSettingsSource(cls, init_kwargs=overrides),
                   _Environment(cls, os.environ if env is None else env))
        try:
            # BaseSettings' own keyword (pre-built sources, in order of priority); mypy
            # sees only the fields through pydantic's dataclass_transform.
            return cls(_build_sources=(sources, overrides))  # type: ignore[call-arg]
        except ValidationError as exc:
            raise SettingsError(_one_line(exc)) from None

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed, checked again; the environment is not read."""
        _known_fields(changes)
        try:
            return self.model_validate({**dict(self), **changes})
        except ValidationError as exc:
            raise SettingsError(_one_line(exc)) from None

    @classmethod
    def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Arguments, then the process environment: no .env file, no secrets folder."""
        return init_settings, _Environment(settings_cls, os.environ)

    @property
    def engine(self) -> EngineConfig:
        """The workers' engine settings, as the stylizer takes them."""
        return EngineConfig(device=self.device, weights=self.weights, precision=self.precision,
                            autotune=self.autotune)

    @property
    def animation_default_size(self) -> int:
        """An animation's painting size when the user picks none (within `max_size`)."""
        return min(self.animation_size, self.max_size)

    @property
    def blobs_dir(self) -> Path:
        return self.data_dir / "blobs"

    def secrets(self) -> list[str]:
        """The values that logs must never show (for `setup_logging`)."""
        return [self.discord_token.get_secret_value()] if self.discord_token else []

    # -- validation ---------------------------------------------------------------------

    @model_validator(mode="before")
    @classmethod
    def _fill_in_defaults(cls, data: Any) -> Any:
        """The defaults that depend on another setting: the database and the style pack
        live in the data dir. A `styles_dir` given as None means none, not a search."""
        if not isinstance(data, dict):
            return data
        values = dict(data)
        data_dir = Path(values.get("data_dir") or _default_data_dir()).expanduser()
        values["data_dir"] = data_dir
        if not values.get("database_url"):
            values["database_url"] = f"sqlite+aiosqlite:///{data_dir / 'stylebot.db'}"
        if values.get("styles_dir") is not None:
            values["styles_dir"] = Path(values["styles_dir"]).expanduser()
        elif "styles_dir" not in values:
            values["styles_dir"] = presets.find_style_pack(data_dir / "styles")
        return values

    @field_validator("device", "precision", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("autotune", mode="before")
    @classmethod
    def _switch(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        if value.lower() in ("1", "on", "true", "yes"):
            return True
        if value.lower() in ("0", "off", "false", "no"):
            return False
        raise ValueError("use on or off")

    @field_validator("attachment_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = tuple(h.strip().lower() for h in value.split(",") if h.strip())
            if not value:
                raise ValueError("needs at least one host")
        return value

    @field_validator("shard_ids", mode="before")
    @classmethod
    def _shard_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = tuple(int(part) for part in value.split(","))
            except ValueError:
                raise ValueError("use shard numbers separated by commas, such as 0,1") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> Settings:
        try:
            _ = self.engine  # EngineConfig checks device, weights and precision
        except InvalidParams as exc:
            # Its message starts with the field's name; the user set the variable.
            field, _, rest = exc.message.partition(" ")
            raise ValueError(f"{_variable(field)} {rest}") from None
        for name in _AT_LEAST_ONE:
            if getattr(self, name) < 1:
                raise ValueError(f"{_variable(name)} must be at least 1.")
        if self.workers < 0:
            raise ValueError("STYLEBOT_WORKERS must be 0 (paint nothing here) or more.")
        if self.job_timeout_s <= 0:
            raise ValueError("STYLEBOT_JOB_TIMEOUT must be a positive number of seconds.")
        if not 0 < self.poll_interval_s <= 60:
            raise ValueError("STYLEBOT_POLL_INTERVAL must be between 0 and 60 seconds.")
        if self.lease_s < 3 * self.poll_interval_s:
            raise ValueError("STYLEBOT_LEASE must be at least three times "
                             "STYLEBOT_POLL_INTERVAL (leases are renewed at the polls).")
        if self.requests_per_minute < 0:
            raise ValueError("STYLEBOT_REQUESTS_PER_MINUTE must be 0 (no limit) or more.")
        if self.max_batch is not None and not 1 <= self.max_batch <= 64:
            raise ValueError("STYLEBOT_MAX_BATCH must be between 1 and 64.")
        if self.default_steps is not None and self.default_steps < 1:
            raise ValueError("STYLEBOT_DEFAULT_STEPS must be at least 1.")
        frames = limits()["max_frames"]  # StyleParams' own range
        low, high = int(frames.min or 1), int(frames.max or self.max_frames)
        if not low <= self.max_frames <= high:
            raise ValueError(f"STYLEBOT_MAX_FRAMES must be between {low} and {high}.")
        self._check_shards()
        if self.default_size > self.max_size:
            raise ValueError("STYLEBOT_DEFAULT_SIZE must not exceed STYLEBOT_MAX_SIZE.")
        try:
            # The dialect and its driver are looked up; nothing connects yet.
            url = make_url(self.database_url)
            if not url.get_dialect().is_async:
                raise ValueError(
                    "STYLEBOT_DATABASE_URL must name an async driver, such as "
                    "sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST/DATABASE "
                    f"(not {url.drivername}).")
            url.get_dialect().import_dbapi()
        except (ArgumentError, NoSuchModuleError) as exc:
            raise ValueError(f"STYLEBOT_DATABASE_URL is not a database URL this program can "
                             f"use ({exc}).") from None
        except ImportError as exc:
            raise ValueError(f"STYLEBOT_DATABASE_URL needs the Python package "
                             f"{exc.name or url.drivername!r}, which is not installed.") from None
        if self.log_level not in LOG_LEVELS:
            raise ValueError(f"STYLEBOT_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}.")
        return self

    def _check_shards(self) -> None:
        count, ids = self.shard_count, self.shard_ids
        if count is not None and count < 1:
            raise ValueError("STYLEBOT_SHARD_COUNT must be at least 1.")
        if ids is None:
            return
        if count is None:
            raise ValueError("STYLEBOT_SHARD_IDS needs STYLEBOT_SHARD_COUNT, the number of "
                             "shards of the whole bot.")
        if not ids:
            raise ValueError("STYLEBOT_SHARD_IDS needs at least one shard number.")
        if len(set(ids)) != len(ids):
            raise ValueError("STYLEBOT_SHARD_IDS names a shard twice.")
        if not all(0 <= shard < count for shard in ids):
            raise ValueError(f"STYLEBOT_SHARD_IDS must be shard numbers from 0 to "
                             f"{count - 1} (STYLEBOT_SHARD_COUNT is {count}).")


class _Environment(EnvSettingsSource):
    """The settings' variables in a given mapping (`os.environ` or a test's dict),
    stripped; a blank one counts as unset."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        # Only each field's one variable: by-name validation (for `from_env`'s overrides)
        # would also let pydantic-settings read STYLEBOT_<field> for a field that names
        # another variable. Names are matched case-insensitively, as pydantic-settings does.
        known = {_variable(name).lower() for name in settings_cls.model_fields}
        self.env_vars = {name.lower(): value.strip() for name, value in env.items()
                         if name.lower() in known and value.strip()}


def _known_fields(values: Mapping[str, Any]) -> None:
    unknown = set(values) - set(Settings.model_fields)
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")


def _default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("stylebot"))


def _variable(name: str) -> str:
    """The environment variable of a field (or of an alias, which is one already)."""
    field = Settings.model_fields.get(name)
    if field is None:
        return name
    alias = field.validation_alias
    return alias if isinstance(alias, str) else "STYLEBOT_" + name.upper()


def _one_line(exc: ValidationError) -> str:
    """The first error, as a sentence naming the variable, without pydantic's report."""
    error = exc.errors(include_url=False)[0]
    cause = error.get("ctx", {}).get("error")
    reason = str(cause) if cause is not None else error["msg"]
    if not error["loc"]:  # from `_check`: the message names its variables
        return reason
    var = _variable(str(error["loc"][0]))
    value = error["input"]
    if isinstance(value, SecretStr) or var == "DISCORD_TOKEN":
        value = "**********"
    return f"{var}={value!r} is not valid: {reason}"
