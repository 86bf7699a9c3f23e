"""Rain streaks S (the S_t term of Eq. 3): fast, in-focus drops, motion-blurred into thin lines.

Each frame draws fresh streak positions (i.i.d. across frames, as the paper assumes). The fall
direction is one angle per clip from vertical that drifts slowly over frames (wind), with a
per-streak jitter. Streaks come in depth layers: layer l has scale z_l = 0.55**l, so near streaks
(l = 0) are long, wide, bright and sparse, far ones short, dim and dense. Every streak is rendered
anti-aliased: a smooth cross-section and ends that taper to zero (the motion blur of a round drop).
"""

from __future__ import annotations

import math

import numpy as np

from rainsynth._jit import jit, run_parallel
from rainsynth.params import RainParams, StreakParams
from rainsynth.rng import stream

LAYER_SCALE = 0.55
"""Depth-layer scale ratio: layer l is z_l = LAYER_SCALE**l the size of the nearest layer."""


def fall_angles(streaks: StreakParams, num_frames: int) -> np.ndarray:
    """The clip's fall direction per frame, degrees from vertical: angle + drift * t. Shape (T,)."""
    return streaks.angle + streaks.drift * np.arange(num_frames, dtype=np.float64)


def render_streaks(params: RainParams, out: np.ndarray | None = None) -> np.ndarray:
    """The streak layer S of every frame, (T, H, W, 1) float32 in [0, 1].

    out: a float32 array of that shape to overwrite (default: a new array); returned.
    """
    num_frames, height, width = params.shape
    out = np.empty((num_frames, height, width, 1), dtype=np.float32) if out is None else out
    if params.streaks.density == 0.0 or params.streaks.intensity == 0.0:
        out.fill(0.0)
        return out
    offsets, columns = _draw(params)
    run_parallel(splat_streaks, num_frames, out[..., 0], offsets, *columns)
    return out


def _draw(params: RainParams) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """Streak geometry of every frame; frame t's draws come from its (seed, clip, t, "streaks")
    stream, so frames are independent.

    Returns offsets (T + 1,) int64 (frame t's streaks are entries offsets[t]:offsets[t + 1]) and
    float64 arrays (cx, cy, dx, dy, half_length, radius, peak), one entry per streak: centre (px),
    unit direction, half length (px), cross-section radius (px), peak brightness.
    """
    p = params.streaks
    num_frames, height, width = params.shape
    z = LAYER_SCALE ** np.arange(p.layers)
    half_length = 0.5 * p.length * (height / 256.0) * z
    stroke = np.maximum(p.width * z, 0.35)
    margin = half_length + stroke
    area = (height + 2 * margin) * (width + 2 * margin)
    counts, uniform, normal = [], [], []
    for t in range(num_frames):
        rng = stream(params.seed, params.clip, t, "streaks")
        counts.append(rng.poisson(p.density / z * area / 1e4))
        uniform.append(rng.random((6, counts[-1].sum())))
        normal.append(rng.standard_normal(counts[-1].sum()))
    per_frame = np.array([c.sum() for c in counts])
    offsets = np.concatenate([[0], np.cumsum(per_frame)]).astype(np.int64)
    layer = np.repeat(np.tile(np.arange(p.layers), num_frames), np.concatenate(counts))
    frame = np.repeat(np.arange(num_frames), per_frame)
    u, n = np.concatenate(uniform, axis=1), np.concatenate(normal)
    z, half_length, stroke, margin = (v[layer] for v in (z, half_length, stroke, margin))
    angle = np.deg2rad(fall_angles(p, num_frames)[frame] + p.jitter * n)
    widths = stroke * (0.8 + 0.4 * u[4])
    peak = p.intensity * (0.4 + 0.6 * z) * np.minimum(widths, 1.0) * (0.6 + 0.4 * u[5])
    return offsets, (
        -margin + (width + 2 * margin) * u[0],
        -margin + (height + 2 * margin) * u[1],
        np.sin(angle),
        np.cos(angle),
        half_length * (0.7 + 0.6 * u[2]),
        0.5 * widths + 1.0,
        peak,
    )


@jit
def splat_streaks(
    start, stop, out, offsets, cx, cy, dx, dy, half_length, radius, peak
):  # pragma: no cover
    """Sum every streak of frames [start, stop) into out[t] (T, H, W), then clip to 1: frame t's
    streaks are entries offsets[t]:offsets[t + 1] of the columns (``splat_frame``)."""
    for t in range(start, stop):
        splat_frame(out[t], offsets[t], offsets[t + 1], cx, cy, dx, dy, half_length, radius, peak)


@jit
def splat_frame(frame, first, last, cx, cy, dx, dy, half_length, radius, peak):  # pragma: no cover
    """Sum the streaks first:last of the columns into ``frame`` (H, W) float32, then clip to 1.

    A streak at centre c with unit direction d contributes, at pixel p with
    u = (p - c).d (along) and v = (p - c) x d (across):
        peak * taper(|u| / half_length) * (1 - (v / radius)^2)^2
    where taper is 1 in the middle and falls smoothly (smoothstep) to 0 over the last 35% of the
    half length: the motion blur of a round drop, with no hard ends.
    """
    height, width = frame.shape
    one, zero, ramp = np.float32(1.0), np.float32(0.0), np.float32(1.0 / 0.35)
    frame[:] = zero
    for i in range(first, last):
        # |u| < half_length and |v| < radius bound the offsets: rx = u dx + v dy, ry = u dy - v dx
        ext_x = abs(dx[i]) * half_length[i] + abs(dy[i]) * radius[i]
        ext_y = abs(dy[i]) * half_length[i] + abs(dx[i]) * radius[i]
        x0 = max(int(math.floor(cx[i] - ext_x)), 0)
        x1 = min(int(math.ceil(cx[i] + ext_x)), width - 1)
        y0 = max(int(math.floor(cy[i] - ext_y)), 0)
        y1 = min(int(math.ceil(cy[i] + ext_y)), height - 1)
        ux, uy = np.float32(dx[i]), np.float32(dy[i])
        inv_r2 = np.float32(1.0 / (radius[i] * radius[i]))
        inv_h = np.float32(1.0 / half_length[i])
        peak_i = np.float32(peak[i])
        # row y meets the band |v| < radius only at |x - centre| < radius / |dy|, around
        # centre = cx + (y - cy) dx / dy; pixels outside it would add exactly zero
        steep = abs(dy[i]) > 0.05
        slope = dx[i] / dy[i] if steep else 0.0
        reach = radius[i] / abs(dy[i]) if steep else 0.0
        for y in range(y0, y1 + 1):
            ry = np.float32(y - cy[i])
            xa, xb = x0, x1
            if steep:
                centre = cx[i] + (y - cy[i]) * slope
                xa = max(xa, int(math.floor(centre - reach)) + 1)
                xb = min(xb, int(math.ceil(centre + reach)) - 1)
            row = frame[y]
            for x in range(xa, xb + 1):  # branch-free float32
                rx = np.float32(x - cx[i])
                v = rx * uy - ry * ux
                cross = max(one - v * v * inv_r2, zero)
                e = min(max(one - abs(rx * ux + ry * uy) * inv_h, zero) * ramp, one)
                row[x] += (
                    peak_i * (e * e * (np.float32(3.0) - np.float32(2.0) * e)) * (cross * cross)
                )
    for y in range(height):
        for x in range(width):
            frame[y, x] = min(frame[y, x], one)
