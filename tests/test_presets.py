"""Presets: the built-in ones and a user's TOML files, their errors, and sampling from them."""

from __future__ import annotations

import dataclasses

import pytest

import rainsynth
from rainsynth.errors import ParamError
from rainsynth.params import PHYSICAL_SECTIONS, SECTIONS, parameter_table
from rainsynth.presets import PHYSICAL_PRESETS, PIXEL_PRESETS, PRESETS, load_preset

SHAPE = (3, 24, 40)


@pytest.mark.parametrize("preset", PRESETS)
def test_sampled_values_lie_inside_the_preset_ranges(preset):
    loaded = load_preset(preset)
    assert loaded.physical == (preset in PHYSICAL_PRESETS)
    for clip in range(20):
        params = rainsynth.sample_params(preset, seed=3, shape=SHAPE, clip=clip)
        sampled = params.physics if loaded.physical else params
        for section in PHYSICAL_SECTIONS if loaded.physical else SECTIONS:
            for key, value in dataclasses.asdict(getattr(sampled, section)).items():
                lo, hi = loaded.ranges[section][key]
                assert lo <= value <= hi, (section, key, value)


def test_sampling_is_keyed_by_seed_and_clip_not_by_order():
    forward = [rainsynth.sample_params("light", seed=1, shape=SHAPE, clip=c) for c in range(5)]
    backward = [
        rainsynth.sample_params("light", seed=1, shape=SHAPE, clip=c) for c in reversed(range(5))
    ]
    assert forward == backward[::-1]
    assert forward[0] != forward[1]
    assert forward[0] != rainsynth.sample_params("light", seed=2, shape=SHAPE, clip=0)


def test_streaks_preset_switches_off_the_other_factors():
    params = rainsynth.sample_params("streaks", seed=0, shape=SHAPE)
    assert params.accumulation.k == 0.0
    assert params.flow.opacity == 0.0
    assert params.occlusion.density == 0.0


def load_preset_text(name: str) -> str:
    from importlib import resources

    return resources.files("rainsynth").joinpath(f"presets/{name}.toml").read_text()


def test_user_preset_file_is_accepted(tmp_path):
    path = tmp_path / "drizzle.toml"
    path.write_text(
        load_preset_text("light").replace("density = [1.5, 3.5]", "density = [0.5, 1.0]")
    )
    params = rainsynth.sample_params(path, seed=0, shape=SHAPE)
    assert params.preset == "drizzle"
    assert 0.5 <= params.streaks.density <= 1.0


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("density = [1.5, 3.5]", "density = [1.5, 99.0]", "density = 99.0 is not allowed"),
        ("density = [1.5, 3.5]", "densty = [1.5, 3.5]", "unknown key(s) ['densty']"),
        ("layers = [2, 3]", "layers = [2, 3.5]", "must be an integer"),
        ("density = [1.5, 3.5]", "density = [3.5, 1.5]", "lo must not exceed hi"),
        ("density = [1.5, 3.5]", "density = [1.5, 2.0, 3.5]", "a [lo, hi] pair"),
        ("[flow]", "[flw]", "unknown section(s) ['flw']"),
        ("k = [0.1, 0.35]", "k = [0.1, 0.35", "not valid TOML"),
    ],
)
def test_bad_user_preset_names_the_key_and_the_allowed_range(tmp_path, old, new, message):
    path = tmp_path / "bad.toml"
    text = load_preset_text("light")
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(ParamError) as info:
        rainsynth.sample_params(path, seed=0, shape=SHAPE)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_out_of_range_error_names_the_allowed_range(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        load_preset_text("heavy").replace("angle = [-25.0, 25.0]", "angle = [-25.0, 80.0]")
    )
    with pytest.raises(ParamError, match=r"angle = 80.0 .* in \[-60.0, 60.0\]"):
        load_preset(path)


def test_unknown_preset_name_lists_the_presets():
    with pytest.raises(ParamError, match="light.*drizzle"):
        rainsynth.sample_params("hail", seed=0, shape=SHAPE)


def test_readme_documents_the_allowed_ranges_and_the_presets():
    """The preset tables (README's pixel presets, docs/physical.md's physical ones) are exactly
    what the code allows and the preset files sample."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text() + (root / "docs" / "physical.md").read_text()

    def cell(r):
        return f"{r[0]:g}" if r[0] == r[1] else f"{r[0]:g}–{r[1]:g}"

    for names, sections in ((PIXEL_PRESETS, SECTIONS), (PHYSICAL_PRESETS, PHYSICAL_SECTIONS)):
        ranges = {name: load_preset(name).ranges for name in names}
        for section, key, lo, hi, doc in parameter_table(sections):
            presets = " | ".join(cell(ranges[name][section][key]) for name in names)
            row = f"| {section} | `{key}` | {lo:g} … {hi:g} | {presets} | {doc} |"
            assert row in readme, row
