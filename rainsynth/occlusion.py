"""Occlusion (Eq. 4's alpha_t and M_t): in heavy rain, opaque drops hide the background entirely.

Each frame draws fresh drops: ellipses elongated along the fall direction (thick near streaks or
drops on the lens), at Poisson-distributed positions. Their union is a binary mask softened into
an anti-aliased matte alpha; inside it the intensity M is the same everywhere (one grey level per
clip), so Eq. 4 replaces the background by M where alpha = 1.
"""

from __future__ import annotations

import math

import numpy as np

from rainsynth._jit import jit, run_parallel
from rainsynth.params import RainParams
from rainsynth.rng import stream
from rainsynth.streaks import fall_angles


def occlusion_intensity(params: RainParams) -> np.ndarray:
    """M_t: the drops' intensity, (T, 1, 1, 3) float32, identical inside every drop."""
    value = np.float32(params.occlusion.intensity)
    return np.full((params.shape[0], 1, 1, 3), value, dtype=np.float32)


def render_occlusion(params: RainParams, out: np.ndarray | None = None) -> np.ndarray:
    """The occlusion matte alpha of every frame, (T, H, W, 1) float32 in [0, 1].

    out: a float32 array of that shape to overwrite (default: a new array); returned.
    """
    num_frames, height, width = params.shape
    out = np.empty((num_frames, height, width, 1), dtype=np.float32) if out is None else out
    if params.occlusion.density == 0.0:
        out.fill(0.0)
        return out
    per_frame = [_draw_frame(params, t) for t in range(num_frames)]
    offsets = np.zeros(num_frames + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(p[0]) for p in per_frame])
    columns = [np.concatenate([p[i] for p in per_frame]) for i in range(6)]
    softness = float(params.occlusion.softness)
    run_parallel(_splat_drops, num_frames, out[..., 0], offsets, *columns, softness)
    return out


def _draw_frame(params: RainParams, t: int) -> tuple[np.ndarray, ...]:
    """Drops of frame t from the (seed, clip, t, "occlusion") stream.

    Returns float64 arrays (cx, cy, dx, dy, across, along): centre (px), unit fall direction,
    semi-axes across and along the fall direction (px).
    """
    p = params.occlusion
    _, height, width = params.shape
    rng = stream(params.seed, params.clip, t, "occlusion")
    count = rng.poisson(p.density * height * width / 1e5)
    angle = np.deg2rad(fall_angles(params.streaks, t + 1)[t] + 3.0 * rng.standard_normal(count))
    across = p.size * height / 256.0 * rng.uniform(0.6, 1.4, count)
    return (
        rng.uniform(0.0, width, count),
        rng.uniform(0.0, height, count),
        np.sin(angle),
        np.cos(angle),
        across,
        across * p.elongation,
    )


@jit
def _splat_drops(
    start, stop, out, offsets, cx, cy, dx, dy, across, along, softness
):  # pragma: no cover
    """Union of soft ellipses into out[t] (T, H, W) for the frames [start, stop).

    With rho the normalised elliptical radius of a pixel, the drop's matte is
    clip(1/2 + (1 - rho) * across / softness, 0, 1): a binary mask (rho <= 1) whose edge is
    anti-aliased over ``softness`` px. Overlapping drops take the maximum.
    """
    _, height, width = out.shape
    for t in range(start, stop):
        frame = out[t]
        frame[:] = 0.0
        for i in range(offsets[t], offsets[t + 1]):
            reach = along[i] + softness
            x0 = max(int(math.floor(cx[i] - reach)), 0)
            x1 = min(int(math.ceil(cx[i] + reach)), width - 1)
            y0 = max(int(math.floor(cy[i] - reach)), 0)
            y1 = min(int(math.ceil(cy[i] + reach)), height - 1)
            for y in range(y0, y1 + 1):
                ry = y - cy[i]
                for x in range(x0, x1 + 1):
                    rx = x - cx[i]
                    u = (rx * dx[i] + ry * dy[i]) / along[i]
                    v = (rx * dy[i] - ry * dx[i]) / across[i]
                    rho = math.sqrt(u * u + v * v)
                    a = min(max(0.5 + (1.0 - rho) * across[i] / softness, 0.0), 1.0)
                    if a > frame[y, x]:
                        frame[y, x] = a
