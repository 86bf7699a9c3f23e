"""Rain parameters: validation, the JSON round trip and the parameter table."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rainsynth
from rainsynth.errors import ParamError
from rainsynth.params import SECTIONS, parameter_table
from rainsynth.presets import PRESETS

SHAPE = (3, 24, 40)


def test_json_round_trip_is_exact():
    params = rainsynth.sample_params("heavy", seed=7, shape=(7, 256, 448), clip=12)
    text = json.dumps(params.to_dict())
    again = rainsynth.RainParams.from_dict(json.loads(text))
    assert again == params
    assert json.dumps(again.to_dict()) == text


def test_params_are_frozen():
    params = rainsynth.sample_params("heavy", seed=0, shape=SHAPE)
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.seed = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("section", "key", "value"),
    [("streaks", "angle", 61.0), ("accumulation", "k", -0.1), ("flow", "opacity", float("nan"))],
)
def test_from_dict_rejects_out_of_range_values(section, key, value):
    d = rainsynth.sample_params("heavy", seed=0, shape=SHAPE).to_dict()
    d[section][key] = value
    with pytest.raises(ParamError, match=key):
        rainsynth.RainParams.from_dict(d)


def test_from_dict_rejects_unknown_keys():
    d = rainsynth.sample_params("heavy", seed=0, shape=SHAPE).to_dict()
    d["streaks"]["colour"] = 1.0
    with pytest.raises(ParamError, match="colour"):
        rainsynth.RainParams.from_dict(d)


@pytest.mark.parametrize("shape", [(0, 4, 4), (1, 4), (2, -1, 3)])
def test_bad_shape_raises(shape):
    with pytest.raises(ParamError, match="shape"):
        rainsynth.sample_params("light", seed=0, shape=shape)


def test_parameter_table_documents_every_field():
    table = parameter_table()
    assert len(table) == sum(len(dataclasses.fields(kind)) for kind in SECTIONS.values())
    assert all(lo < hi and doc for _, _, lo, hi, doc in table)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31), clip=st.integers(0, 10**6), preset=st.sampled_from(PRESETS))
def test_any_seed_and_clip_give_valid_round_tripping_params(seed, clip, preset):
    params = rainsynth.sample_params(preset, seed=seed, shape=SHAPE, clip=clip)
    assert rainsynth.RainParams.from_dict(params.to_dict()) == params
