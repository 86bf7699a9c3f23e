"""Rain parameters: every parameter of a clip, with its allowed range and meaning.

Each factor's parameters are a frozen dataclass section whose fields declare their *allowed* range
(``_bounded``) and check it. *Pixel* sections (streaks, accumulation, flow, occlusion) are the
renderers' knobs; *physical* sections (rain, camera, scene) describe a rain rate, wind, a camera
and a scene, and the pixel values follow from them (``rainsynth.physics``). ``RainParams``, one
clip's parameters, round-trips through JSON; a physical clip's holds both: ``physics`` (what was
sampled) and the pixel sections it implies. Presets and sampling: :mod:`rainsynth.presets`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from rainsynth.errors import ParamError


def _bounded(lo: float, hi: float, doc: str, *, integer: bool = False) -> Any:
    """A dataclass field whose allowed range is [lo, hi]."""
    return field(metadata={"range": (lo, hi), "doc": doc, "integer": integer})


class _Section:
    """Base of the per-factor parameter groups: checks every value against its allowed range."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            check_value(getattr(self, f.name), f, type(self).__name__)


@dataclass(frozen=True)
class StreakParams(_Section):
    """Rain streaks S: fast, in-focus drops, motion-blurred into thin tapered lines."""

    angle: float = _bounded(
        -60.0, 60.0, "fall direction at frame 0, degrees from vertical (+ = right)"
    )
    drift: float = _bounded(-2.0, 2.0, "change of the fall direction per frame (wind), degrees")
    jitter: float = _bounded(0.0, 15.0, "per-streak standard deviation of the direction, degrees")
    layers: int = _bounded(
        1, 5, "number of depth layers (near: long, wide, bright, sparse)", integer=True
    )
    density: float = _bounded(
        0.0, 40.0, "streaks per 10^4 px in the nearest layer (deeper: denser)"
    )
    length: float = _bounded(
        2.0, 200.0, "mean length of a nearest-layer streak, px per 256 px of height"
    )
    width: float = _bounded(0.3, 6.0, "mean width of a nearest-layer streak, px")
    intensity: float = _bounded(0.0, 1.0, "peak brightness added by a nearest-layer streak")


@dataclass(frozen=True)
class AccumulationParams(_Section):
    """Rain accumulation: transmission beta = exp(-k d) of depth d, atmospheric light A."""

    k: float = _bounded(0.0, 4.0, "extinction coefficient k of beta = exp(-k d), depth d in [0, 1]")
    horizon: float = _bounded(0.0, 1.0, "horizon row / height, for the default depth prior")
    light: float = _bounded(0.0, 1.0, "brightness of the atmospheric light A")
    tint: float = _bounded(0.0, 0.2, "largest deviation of A's channels from grey")
    light_drift: float = _bounded(0.0, 0.05, "amplitude of A's slow change over the clip")


@dataclass(frozen=True)
class FlowParams(_Section):
    """Rain accumulation flow U: an advected, slowly evolving semi-transparent veil."""

    opacity: float = _bounded(0.0, 1.0, "peak value of the veil U")
    coverage: float = _bounded(0.0, 1.0, "fraction of the frame the veil covers")
    scale: float = _bounded(0.02, 2.0, "size of the largest veil features / frame height")
    speed: float = _bounded(0.0, 20.0, "veil velocity along the fall direction, px per frame")
    evolution: float = _bounded(0.0, 0.5, "rate at which the veil changes shape, radians per frame")


@dataclass(frozen=True)
class OcclusionParams(_Section):
    """Occlusion: opaque drops hiding the background (matte alpha, intensity M)."""

    density: float = _bounded(0.0, 10.0, "opaque drops per 10^5 px per frame")
    size: float = _bounded(0.5, 20.0, "mean drop radius, px per 256 px of height")
    elongation: float = _bounded(1.0, 8.0, "drop length / width along the fall direction")
    intensity: float = _bounded(0.0, 1.0, "drop intensity M (the same everywhere inside a drop)")
    softness: float = _bounded(0.5, 4.0, "width of the anti-aliased drop edge, px")


SECTIONS: dict[str, type] = {
    "streaks": StreakParams,
    "accumulation": AccumulationParams,
    "flow": FlowParams,
    "occlusion": OcclusionParams,
}


@dataclass(frozen=True)
class RainfallParams(_Section):
    """The rain of a physical preset: its rate (drop sizes and numbers) and the wind."""

    rate: float = _bounded(0.01, 300.0, "rain rate R, mm/h (Marshall-Palmer drop sizes)")
    wind: float = _bounded(-30.0, 30.0, "wind across the view at frame 0, m/s (+ = right)")
    gust: float = _bounded(-5.0, 5.0, "change of the wind per second, m/s^2")
    turbulence: float = _bounded(
        0.0, 5.0, "standard deviation of a drop's own horizontal velocity, m/s"
    )


@dataclass(frozen=True)
class CameraParams(_Section):
    """The camera of a physical preset: exposure, lens, focus, motion, and its cover glass."""

    exposure: float = _bounded(1e-5, 1.0, "exposure time, s (at most 1 / fps)")
    fps: float = _bounded(1.0, 10000.0, "frame rate, frames per s")
    focal: float = _bounded(1.0, 2000.0, "focal length, mm")
    sensor: float = _bounded(1.0, 100.0, "sensor width, mm (the image's width in px spans it)")
    f_number: float = _bounded(0.5, 64.0, "f-number N: aperture diameter = focal length / N")
    focus: float = _bounded(0.1, 10000.0, "focus distance, m (more than twice the focal length)")
    motion_x: float = _bounded(-50.0, 50.0, "camera velocity to the right, m/s")
    motion_y: float = _bounded(-50.0, 50.0, "camera velocity downwards, m/s")
    motion_z: float = _bounded(-50.0, 50.0, "camera velocity forwards, m/s")
    window: float = _bounded(0.005, 1.0, "distance of the glass in front of the lens, m")
    wetting: float = _bounded(
        0.0, 1.0, "fraction of the rain falling on the glass that stays there (0: sheltered)"
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.exposure > 1.0 / self.fps:
            raise ParamError(
                f"CameraParams.exposure = {self.exposure!r} s is longer than a frame at fps = "
                f"{self.fps!r}: it must be at most 1 / fps = {1.0 / self.fps:.6g} s"
            )
        if self.focus <= 2.0 * self.focal / 1000.0:
            raise ParamError(
                f"CameraParams.focus = {self.focus!r} m must be more than twice the focal length "
                f"({2.0 * self.focal / 1000.0:g} m): a thin lens cannot focus nearer"
            )


@dataclass(frozen=True)
class SceneParams(_Section):
    """The scene of a physical preset: its depth scale, horizon and the camera's height."""

    distance: float = _bounded(1.0, 100000.0, "distance of the far end of the depth map, m")
    horizon: float = _bounded(0.0, 1.0, "horizon row / height (depth prior, ground plane)")
    height: float = _bounded(0.1, 100.0, "camera height above the ground, m (splashes)")


PHYSICAL_SECTIONS: dict[str, type] = {
    "rain": RainfallParams,
    "camera": CameraParams,
    "scene": SceneParams,
}


@dataclass(frozen=True)
class PhysicalParams:
    """What a physical preset sampled for one clip: the rain, the camera and the scene."""

    rain: RainfallParams
    camera: CameraParams
    scene: SceneParams

    def __post_init__(self) -> None:
        for name, kind in PHYSICAL_SECTIONS.items():
            if not isinstance(getattr(self, name), kind):
                raise ParamError(f"PhysicalParams.{name} must be a {kind.__name__}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PhysicalParams:
        """Inverse of ``dataclasses.asdict``; unknown or missing keys raise ``ParamError``."""
        if not isinstance(d, dict) or set(d) != set(PHYSICAL_SECTIONS):
            keys = sorted(d) if isinstance(d, dict) else d
            raise ParamError(
                f"RainParams.physics has keys {keys}, expected exactly {sorted(PHYSICAL_SECTIONS)}"
            )
        return cls(**_sections_from_dict(d, PHYSICAL_SECTIONS, "RainParams.physics"))


@dataclass(frozen=True)
class RainParams:
    """Every parameter of one rendered clip: the output of ``sample_params``.

    ``shape`` is (T, H, W) of the clip it was sampled for; ``seed`` and ``clip`` key the per-frame
    random draws (positions of streaks and drops) made while rendering. ``physics`` is None for a
    pixel preset; for a physical preset it holds the sampled rain, camera and scene, and the four
    pixel sections hold the values they imply (``rainsynth.physics.implied_sections``).
    """

    preset: str
    seed: int
    clip: int
    shape: tuple[int, int, int]
    streaks: StreakParams
    accumulation: AccumulationParams
    flow: FlowParams
    occlusion: OcclusionParams
    physics: PhysicalParams | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", checked_shape(self.shape))
        for name, value in (("seed", self.seed), ("clip", self.clip)):
            if not isinstance(value, int) or value < 0:
                raise ParamError(f"{name} must be a non-negative integer, got {value!r}")
        for name, kind in SECTIONS.items():
            if not isinstance(getattr(self, name), kind):
                raise ParamError(f"RainParams.{name} must be a {kind.__name__}")
        if self.physics is not None and not isinstance(self.physics, PhysicalParams):
            raise ParamError("RainParams.physics must be None or a PhysicalParams")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict; ``RainParams.from_dict`` inverts it exactly. A pixel preset's dict
        has no "physics" key (the params.json of datasets built before physical presets)."""
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)
        if self.physics is None:
            del d["physics"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RainParams:
        """Inverse of ``to_dict``; unknown keys or out-of-range values raise ``ParamError``."""
        expected = {f.name for f in dataclasses.fields(cls)}
        if not expected - {"physics"} <= set(d) <= expected:
            raise ParamError(
                f"RainParams dict has keys {sorted(d)}, expected exactly {sorted(expected)} "
                "(physics only for a physical preset)"
            )
        physics = d.get("physics")
        return cls(
            preset=str(d["preset"]),
            seed=d["seed"],
            clip=d["clip"],
            shape=tuple(d["shape"]),
            physics=None if physics is None else PhysicalParams.from_dict(physics),
            **_sections_from_dict(d, SECTIONS, "RainParams"),
        )


def checked_shape(shape: Any) -> tuple[int, int, int]:
    """``shape`` as a (T, H, W) tuple of ints, each >= 1; else ParamError."""
    checked = tuple(int(s) for s in shape)
    if len(checked) != 3 or min(checked) < 1:
        raise ParamError(f"shape must be (T, H, W) with every entry >= 1, got {shape!r}")
    return checked


def _sections_from_dict(d: dict[str, Any], sections: dict[str, type], where: str) -> dict:
    """The section dataclasses named in ``sections`` built from their dicts in ``d``."""
    built = {}
    for name, kind in sections.items():
        values = d[name]
        if not isinstance(values, dict):
            raise ParamError(f"{where}.{name} must be a dict of values, got {values!r}")
        check_keys(values, kind, where=f"{where}.{name}")
        built[name] = kind(**values)
    return built


def check_keys(values: dict[str, Any], kind: type, *, where: str) -> None:
    """ParamError naming ``where`` unless ``values`` has exactly the fields of section ``kind``."""
    allowed = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise ParamError(f"{where}: unknown key(s) {unknown}; allowed keys are {allowed}")
    missing = sorted(set(allowed) - set(values))
    if missing:
        raise ParamError(f"{where}: missing key(s) {missing}")


def check_value(value: Any, f: dataclasses.Field, where: str) -> None:
    """ParamError naming ``where`` and the allowed range unless ``value`` fits field ``f``."""
    lo, hi = f.metadata["range"]
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and f.metadata["integer"]:
        ok = float(value).is_integer()
    kind = "an integer" if f.metadata["integer"] else "a number"
    if not ok or not lo <= value <= hi:
        raise ParamError(
            f"{where}.{f.name} = {value!r} is not allowed: it must be {kind} in [{lo}, {hi}] "
            f"({f.metadata['doc']})"
        )


def parameter_table(
    sections: dict[str, type] = SECTIONS,
) -> list[tuple[str, str, float, float, str]]:
    """(section, key, allowed lo, allowed hi, meaning) for every parameter of ``sections``
    (the pixel sections, or PHYSICAL_SECTIONS), for docs and --help."""
    return [
        (name, f.name, *f.metadata["range"], f.metadata["doc"])
        for name, kind in sections.items()
        for f in dataclasses.fields(kind)
    ]
