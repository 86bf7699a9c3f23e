"""Rain physics and the camera: the formulas behind the physical presets, each cited where computed.

Units: drop diameters D in mm, rain rate R in mm/h, distances in m, velocities in m/s, times in s,
image quantities in px. Everything here is a plain function of numbers or NumPy arrays; the
renderers (``rainsynth.drops``, ``rainsynth.splashes``, ``rainsynth.lens_drops``) call them. The
camera's (``circle_of_confusion``, ``defocus``, ``streak_shape``) are also ``register_jitable``,
so that numba kernels call the same formulas on numbers (numba caches a kernel by its own file:
after changing them, clear the __pycache__ folders).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numba.extending import register_jitable

from rainsynth.errors import ParamError

MP_N0 = 8000.0
"""Marshall-Palmer intercept N0, drops per m^3 per mm of diameter (Marshall & Palmer 1948)."""

D_MAX = 6.0
"""Largest stable drop diameter, mm: bigger drops break up in fall (Pruppacher & Klett 1997)."""

SPLASH_TIME = 0.015
"""s a splash lasts: the crown of a millimetre drop bursting on a wet surface rises and falls
back within 10-20 ms (Yarin 2006)."""

SPRAY = 2.0
"""A full-grown splash (its crown and droplets) scatters light as a drop SPRAY times the diameter
of the drop that made it: an approximation (the crown spreads to several diameters, Yarin 2006,
but is a thin, partly transparent sheet)."""


def slope(rate: float) -> float:
    """Marshall-Palmer slope Lambda = 4.1 R^-0.21, mm^-1, of N(D) = N0 exp(-Lambda D)
    (Marshall & Palmer 1948); rate R in mm/h, > 0."""
    return 4.1 * rate**-0.21


def number_density(rate: float, d_min: float = 0.0, d_max: float = math.inf) -> float:
    """Drops per m^3 with d_min <= D < d_max: the integral of N0 exp(-Lambda D) dD,
    (N0 / Lambda) (exp(-Lambda d_min) - exp(-Lambda d_max)) (Marshall & Palmer 1948)."""
    lam = slope(rate)
    return MP_N0 / lam * (math.exp(-lam * d_min) - math.exp(-lam * d_max))


def diameter_moment(rate: float, k: int) -> float:
    """E[D^k] of the Marshall-Palmer distribution, mm^k: k! / Lambda^k (the moments of an
    exponential distribution; k = 1 gives the mean diameter 1 / Lambda)."""
    return math.factorial(k) / slope(rate) ** k


def sample_diameters(
    rng: np.random.Generator, rate: float, count: int, d_min: float, d_max: float = D_MAX
) -> np.ndarray:
    """``count`` diameters (mm) from N(D) = N0 exp(-Lambda D) truncated to [d_min, d_max), from
    ``count`` uniform draws (``truncated_diameters``). Shape (count,) float64."""
    return truncated_diameters(rng.random(count), rate, d_min, d_max)


def truncated_diameters(u, rate: float, d_min, d_max: float = D_MAX) -> np.ndarray:
    """Diameters (mm) at the quantiles ``u`` in [0, 1) of N(D) = N0 exp(-Lambda D) truncated to
    [d_min, d_max): inverse CDF of the truncated exponential,
    d_min - log(1 - u (1 - exp(-Lambda (d_max - d_min)))) / Lambda. Float64, u's shape."""
    lam = slope(rate)
    return d_min - np.log1p(-u * -np.expm1(-lam * (d_max - d_min))) / lam


def terminal_velocity(diameter: np.ndarray | float) -> np.ndarray | float:
    """Terminal fall speed in still air, m/s, of drops of diameter D (mm):
    v = 9.65 - 10.3 exp(-0.6 D) (Atlas, Srivastava & Sekhon 1973, a fit to Gunn & Kinzer 1949),
    floored at 0.01 m/s (the fit turns negative below D = 0.03 mm)."""
    return np.maximum(9.65 - 10.3 * np.exp(-0.6 * np.asarray(diameter, np.float64)), 0.01)


def number_flux(rate: float, d_min: float = 0.0) -> float:
    """Drops with D >= d_min landing on a horizontal m^2 per s: the integral of
    N0 exp(-Lambda D) v(D) dD with Atlas et al.'s v, in closed form:
    N0 exp(-Lambda d_min) (9.65 / Lambda - 10.3 exp(-0.6 d_min) / (Lambda + 0.6))."""
    lam = slope(rate)
    return (
        MP_N0 * math.exp(-lam * d_min) * (9.65 / lam - 10.3 * math.exp(-0.6 * d_min) / (lam + 0.6))
    )


def extinction(rate: float) -> float:
    """Optical extinction coefficient of rain, m^-1: the integral of Q (pi D^2 / 4) N(D) dD with
    the geometric-optics extinction efficiency Q = 2 (van de Hulst 1957) over the Marshall-Palmer
    distribution, as Ulbrich & Atlas (1985) compute it: pi N0 / Lambda^3 (mm^2 m^-3, times 1e-6
    for m^-1), about 0.37 R^0.63 km^-1."""
    return math.pi * MP_N0 / slope(rate) ** 3 * 1e-6


def focal_px(focal_mm: float, sensor_mm: float, width_px: int) -> float:
    """Focal length in px of an image ``width_px`` wide on a sensor ``sensor_mm`` wide (pinhole)."""
    return focal_mm * width_px / sensor_mm


def streak_length(speed, exposure: float, focal: float, distance):
    """Length in px of the path a drop moving at ``speed`` m/s across the line of sight draws
    during ``exposure`` s at ``distance`` m with a focal length of ``focal`` px:
    speed x exposure x focal / distance (pinhole projection; Garg & Nayar 2007, Sec. 3)."""
    return speed * exposure * focal / distance


@register_jitable
def circle_of_confusion(distance, focus: float, focal_mm: float, f_number: float):
    """Diameter on the sensor, mm, of the blur disc of a point at ``distance`` m with the lens
    focused at ``focus`` m: c = (f / N) |z - z_f| / z x f / (z_f - f), the thin lens's circle of
    confusion (Potmesil & Chakravarty 1981) with the aperture f / N and f in mm."""
    f = focal_mm / 1000.0
    return focal_mm / f_number * np.abs(distance - focus) / distance * f / (focus - f)


MOST_DROPS = 2_000_000
"""The most drops (or splashes) a clip may draw at once: more is a camera and rain that would
take minutes a frame (an exposure of microseconds, a rain of hundreds of mm/h)."""


def check_count(what: str, expected: float) -> None:
    """Raise ParamError if ``expected`` (the mean number of ``what`` a draw makes) is above
    MOST_DROPS."""
    if not expected <= MOST_DROPS:
        raise ParamError(
            f"these rain and camera parameters would draw {expected:.3g} {what} at once; at most "
            f"{MOST_DROPS} are allowed: lower the rain rate or lengthen the exposure"
        )


ALONG = 1.65
"""Integral along a streak of the splatting kernel's taper, in half lengths (``streaks.splat_streaks``:
flat over 65% of the half length, a smoothstep over the last 35%, on both sides)."""
ACROSS = 16.0 / 15.0
"""Integral across a streak of the kernel's (1 - (v / r)^2)^2 profile, in radii."""
PROFILE_STD = math.sqrt(1.0 / 7.0)
"""Standard deviation of the (1 - (v / r)^2)^2 profile, in radii."""
VISIBLE = 0.02
"""Smallest peak coverage (the fraction of a pixel's exposure a drop covers) of a streak drawn one
by one: about 2 grey levels on a mid-grey background under a bright sky, 6 on a dark one. Fainter
drops are left to the veil (beta and A, and U)."""


class Optics(NamedTuple):
    """The camera as the renderers need it (pinhole projection, thin-lens defocus); a named
    tuple, so that numba kernels take it as it is (with ``defocus`` and ``streak_shape``).

    Attributes: height, width (px); focal (px); exposure (s); fps (1/s); focus (m); focal_mm;
    f_number; px_per_mm (px of image per mm of sensor).
    """

    height: int
    width: int
    focal: float
    exposure: float
    fps: float
    focus: float
    focal_mm: float
    f_number: float
    px_per_mm: float

    @classmethod
    def of(cls, camera, shape: tuple[int, int, int]) -> Optics:
        """From a ``CameraParams`` (exposure, fps, focal mm, sensor mm, f_number, focus) and the
        clip's (T, H, W)."""
        _, height, width = shape
        return cls(
            height=height,
            width=width,
            focal=focal_px(camera.focal, camera.sensor, width),
            exposure=camera.exposure,
            fps=camera.fps,
            focus=camera.focus,
            focal_mm=camera.focal,
            f_number=camera.f_number,
            px_per_mm=width / camera.sensor,
        )

    def blur(self, distance):
        """Defocus blur diameter in px at ``distance`` m (:func:`defocus`)."""
        return defocus(self, distance)


@register_jitable
def defocus(optics: Optics, distance):
    """Defocus blur diameter in px at ``distance`` m: the :func:`circle_of_confusion` on the
    sensor in px."""
    coc = circle_of_confusion(distance, optics.focus, optics.focal_mm, optics.f_number)
    return coc * optics.px_per_mm


@register_jitable
def streak_shape(diameter, distance, path, optics: Optics):
    """How a drop of ``diameter`` mm at ``distance`` m that moves ``path`` px during the exposure
    is drawn: (half_length, radius, peak), px, px, fraction of a pixel.

    The drop's image (diameter d = D f / z px) swept along the path covers, summed over pixels,
    its own area pi d^2 / 4 (Garg & Nayar 2007: a pixel sees the drop for the time it takes to
    cross it). Defocus (blur diameter b) and the pixel (a box of std 1 / sqrt(12)) spread it: the
    cross-section's variance is (d / 4)^2 + (b / 4)^2 + 1 / 12, each disc of diameter x having
    variance (x / 4)^2; the ends blur alike, so the streak spans the path plus four standard
    deviations. ``peak`` is the kernel's peak value that keeps the streak's integral at
    pi d^2 / 4 (at most 1: a drop that hardly moves covers its pixels).
    """
    d = diameter / 1000.0 * optics.focal / distance
    b = defocus(optics, distance)
    spread = np.sqrt(d * d / 16.0 + b * b / 16.0 + 1.0 / 12.0)
    radius = spread / PROFILE_STD
    half_length = (path + 4.0 * spread) / ALONG
    peak = np.minimum(0.25 * np.pi * d * d / (ALONG * half_length * ACROSS * radius), 1.0)
    return half_length, radius, peak


SLICES = 16
"""Depth slices of the view frustum in which drops are drawn, geometric from NEAREST to FARTHEST."""
NEAREST, FARTHEST = 0.1, 100.0
"""Depth range, m, searched for drops whose streaks are visible (most slices hold none)."""
_DIAMETERS = np.linspace(0.1, D_MAX, 119)
"""Diameters (mm, 0.05 mm apart) searched for the smallest visible drop of a slice."""


def visible_diameter(
    near: np.ndarray, far: np.ndarray, optics: Optics, *, splash: float = 0.0
) -> np.ndarray:
    """Smallest diameter, mm, of a drop whose streak somewhere in [near, far] m (at either end
    or at the focus distance), falling at its terminal speed, peaks at a coverage of at least
    VISIBLE (or, with ``splash`` > 0, whose splash, a still blob ``splash`` times the drop's
    diameter, does); D_MAX where no drop does. near, far: arrays of the same shape; the result
    has it too."""
    near, far = np.asarray(near, np.float64), np.asarray(far, np.float64)
    distance = np.stack([near, far, np.clip(optics.focus, near, far)])[..., None]
    if splash:
        peak = streak_shape(splash * _DIAMETERS, distance, 0.0, optics)[2]
    else:
        path = streak_length(terminal_velocity(_DIAMETERS), optics.exposure, optics.focal, distance)
        peak = streak_shape(_DIAMETERS, distance, path, optics)[2]
    seen = (peak >= VISIBLE).any(axis=0)
    return np.where(seen.any(axis=-1), _DIAMETERS[np.argmax(seen, axis=-1)], D_MAX)


@dataclass(frozen=True)
class Slices:
    """Depth slices of the view frustum and the drops drawn in each, arrays of shape (SLICES,).

    Slice i spans depths [near[i], far[i]) m; its drops have diameters in [d_min[i], D_MAX) mm
    (the visible ones) and lie in a box |X| < half_width[i], |Y| < half_height[i] m around the
    optical axis (the frustum at the slice's far end, widened by ``margin``), ``density`` of them
    per m^3 (Marshall-Palmer).
    """

    near: np.ndarray
    far: np.ndarray
    d_min: np.ndarray
    half_width: np.ndarray
    half_height: np.ndarray
    density: np.ndarray

    @functools.cached_property
    def expected(self) -> np.ndarray:
        """Expected number of drops in each slice's box (computed once: read it only)."""
        return self.density * 4.0 * self.half_width * self.half_height * (self.far - self.near)


def frustum_slices(rate: float, optics: Optics, margin: float) -> Slices:
    """The view frustum cut into SLICES depth slices, with the visible drops of rain rate ``rate``
    mm/h in each: count per slice = N(D >= d_min) x volume (Marshall & Palmer 1948).

    margin: m added on every side of a slice's box, so that drops that move into the frame
    during the exposure are drawn too.
    """
    edges = np.geomspace(NEAREST, FARTHEST, SLICES + 1)
    near, far = edges[:-1], edges[1:]
    d_min = visible_diameter(near, far, optics)
    density = np.array([number_density(rate, d, D_MAX) for d in d_min])
    return Slices(
        near=near,
        far=far,
        d_min=d_min,
        half_width=0.5 * optics.width * far / optics.focal + margin,
        half_height=0.5 * optics.height * far / optics.focal + margin,
        density=density,
    )


def drop_margin(physical) -> float:
    """How far, m, a drop can move during one exposure (fall, wind, turbulence, camera motion):
    the margin of the slices' boxes (``frustum_slices``)."""
    rain, camera = physical.rain, physical.camera
    speed = (
        float(terminal_velocity(D_MAX))
        + abs(rain.wind)
        + 3.0 * rain.turbulence
        + math.hypot(camera.motion_x, camera.motion_y, camera.motion_z)
    )
    return speed * camera.exposure


@dataclass(frozen=True)
class VisibleRain:
    """The streaks a physical clip shows, per depth slice: the slices, the mean visible drop's
    diameter (mm) and speed (m/s), its streak's length, FWHM width (px) and peak coverage, and its
    displacement between frames (px). Arrays of shape (SLICES,)."""

    slices: Slices
    diameter: np.ndarray
    speed: np.ndarray
    length: np.ndarray
    width: np.ndarray
    peak: np.ndarray
    displacement: np.ndarray

    @classmethod
    @functools.lru_cache(maxsize=64)
    def of(cls, physical, shape: tuple[int, int, int]) -> VisibleRain:
        """From a ``PhysicalParams`` and the clip's (T, H, W) (cached: the arrays are shared,
        read them only)."""
        optics = Optics.of(physical.camera, shape)
        slices = frustum_slices(physical.rain.rate, optics, drop_margin(physical))
        # mean of the exponential distribution truncated below at d_min: d_min + 1 / Lambda
        diameter = np.minimum(slices.d_min + 1.0 / slope(physical.rain.rate), D_MAX)
        speed = np.hypot(terminal_velocity(diameter), physical.rain.wind)
        depth = np.sqrt(slices.near * slices.far)
        path = streak_length(speed, optics.exposure, optics.focal, depth)
        half_length, radius, peak = streak_shape(diameter, depth, path, optics)
        return cls(
            slices=slices,
            diameter=diameter,
            speed=speed,
            length=ALONG * half_length,
            width=2.0 * math.sqrt(1.0 - math.sqrt(0.5)) * radius,
            peak=peak,
            displacement=path / (optics.exposure * optics.fps),
        )

    def mean(self, values: np.ndarray) -> float:
        """Mean of per-slice ``values`` over the visible drops (0 when there are none)."""
        weights = self.slices.expected
        return float((values * weights).sum() / weights.sum()) if weights.sum() > 0 else 0.0

    def persistent(self, height: int, width: int) -> bool:
        """Whether a drop can be followed from frame to frame: its typical displacement between
        frames is under half the typical distance between neighbouring streaks,
        0.5 / sqrt(streaks per px^2) (Clark & Evans 1954, for points at random). Otherwise
        consecutive frames look independent, the paper's i.i.d. streaks."""
        count = self.slices.expected.sum()
        if count < 1.0:
            return False
        spacing = 0.5 / math.sqrt(count / (height * width))
        order = np.argsort(self.displacement)
        cumulative = np.cumsum(self.slices.expected[order])
        median = self.displacement[order][np.searchsorted(cumulative, 0.5 * count)]
        return bool(median < 0.5 * spacing)


def implied_sections(physical, shape: tuple[int, int, int]) -> dict[str, dict[str, float]]:
    """The pixel sections (streaks, accumulation, flow, occlusion) a physical clip implies.

    streaks: angle, drift and jitter of the mean visible drop's fall (wind, gust and turbulence
    against its terminal speed); layers, the depth slices holding drops (at most 5); density, the
    visible streaks per 10^4 px of the frame; length (px per 256 px of height), width (FWHM, px)
    and intensity (peak coverage) of the mean visible streak; each clamped to its allowed range.
    accumulation: k = extinction(R) x scene distance (beta = exp(-k d) = exp(-sigma z)); light,
    tint and light_drift 0, since a physical clip's A is measured from its own light
    (``rainsynth.photometry``). flow and occlusion: none (the drops too faint to draw one by one
    are the veil's, and drops on the lens take the place of opaque drops). Values are as
    computed; ``sample_params`` clamps them into their allowed ranges.
    """
    _, height, width = shape
    rain, camera = physical.rain, physical.camera
    visible = VisibleRain.of(physical, shape)
    diameter = visible.mean(visible.diameter) if visible.slices.expected.sum() > 0 else 1.0
    speed = float(terminal_velocity(diameter))
    along = speed - camera.motion_y
    across = rain.wind - camera.motion_x
    turn = along / (along * along + across * across)  # d angle / d across, rad per (m/s)
    counts = visible.slices.expected
    streaks = {
        "angle": math.degrees(math.atan2(across, along)),
        "drift": math.degrees(rain.gust * turn) / camera.fps,
        "jitter": math.degrees(math.atan(rain.turbulence * abs(turn))),
        "layers": int(np.clip(np.count_nonzero(counts >= 1.0), 1, 5)),
        "density": counts.sum() * 1e4 / (height * width),
        "length": visible.mean(visible.length) * 256.0 / height,
        "width": visible.mean(visible.width),
        "intensity": visible.mean(visible.peak),
    }
    return {
        "streaks": streaks,
        "accumulation": {
            "k": extinction(rain.rate) * physical.scene.distance,
            "horizon": physical.scene.horizon,
            "light": 0.0,
            "tint": 0.0,
            "light_drift": 0.0,
        },
        "flow": {"opacity": 0.0, "coverage": 0.0, "scale": 0.5, "speed": 0.0, "evolution": 0.0},
        "occlusion": {
            "density": 0.0,
            "size": 2.0,
            "elongation": 2.0,
            "intensity": 0.8,
            "softness": 1.0,
        },
    }
