"""compose.yaml cannot run here (no container registry), so check what can be checked
without it: every service's command is a `stylebot` subcommand, and every environment it
gets, with the Dockerfile's own, is settings the program accepts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from bot.cli.main import build_parser
from bot.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _dockerfile_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text()
    runtime = text[text.index("AS runtime"):]
    block = re.search(r"^ENV (.*?)(?:\n(?!\s))", runtime, re.S | re.M)
    assert block is not None
    return dict(re.findall(r"(\w+)=(\S+)", block.group(1)))


def _substituted(value: str) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?message}, with sample values."""
    return re.sub(r"\$\{(\w+)(?::[-?]([^}]*))?\}",
                  lambda m: "secret" if m.group(1).endswith(("TOKEN", "PASSWORD")) else "x",
                  value)


def _services() -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    return {name: s for name, s in services.items() if s.get("image") == "stylebot"}


def test_compose_runs_a_bot_and_workers_from_the_dockerfile_image() -> None:
    services = _services()
    assert {s["command"][0] for s in services.values()} == {"run", "worker"}
    docker_env = _dockerfile_env()
    assert docker_env["STYLEBOT_DATA_DIR"] == "/data"
    settings: dict[str, Settings] = {}
    for name, service in services.items():
        build_parser().parse_args(service["command"])  # exits on an unknown command
        env = docker_env | {k: _substituted(str(v)) for k, v in service["environment"].items()}
        settings[name] = Settings.from_env(env)
        assert settings[name].database_url.startswith("postgresql+asyncpg://"), name
    assert any(v.endswith(":/styles:ro") for v in services["bot"]["volumes"])
    assert settings["bot"].workers == 0
