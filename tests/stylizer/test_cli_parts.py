"""The pieces both command lines share: flags from `StyleParams` and `EngineConfig`
(`stylizer.flags`), and the progress display (`stylizer.terminal`)."""

from __future__ import annotations

import argparse
import io
import logging
import sys

import pytest

from stylizer.config import EngineConfig
from stylizer.errors import InvalidParams
from stylizer.flags import (
    add_engine_flags,
    add_param_flags,
    engine_config_from_args,
    given_params,
    params_from_args,
)
from stylizer.params import StyleParams, limits
from stylizer.terminal import ProgressDisplay


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    add_engine_flags(parser)
    add_param_flags(parser)
    return parser


def test_every_field_has_a_flag_and_nothing_given_is_the_defaults() -> None:
    parser = _parser()
    args = parser.parse_args([])
    assert all(getattr(args, name) is None for name in limits())
    assert given_params(args) == {}
    assert params_from_args(args) == StyleParams()
    assert engine_config_from_args(args) == EngineConfig()


def test_flags_override_the_base_and_booleans_go_both_ways() -> None:
    args = _parser().parse_args(["--no-balance", "--preserve-colors", "--steps", "7",
                                 "--style-blend", "2", "1", "--optimizer", "adam"])
    assert given_params(args) == {"balance": False, "preserve_colors": True, "steps": 7,
                                  "style_blend": (2.0, 1.0), "optimizer": "adam"}
    params = params_from_args(args, {"steps": 50, "style_weight": 3.0})
    assert (params.steps, params.style_weight, params.balance) == (7, 3.0, False)
    with pytest.raises(InvalidParams, match="steps"):
        params_from_args(_parser().parse_args(["--steps", "0"]))


def test_engine_flags_make_an_engine_config() -> None:
    args = _parser().parse_args(["--device", "cpu", "--precision", "fp32"])
    base = EngineConfig(weights="torchvision", autotune=False)
    assert engine_config_from_args(args, base) == EngineConfig(
        device="cpu", weights="torchvision", precision="fp32", autotune=False)
    with pytest.raises(InvalidParams, match="device must be"):
        engine_config_from_args(_parser().parse_args(["--device", "tpu"]))
    with pytest.raises(SystemExit):
        _parser().parse_args(["--precision", "fp16"])


def test_skipped_fields_and_unstated_defaults() -> None:
    parser = argparse.ArgumentParser()
    add_param_flags(parser, skip=("style_blend",), unstated_defaults=("size",))
    text = parser.format_help()
    assert "--style-blend" not in text
    assert "default 100" in text  # steps
    assert "default 512" not in text


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_a_log_gets_lines_or_nothing() -> None:
    log = io.StringIO()
    with ProgressDisplay(log, plain_lines=True) as display:
        for step in (1, 1, 2, 3):
            display.update(step, 3)
        display.message("done")
    assert log.getvalue() == "step 1/3\nstep 2/3\nstep 3/3\ndone\n"

    quiet_log = io.StringIO()
    with ProgressDisplay(quiet_log) as display:
        display.update(1, 3)
    assert quiet_log.getvalue() == ""

    terminal = _Terminal()
    with ProgressDisplay(terminal, enabled=False) as display:
        display.update(1, 3)
    assert terminal.getvalue() == ""

    terminal = _Terminal()
    with ProgressDisplay(terminal) as display:
        display.update(2, 4)
        display.update(4, 4)
        display.message("painted")
    out = terminal.getvalue()
    assert "4/4" in out
    assert out.endswith("\npainted\n")


def test_log_lines_go_above_a_bar_not_onto_it(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)  # as logging_setup's console handler
    root.addHandler(handler)
    try:
        with ProgressDisplay(terminal) as display:
            display.update(1, 4)
            logging.getLogger("stylizer.test").warning("a worker went away")
            display.update(2, 4)
    finally:
        root.removeHandler(handler)
    lines = terminal.getvalue().replace("\r", "\n").splitlines()
    assert "a worker went away" in lines  # a line of its own
