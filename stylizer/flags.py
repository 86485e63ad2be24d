"""Command-line flags for painting, built one way for both CLIs (`python -m stylizer`,
`stylebot stylize`).

One flag per `StyleParams` field, with its range, choices and help from `limits()`
(booleans as `--x/--no-x`), and the engine's flags (`--device`, `--weights`,
`--precision`) for an `EngineConfig`. Every flag defaults to None, so a caller can tell
what was given from what was not and fill the rest from a preset or the settings.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Collection
from typing import Any

from stylizer.config import PRECISIONS, EngineConfig
from stylizer.params import Limit, StyleParams, limits

ENGINE_FIELDS = ("device", "weights", "precision")
# Where the bot's settings read the engine's defaults from.
_ENGINE_VARIABLES = {"device": "STYLEBOT_DEVICE", "weights": "STYLEBOT_WEIGHTS",
                     "precision": "STYLEBOT_PRECISION"}


def add_param_flags(parser: argparse.ArgumentParser, *, title: str = "painting parameters",
                    skip: Collection[str] = (), unstated_defaults: Collection[str] = ()
                    ) -> None:
    """Adds one flag per `StyleParams` field, except those in `skip`. `unstated_defaults`:
    fields whose default the caller takes from elsewhere, so the help does not show one."""
    group = parser.add_argument_group(title)
    for name, lim in limits().items():
        if name in skip:
            continue
        flag = "--" + name.replace("_", "-")
        text = _help(lim, show_default=name not in unstated_defaults)
        if isinstance(lim.default, bool):
            group.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                               default=None, help=text)
        elif isinstance(lim.default, tuple):  # style_blend: one weight per style
            group.add_argument(flag, dest=name, type=float, nargs="+", default=None,
                               metavar="W", help=f"{lim.help} (one per --style)")
        elif lim.choices:
            group.add_argument(flag, dest=name, choices=lim.choices, default=None, help=text)
        else:
            kind = int if isinstance(lim.default, int) else float
            group.add_argument(flag, dest=name, type=kind, default=None, help=text,
                               metavar="N" if kind is int else "X")


def _help(lim: Limit, *, show_default: bool) -> str:
    notes = []
    if lim.min is not None and lim.max is not None:
        notes.append(f"{lim.min:g}–{lim.max:g}")
    if show_default:
        notes.append(f"default {lim.default}")
    return f"{lim.help} ({', '.join(notes)})" if notes else lim.help


def given_params(args: argparse.Namespace) -> dict[str, Any]:
    """The painting parameters given as flags, by field name (lists as tuples)."""
    given: dict[str, Any] = {}
    for name in limits():
        value = getattr(args, name, None)
        if value is not None:
            given[name] = tuple(value) if isinstance(value, list) else value
    return given


def params_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None
                     ) -> StyleParams:
    """StyleParams from parsed flags; flags not given keep `base` or the defaults.

    Raises `InvalidParams` for a value out of range.
    """
    return StyleParams(**{**(base or {}), **given_params(args)})


def add_engine_flags(parser: argparse.ArgumentParser, *, from_settings: bool = False) -> None:
    """Adds `--device`, `--weights` and `--precision`. `from_settings`: the defaults come
    from the bot's settings, so the help names their variables instead of a value."""
    default = EngineConfig()

    def where(name: str) -> str:
        if from_settings:
            return _ENGINE_VARIABLES[name]
        return f"default: {getattr(default, name)}"

    parser.add_argument("--device", default=None,
                        help=f"auto, cpu, cuda or cuda:N ({where('device')})")
    parser.add_argument("--weights", default=None,
                        help="VGG19 weights: caffe, torchvision, or a .pth/.safetensors path "
                        f"({where('weights')})")
    parser.add_argument("--precision", default=None, choices=PRECISIONS,
                        help="the network's precision: auto is bf16 on a GPU or a CPU with "
                        f"native bf16, fp32 elsewhere ({where('precision')})")


def given_engine(args: argparse.Namespace) -> dict[str, Any]:
    """The engine flags given, by `EngineConfig` field name."""
    return {name: value for name in ENGINE_FIELDS
            if (value := getattr(args, name, None)) is not None}


def engine_config_from_args(args: argparse.Namespace, base: EngineConfig | None = None
                            ) -> EngineConfig:
    """`base` (default: `EngineConfig()`) with the engine flags given.

    Raises `InvalidParams` for a device, weights or precision it cannot use.
    """
    return dataclasses.replace(base or EngineConfig(), **given_engine(args))
