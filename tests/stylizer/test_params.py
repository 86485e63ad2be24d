"""StyleParams: validated ranges, readable errors, plain-data round trips, limits()."""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest

from stylizer.errors import InvalidParams, StylizerError
from stylizer.params import Limit, StyleParams, limits

FIELDS = [f.name for f in dataclasses.fields(StyleParams)]


@pytest.mark.parametrize(("field", "value", "words"), [
    ("size", 31, ["size", "32", "2048", "31"]),
    ("size", 4096, ["size", "2048"]),
    ("steps", 0, ["steps", "1", "5000"]),
    ("steps", 5001, ["steps"]),
    ("style_weight", 1000.0, ["style_weight", "100"]),
    ("style_weight", 0.0, ["style_weight", "0.01"]),
    ("content_weight", -1.0, ["content_weight"]),
    ("tv_weight", 101.0, ["tv_weight"]),
    ("lr", 0.0, ["lr"]),
    ("scales", -1, ["scales"]),
    ("scales", 6, ["scales", "5"]),
    ("style_scale", 0.1, ["style_scale", "0.25", "4"]),
    ("seed", -1, ["seed"]),
    ("seed", 2**31, ["seed"]),
])
def test_out_of_range_values_are_refused_readably(field: str, value: Any,
                                                  words: list[str]) -> None:
    with pytest.raises(InvalidParams) as info:
        StyleParams(**{field: value})
    message = str(info.value)
    for word in words:
        assert word in message, (word, message)
    assert len(message) < 120
    assert "\n" not in message
    assert info.value.code == "invalid_params"
    assert isinstance(info.value, StylizerError)


@pytest.mark.parametrize(("field", "value"), [
    ("optimizer", "sgd"), ("init", "white"), ("schedule", "three-phase"), ("pooling", "min"),
    ("optimizer", "LBFGS"),
])
def test_a_wrong_choice_lists_the_right_ones(field: str, value: str) -> None:
    kwargs: dict[str, Any] = {field: value}
    with pytest.raises(InvalidParams) as info:
        StyleParams(**kwargs)
    message = str(info.value)
    assert field in message
    assert repr(value) in message
    for choice in limits()[field].choices or ():
        assert choice in message


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_numbers_are_refused(value: float) -> None:
    with pytest.raises(InvalidParams, match="style_weight"):
        StyleParams(style_weight=value)


@pytest.mark.parametrize("blend", [(1.0, -0.5), (0.0, 0.0), (1.0, math.nan), (math.inf,)])
def test_bad_style_blends_are_refused(blend: tuple[float, ...]) -> None:
    with pytest.raises(InvalidParams, match="style weights"):
        StyleParams(style_blend=blend)


@pytest.mark.parametrize(("field", "value"), [
    ("size", "512"), ("size", "big"), ("size", True), ("steps", 3.5), ("scales", None),
    ("seed", None), ("style_weight", "2"), ("preserve_colors", "yes"),
    ("style_blend", (1.0, "a")), ("style_blend", "ab"),
])
def test_values_of_the_wrong_type_are_refused(field: str, value: Any) -> None:
    # Values arrive as JSON (stored jobs) and from slash commands: a string where a number
    # belongs must be a readable InvalidParams, not a crash deep inside the engine.
    with pytest.raises(InvalidParams, match=field.split("_")[0]):
        StyleParams(**{field: value})
    with pytest.raises(InvalidParams):
        StyleParams.from_dict({field: value})


def test_whole_numbers_are_accepted_where_floats_belong() -> None:
    p = StyleParams(style_weight=2, lr=1, style_blend=(1, 3))
    assert p.style_weight == 2
    assert p.style_blend == (1, 3)


def test_limit_values_themselves_are_allowed() -> None:
    for name, lim in limits().items():
        if lim.min is not None and lim.max is not None:
            StyleParams(**{name: type(lim.default)(lim.min)})
            StyleParams(**{name: type(lim.default)(lim.max)})


def test_params_are_frozen_and_hashable() -> None:
    p = StyleParams()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.size = 64  # type: ignore[misc]
    assert hash(p) == hash(StyleParams())
    assert p == StyleParams()
    assert p != StyleParams(size=64)


def test_replace_validates_again() -> None:
    p = StyleParams(size=256)
    assert p.replace(size=64) == StyleParams(size=64)
    assert p.size == 256
    with pytest.raises(InvalidParams):
        p.replace(size=1)


def test_to_dict_from_dict_round_trip_through_json() -> None:
    p = StyleParams(size=256, steps=77, style_weight=2.5, content_weight=0.5, tv_weight=1.0,
                    optimizer="adam", lr=3.0, init="noise", schedule="two-phase", scales=2,
                    style_scale=1.5, style_blend=(0.7, 0.3), preserve_colors=True,
                    pooling="avg", seed=42)
    d = p.to_dict()
    assert set(d) == set(FIELDS)
    assert d["style_blend"] == [0.7, 0.3]
    back = StyleParams.from_dict(json.loads(json.dumps(d)))
    assert back == p
    assert isinstance(back.style_blend, tuple)
    assert StyleParams.from_dict(StyleParams().to_dict()) == StyleParams()


def test_from_dict_ignores_unknown_keys_and_fills_defaults() -> None:
    p = StyleParams.from_dict({"size": 64, "colour": "blue", "version": 3})
    assert p == StyleParams(size=64)


def test_from_dict_validates() -> None:
    with pytest.raises(InvalidParams, match="steps"):
        StyleParams.from_dict({"steps": 0})


def test_limits_cover_every_field_with_its_default() -> None:
    lims = limits()
    assert list(lims) == FIELDS
    defaults = StyleParams()
    for name, lim in lims.items():
        assert isinstance(lim, Limit)
        assert lim.name == name
        assert lim.help
        assert lim.help.strip() == lim.help
        assert lim.default == getattr(defaults, name), name
        if lim.choices is not None:
            assert lim.default in lim.choices
        if lim.min is not None and isinstance(lim.default, int | float) and not isinstance(
                lim.default, bool):
            assert lim.min <= lim.default
        if lim.max is not None:
            assert lim.default <= lim.max
    numeric = {"size", "steps", "style_weight", "content_weight", "tv_weight", "lr", "scales",
               "style_scale", "seed"}
    for name in numeric:
        assert lims[name].min is not None, name
        assert lims[name].max is not None, name
    for name in ("optimizer", "init", "schedule", "pooling"):
        assert lims[name].choices, name


def test_the_founding_recipe() -> None:
    p = StyleParams.founding_recipe()
    assert (p.optimizer, p.init, p.schedule, p.scales) == ("adam", "blank", "two-phase", 1)
    assert StyleParams.founding_recipe(size=48, steps=10).size == 48
    with pytest.raises(InvalidParams):
        StyleParams.founding_recipe(steps=0)
