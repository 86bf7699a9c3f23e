"""derain.section: every config section checks its values one way and round-trips plain dicts."""

from __future__ import annotations

import pytest

from derain.config import SECTIONS, DataConfig, TrainConfig
from derain.section import ConfigError

BAD = {
    "model": ("size", "huge", "one of ['paper', 'small']"),
    "loss": ("rect", -1.0, "a finite number >= 0"),
    "data": ("frames", 1, "an integer >= 2"),
    "optim": ("schedule", "linear", "one of ('cosine', 'step', 'constant')"),
    "run": ("seed", -1, "an integer >= 0"),
}


def _values(name: str) -> dict:
    return {"datasets": ["d"]} if name == "data" else {}


@pytest.mark.parametrize("name", list(SECTIONS))
def test_a_bad_value_names_section_key_allowed_and_value(name):
    kind = SECTIONS[name]
    key, value, allowed = BAD[name]
    message = f"[{name}] {key} must be {allowed}, got {value!r}"
    with pytest.raises(ConfigError) as error:
        kind.from_dict({**_values(name), key: value})
    assert str(error.value) == message
    sections = {"data": {"datasets": ["d"]}}
    sections.setdefault(name, {})[key] = value
    with pytest.raises(ConfigError) as error:
        TrainConfig.from_dict(sections, source="f.toml")
    assert str(error.value) == f"config f.toml: {message}"


@pytest.mark.parametrize("name", list(SECTIONS))
def test_unknown_keys_and_wrong_types_are_named_and_dicts_round_trip(name):
    kind = SECTIONS[name]
    assert kind.section() == name
    with pytest.raises(ConfigError, match=rf"unknown key 'colour' in \[{name}\]; allowed: "):
        kind.from_dict({**_values(name), "colour": 1})
    key = next(f for f in kind().to_dict() if f != "base_channels") if name != "data" else "split"
    with pytest.raises(ConfigError, match=rf"\[{name}\] {key} must be "):
        kind.from_dict({**_values(name), key: object()})
    with pytest.raises(ConfigError, match=rf"^\[{name}\] must be a table, got \[1\]$"):
        kind.from_dict([1])
    section = kind.from_dict(_values(name))
    assert kind.from_dict(section.to_dict()) == section
    assert all(not isinstance(v, tuple) for v in section.to_dict().values())


def test_lists_become_tuples_and_integers_floats():
    data = DataConfig.from_dict({"datasets": ["a", "b"], "crop": [32, 48]})
    assert data.datasets == ("a", "b") and data.crop == (32, 48)
    assert SECTIONS["optim"].from_dict({"lr": 1}).lr == 1.0
    with pytest.raises(ConfigError, match=r"\[data\] crop must be an integer, got 2.5"):
        DataConfig.from_dict({"datasets": ["a"], "crop": [2.5, 3]})
