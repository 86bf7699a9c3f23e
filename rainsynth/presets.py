"""Rain presets (TOML data with documented ranges) and per-clip sampling from them.

A preset gives, for every parameter, a sampling range ``[lo, hi]`` (or a fixed value) that must lie
inside the parameter's *allowed* range (:mod:`rainsynth.params`). ``sample_params`` draws one value
per parameter for one clip, keyed by (seed, clip), and returns a frozen ``RainParams``.

Pixel presets (light, heavy, streaks, dry) give the pixel sections; physical presets (drizzle,
moderate, downpour, storm) give the physical ones, whose sampled values imply the pixel ones.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from rainsynth.errors import ParamError
from rainsynth.params import (
    PHYSICAL_SECTIONS,
    SECTIONS,
    PhysicalParams,
    RainParams,
    check_keys,
    check_value,
    checked_shape,
)
from rainsynth.physics import implied_sections
from rainsynth.rng import CLIP_LEVEL, stream
from rainsynth.tomlfile import load_toml, loads_toml

PIXEL_PRESETS = ("light", "heavy", "streaks", "dry")
PHYSICAL_PRESETS = ("drizzle", "moderate", "downpour", "storm")
PRESETS = PIXEL_PRESETS + PHYSICAL_PRESETS


@dataclass(frozen=True)
class Preset:
    """A preset: for every parameter, a sampling range (lo, hi) inside its allowed range.

    ``ranges`` is keyed by the pixel sections (SECTIONS) or, for a physical preset, by the
    physical ones (PHYSICAL_SECTIONS).
    """

    name: str
    description: str
    ranges: dict[str, dict[str, tuple[float, float]]]

    @property
    def physical(self) -> bool:
        """Whether the preset gives rain, camera and scene rather than pixel values."""
        return set(self.ranges) == set(PHYSICAL_SECTIONS)


def load_preset(preset: str | Path) -> Preset:
    """Load a built-in preset by name (PRESETS: "light", "heavy", "streaks", "dry", "drizzle",
    "moderate", "downpour", "storm") or a user's TOML file by path.

    A file has either the pixel sections (streaks, accumulation, flow, occlusion) or the physical
    ones (rain, camera, scene). Raises ``ParamError`` naming the file, the key and the allowed
    range for anything malformed.
    """
    if isinstance(preset, str) and preset in PRESETS:
        text = resources.files("rainsynth").joinpath(f"presets/{preset}.toml").read_text("utf-8")
        name, source = preset, f"preset '{preset}'"
        data = loads_toml(text, source, error=ParamError)
    else:
        path = Path(preset)
        if not path.is_file():
            raise ParamError(
                f"unknown preset {str(preset)!r}: expected one of {list(PRESETS)} "
                "or the path of a TOML preset file"
            )
        data, name, source = load_toml(path, error=ParamError), path.stem, str(path)
    description = data.pop("description", "")
    sections = PHYSICAL_SECTIONS if set(data) & set(PHYSICAL_SECTIONS) else SECTIONS
    unknown = sorted(set(data) - set(sections))
    if unknown:
        raise ParamError(
            f"{source}: unknown section(s) {unknown}; allowed: {list(SECTIONS)} for a pixel "
            f"preset or {list(PHYSICAL_SECTIONS)} for a physical one (not both)"
        )
    ranges = {}
    for section, kind in sections.items():
        values = data.get(section, {})
        check_keys(values, kind, where=f"{source} [{section}]")
        ranges[section] = {
            f.name: _range_of(values[f.name], f, f"{source} [{section}]")
            for f in dataclasses.fields(kind)
        }
    return Preset(name=name, description=description, ranges=ranges)


def _range_of(entry: Any, f: dataclasses.Field, where: str) -> tuple[float, float]:
    """A preset entry (a number or [lo, hi]) as a checked (lo, hi)."""
    if isinstance(entry, list):
        if len(entry) != 2:
            raise ParamError(f"{where}.{f.name} = {entry!r}: expected a number or a [lo, hi] pair")
        lo, hi = entry
    else:
        lo = hi = entry
    check_value(lo, f, where)
    check_value(hi, f, where)
    if lo > hi:
        raise ParamError(f"{where}.{f.name} = {entry!r}: lo must not exceed hi")
    return (lo, hi)


def sample_params(
    preset: str | Path | Preset, *, seed: int, shape: tuple[int, int, int], clip: int = 0
) -> RainParams:
    """Draw one clip's parameters from a preset, uniformly inside each range.

    The draw is keyed by (seed, clip) only, so clip 17 gets the same parameters whichever order
    clips are sampled in. A physical preset's draw (rain, camera, scene) goes to
    ``RainParams.physics`` and the pixel sections are the values it implies.

    Args:
        preset: a name in PRESETS, a TOML file path, or a loaded ``Preset``.
        seed: the dataset or experiment seed (non-negative).
        shape: (T, H, W) of the clip to render.
        clip: index of the clip within the seed (non-negative).
    """
    loaded = preset if isinstance(preset, Preset) else load_preset(preset)
    if not isinstance(seed, int) or not isinstance(clip, int) or seed < 0 or clip < 0:
        raise ParamError(f"seed and clip must be non-negative integers, got {seed!r}, {clip!r}")
    keys = {"preset": loaded.name, "seed": seed, "clip": clip, "shape": checked_shape(shape)}
    if not loaded.physical:
        return RainParams(**keys, **_sampled(loaded, SECTIONS, seed, clip))
    physical = PhysicalParams(**_sampled(loaded, PHYSICAL_SECTIONS, seed, clip))
    implied = implied_sections(physical, keys["shape"])
    sections = {name: kind(**_clamped(kind, implied[name])) for name, kind in SECTIONS.items()}
    return RainParams(**keys, **sections, physics=physical)


def _clamped(kind: type, values: dict[str, float]) -> dict[str, float]:
    """``values`` of section ``kind``, each clamped into its field's allowed range."""
    clamped = {}
    for f in dataclasses.fields(kind):
        lo, hi = f.metadata["range"]
        value = min(max(values[f.name], lo), hi)
        clamped[f.name] = int(value) if f.metadata["integer"] else float(value)
    return clamped


def _sampled(preset: Preset, sections: dict[str, type], seed: int, clip: int) -> dict:
    """One value per parameter of ``sections``, uniform in the preset's ranges, keyed by
    (seed, clip, section)."""
    sampled = {}
    for name, kind in sections.items():
        rng = stream(seed, clip, CLIP_LEVEL, f"params/{name}")
        values = {}
        for f in dataclasses.fields(kind):
            lo, hi = preset.ranges[name][f.name]
            if f.metadata["integer"]:
                values[f.name] = int(rng.integers(int(lo), int(hi), endpoint=True))
            else:
                values[f.name] = float(lo + (hi - lo) * rng.random())
        sampled[name] = kind(**values)
    return sampled
