"""Rain streaks of a physical preset (S of Eq. 3): drops in the view frustum, seen by the camera.

Drops are drawn in depth slices of the view frustum (``physics.frustum_slices``): a Poisson number
per slice, in a box around the frustum, with Marshall-Palmer diameters above the slice's smallest
visible one. A drop falls at its terminal speed (Atlas et al. 1973), is carried by the wind (which
changes by ``gust`` per second) and its own turbulent velocity, and the camera moves. Its streak
is the segment between the projections of where it is when the exposure opens and when it closes,
drawn by ``rainsynth.streaks``' kernel with the width and peak of ``physics.streak_shape``. The
result is each pixel's *coverage*: the fraction of its exposure that drops covered.

When a drop can be followed from frame to frame (``physics.VisibleRain.persistent``: high frame
rates), one set of drops is drawn for the clip and moves on through the frames (the box wraps
around, so drops leaving it come back on the other side); otherwise every frame draws its own
drops, i.i.d. as the paper assumes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba.extending import register_jitable

from rainsynth._jit import jit, run_parallel
from rainsynth.params import RainParams
from rainsynth.physics import (
    Optics,
    Slices,
    VisibleRain,
    check_count,
    streak_shape,
    terminal_velocity,
    truncated_diameters,
)
from rainsynth.rng import CLIP_LEVEL, stream
from rainsynth.streaks import splat_streaks

NEAR_PLANE = 0.05
"""m: a streak with an end nearer to the camera than this is not drawn (it is on the lens)."""


@dataclass(frozen=True)
class Drops:
    """Drops at time 0, arrays of shape (N,): position (x right, y down, z forward; m) and the box
    it lives in (half extents and depth range of its slice, m), diameter (mm), and velocity
    (m/s) apart from the wind's change."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    half_width: np.ndarray
    half_height: np.ndarray
    near: np.ndarray
    far: np.ndarray
    diameter: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    vz: np.ndarray


def render_drops(params: RainParams, out: np.ndarray | None = None) -> np.ndarray:
    """Coverage of every pixel by the clip's drops, (T, H, W) float32 in [0, 1].

    out: a (T, H, W) float32 array to overwrite (default: a new array); returned.
    """
    out = np.empty(params.shape, np.float32) if out is None else out
    offsets, columns = drop_streaks(params)
    run_parallel(splat_streaks, params.shape[0], out, offsets, *columns)
    return out


def drop_streaks(params: RainParams) -> tuple[np.ndarray, np.ndarray]:
    """The streaks of the clip's drops, as ``splat_streaks`` draws them: offsets (T + 1,) int64
    (frame t's streaks are columns offsets[t]:offsets[t + 1]) and the columns, (7, N) float64
    (``streak_columns``)."""
    num_frames, height, width = params.shape
    visible = VisibleRain.of(params.physics, params.shape)
    check_count("drops", visible.slices.expected.sum())
    optics = Optics.of(params.physics.camera, params.shape)
    persistent = visible.persistent(height, width)
    key = (params.seed, params.clip)
    if persistent:  # one draw, moving on from frame to frame
        index, randoms = _draws(stream(*key, CLIP_LEVEL, "drops"), visible.slices)
        counts = [index.size] * num_frames
        index, randoms = np.tile(index, num_frames), np.tile(randoms, num_frames)
    else:
        draws = [_draws(stream(*key, t, "drops"), visible.slices) for t in range(num_frames)]
        counts = [index.size for index, _ in draws]
        index = np.concatenate([index for index, _ in draws])
        randoms = np.concatenate([randoms for _, randoms in draws], axis=1)
    frame = np.repeat(np.arange(num_frames), counts)
    drops = _placed(params, visible, index, randoms)
    columns = _columns(drops, params, optics, frame, persistent)
    offsets = np.zeros(num_frames + 1, np.int64)
    offsets[1:] = np.cumsum(counts)
    return offsets, columns


def draw_drops(rng: np.random.Generator, params: RainParams, visible: VisibleRain) -> Drops:
    """The visible drops of one draw: Poisson(expected) per slice, uniform in the slice's box."""
    return _placed(params, visible, *_draws(rng, visible.slices))


def _draws(rng: np.random.Generator, slices: Slices) -> tuple[np.ndarray, np.ndarray]:
    """The random numbers of one draw of drops, in the order they are drawn: the slice of each
    drop (N,) int64 (Poisson(expected) per slice), and (6, N) float64: three uniforms for its
    position, two standard normals for its turbulence, one uniform for its diameter."""
    counts = rng.poisson(slices.expected)
    index = np.repeat(np.arange(len(counts)), counts)
    position = rng.random((3, index.size))
    turbulence = rng.standard_normal((2, index.size))
    return index, np.concatenate([position, turbulence, rng.random((1, index.size))])


def _placed(
    params: RainParams, visible: VisibleRain, index: np.ndarray, randoms: np.ndarray
) -> Drops:
    """Drops from the random numbers of ``_draws`` (of one draw or of several, concatenated):
    uniform in their slice's box, Marshall-Palmer diameters above its smallest visible one."""
    rain = params.physics.rain
    camera = params.physics.camera
    slices = visible.slices
    half_width, half_height = slices.half_width[index], slices.half_height[index]
    near, far = slices.near[index], slices.far[index]
    u, turbulence = randoms[:3], rain.turbulence * randoms[3:5]
    diameter = truncated_diameters(randoms[5], rain.rate, slices.d_min[index])
    return Drops(
        x=half_width * (2.0 * u[0] - 1.0),
        y=half_height * (2.0 * u[1] - 1.0),
        z=near + (far - near) * u[2],
        half_width=half_width,
        half_height=half_height,
        near=near,
        far=far,
        diameter=diameter,
        vx=rain.wind + turbulence[0] - camera.motion_x,
        vy=terminal_velocity(diameter) - camera.motion_y,
        vz=turbulence[1] - camera.motion_z,
    )


def streak_columns(
    drops: Drops, params: RainParams, optics: Optics, frame: int | np.ndarray, *, moved: bool = True
) -> tuple[np.ndarray, ...]:
    """The streaks the drops draw in ``frame`` (one for all, or each drop's own, (N,) int):
    (cx, cy, dx, dy, half_length, radius, peak), float64 arrays (N,) as ``splat_streaks`` takes
    them (px, unit direction, px, px, coverage).

    moved: whether the drops are where they were at time 0 and have moved on since (a persistent
    clip), or were drawn for this frame (i.i.d.). The wind has changed by gust x time either way.
    """
    return tuple(_columns(drops, params, optics, frame, moved))


def _columns(
    drops: Drops, params: RainParams, optics: Optics, frame: int | np.ndarray, moved: bool
) -> np.ndarray:
    """``streak_columns`` as one (7, N) float64 array."""
    frames = np.ascontiguousarray(np.broadcast_to(np.asarray(frame, np.int64), drops.x.shape))
    fields = (getattr(drops, name) for name in Drops.__dataclass_fields__)
    return _streaks(*fields, frames, optics, params.physics.rain.gust, moved)


@jit
def _streaks(
    x, y, z, half_width, half_height, near, far, diameter, vx, vy, vz, frame, optics, gust, moved
):  # pragma: no cover
    """``streak_columns`` of the drops (``Drops``' fields, (N,)) in their frames (N,): a (7, N)
    float64 array, a drop at a time."""
    out = np.empty((7, x.size))
    for i in range(x.size):
        time = frame[i] / optics.fps
        wind = vx[i] + gust * time
        xi, yi, zi = x[i], y[i], z[i]
        if moved:
            xi = _wrap(xi + (vx[i] + 0.5 * gust * time) * time, -half_width[i], half_width[i])
            yi = _wrap(yi + vy[i] * time, -half_height[i], half_height[i])
            zi = _wrap(zi + vz[i] * time, near[i], far[i])
        exposure = optics.exposure
        end_x, end_y, end_z = xi + wind * exposure, yi + vy[i] * exposure, zi + vz[i] * exposure
        x0, y0 = _project(xi, yi, zi, optics)
        x1, y1 = _project(end_x, end_y, end_z, optics)
        path = np.hypot(x1 - x0, y1 - y0)
        half_length, radius, peak = streak_shape(diameter[i], 0.5 * (zi + end_z), path, optics)
        moving = path > 1e-9
        out[0, i], out[1, i] = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        out[2, i] = (x1 - x0) / path if moving else 0.0
        out[3, i] = (y1 - y0) / path if moving else 1.0
        out[4, i], out[5, i] = half_length, radius
        out[6, i] = peak if zi > NEAR_PLANE and end_z > NEAR_PLANE else 0.0
    return out


@register_jitable
def _project(x, y, z, optics):  # pragma: no cover
    """Pinhole projection to pixel coordinates (pixel centres at integers), (x_px, y_px)."""
    scale = optics.focal / max(z, NEAR_PLANE)
    return 0.5 * (optics.width - 1) + x * scale, 0.5 * (optics.height - 1) + y * scale


@register_jitable
def _wrap(value, lo, hi):  # pragma: no cover
    """``value`` wrapped into [lo, hi): a drop leaving its box comes back on the other side."""
    return lo + np.mod(value - lo, hi - lo)
