"""Drop photometry of the physical presets: streaks and splashes lit by the light around them.

A falling drop refracts light from a wide field of view (about 165 degrees) towards the camera,
so its radiance is close to the mean radiance of its environment, not that of the scene point
behind it (Garg & Nayar 2004): drops are bright in daylight, bright and coloured near lamps, dim
in the dark. The environment of a drop at pixel x is modelled from the clip's own light, in linear
radiance: half of it the scene around the drop, the frame blurred at 1/16 and at 1/4 of its height
in equal parts (a light nearby subtends a larger solid angle than the same light far away), and
half of it the sky above, which the frame hardly shows: SKY_GAIN times the 90th percentile of the
frame's upper half, per channel (the sample at rank floor(0.9 (n - 1)), not interpolated), since a camera exposed for the scene clips the sky (its
percentile, in display values, is also the atmospheric light A the veil scatters).

A pixel whose exposure a drop covered for a fraction c (its coverage) records, in linear
radiance, (1 - c) L_background + c E_environment (Garg & Nayar 2007, Eq. 4); the streak layer is
that minus the background in display values, floored at 0 (Eq. 3 adds S; a drop darker than the
scene behind it is not drawn). Display values are converted with a gamma of 2, close to sRGB's
2.2, which keeps the conversion a square and a square root.
"""

from __future__ import annotations

import cv2
import numpy as np
from numba.extending import register_jitable

from rainsynth._jit import jit, run_parallel
from rainsynth.streaks import splat_frame

LOW = 16
"""The environment's light is computed at 1/LOW of the frame's size and sampled bilinearly."""
SKY_GAIN = 2.0
"""The sky's radiance over the frame's 90th percentile in its upper half (where a camera exposed
for the scene clips it): set so that streak contrast matches real rain (docs/streak_stats.py)."""


def linear(frames: np.ndarray) -> np.ndarray:
    """Linear radiance (gamma 2) of display values: uint8 or float in [0, 1] -> float32."""
    scale = 1.0 / 255.0 if frames.dtype == np.uint8 else 1.0
    values = np.multiply(frames, np.float32(scale), dtype=np.float32)
    return np.multiply(values, values, out=values)


def environment(clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The light drops see, from the clean clip (T, H, W, 3) uint8 or float32.

    Returns (environment, sky): the environment's linear radiance at 1/LOW resolution,
    (T, ceil(H / LOW), ceil(W / LOW), 3) float32, and the sky term per frame, (T, 3) float32.
    """
    num_frames, height, width = clean.shape[:3]
    low_h, low_w = -(-height // LOW), -(-width // LOW)
    step = max(1, LOW // 4)  # point samples 4 per low-res pixel and side; the blur does the rest
    y0, x0 = min(step // 2, height - 1), min(step // 2, width - 1)
    samples = clean[:, y0::step, x0::step]
    # linear() is monotonic, so the percentile of the display values gives the linear one
    sky = linear(_percentile_90(samples[:, : max(1, samples.shape[1] // 2)]))
    samples = _linear_samples(samples)
    out = np.empty((num_frames, low_h, low_w, 3), np.float32)
    for t in range(num_frames):
        low = cv2.resize(samples[t], (low_w, low_h), interpolation=cv2.INTER_AREA)
        near = cv2.GaussianBlur(low, (0, 0), max(low_h / LOW, 0.5), borderType=cv2.BORDER_REFLECT)
        wide = cv2.GaussianBlur(low, (0, 0), max(low_h / 4, 0.5), borderType=cv2.BORDER_REFLECT)
        around = np.float32(0.25) * (near.reshape(low.shape) + wide.reshape(low.shape))
        out[t] = around + np.float32(0.5 * SKY_GAIN) * sky[t]
    return out, sky.astype(np.float32)


def _linear_samples(samples: np.ndarray) -> np.ndarray:
    """``linear`` of a strided view (T, h, w, 3) of the clip, in one pass (NumPy would copy the
    view first, which costs more than the rest of ``environment``)."""
    scale = np.float32(1.0 / 255.0) if samples.dtype == np.uint8 else np.float32(1.0)
    out = np.empty(samples.shape, np.float32)
    _square_scaled(samples, scale, out)
    return out


@jit
def _square_scaled(values, scale, out):  # pragma: no cover
    """out = (values * scale)^2 in float32, values and out (T, h, w, 3)."""
    for t in range(values.shape[0]):
        for y in range(values.shape[1]):
            for x in range(values.shape[2]):
                for c in range(3):
                    value = np.float32(values[t, y, x, c]) * scale
                    out[t, y, x, c] = value * value


def _percentile_90(values: np.ndarray) -> np.ndarray:
    """Per frame and channel the 90th percentile of values (T, h, w, 3), uint8 or float32, in
    their dtype (T, 3): the value of rank floor(0.9 (h w - 1)) (numpy's method="lower"). uint8
    by counting (``_rank_by_counting``); float32 by one partial sort of each contiguous channel
    (a fifth of np.percentile's time, which sorts along a strided axis)."""
    num_frames = values.shape[0]
    rank = int(0.9 * (values.shape[1] * values.shape[2] - 1))
    if values.dtype == np.uint8:
        out = np.empty((num_frames, 3), np.uint8)
        _rank_by_counting(values, rank, out)
        return out
    channels = np.ascontiguousarray(values.reshape(num_frames, -1, 3).transpose(0, 2, 1))
    return np.partition(channels, rank, axis=2)[..., rank]


@jit
def _rank_by_counting(values, rank, out):  # pragma: no cover
    """out[t, c] = the value of rank ``rank`` (from 0, in increasing order) of values[t, ..., c],
    values (T, h, w, 3) uint8, from a histogram of its 256 levels."""
    for t in range(values.shape[0]):
        counts = np.zeros((3, 256), np.int64)
        for y in range(values.shape[1]):
            for x in range(values.shape[2]):
                for c in range(3):
                    counts[c, values[t, y, x, c]] += 1
        for c in range(3):
            seen, level = counts[c, 0], 0
            while seen <= rank:
                level += 1
                seen += counts[c, level]
            out[t, c] = level


def scene_light(sky: np.ndarray) -> np.ndarray:
    """A of a physical clip: the clip's mean sky term (``environment``) in display values,
    (T, 1, 1, 3) float32, the same in every frame (the veil's light changes slowly)."""
    light = np.sqrt(sky.mean(axis=0)).clip(0.0, 1.0).astype(np.float32)
    return np.broadcast_to(light, (len(sky), 1, 1, 3)).copy()


def compose_lit(
    clean: np.ndarray,
    layers: dict[str, np.ndarray],
    light: np.ndarray,
    drops: tuple[np.ndarray, np.ndarray],
    splashes: tuple[np.ndarray, np.ndarray],
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The rain of a physical clip before the drops on the lens, filling in its lit layers S and
    "splash" on the way:

    O = beta B + (1 - beta) A + U + S + splash          (3, with splashes)
    O~ = (1 - alpha) O + alpha M                         (4)

    Args:
        clean: B, (T, H, W, 3) uint8 or float32 in [0, 1].
        layers: "U", "beta", "alpha" (T, H, W, 1) and "A", "M" (T, 1, 1, 3), float32; "S" and
            "splash", (T, H, W, 3) float32, are overwritten with the lit streaks and splashes.
        light: the environment's linear radiance, (T, h, w, 3) float32 (``environment``).
        drops, splashes: the streaks of the drops and of the splashes, (offsets (T + 1,) int64,
            columns (7, N) float64) as ``rainsynth.drops.drop_streaks`` and
            ``rainsynth.splashes.splash_streaks`` give them. Their coverage (the fraction of each
            pixel's exposure they cover, ``splat_frame``) is drawn one frame at a time, just
            before that frame is composed, so that it never leaves the cache.
        out: a (T, H, W, 3) float32 array to write the rain into (default: a new array).

    Returns:
        O~, (T, H, W, 3) float32, clipped to [0, 1].
    """
    out = np.empty(clean.shape, dtype=np.float32) if out is None else out
    scale = np.float32(1.0 / 255.0) if clean.dtype == np.uint8 else np.float32(1.0)
    run_parallel(
        _compose_lit,
        out.shape[0],
        out,
        clean,
        scale,
        _plane(layers["beta"]),
        _plane(layers["U"]),
        layers["A"][:, 0, 0, :],
        _plane(layers["alpha"]),
        layers["M"][:, 0, 0, :],
        _widened(light, out.shape[2]),
        # contiguous columns: one compiled kernel whatever slice of its array they are
        (drops[0], np.ascontiguousarray(drops[1])),
        (splashes[0], np.ascontiguousarray(splashes[1])),
        layers["S"],
        layers["splash"],
    )
    return out


def _plane(layer: np.ndarray) -> np.ndarray | None:
    """A (T, H, W, 1) layer as a C-contiguous (T, H, W) array for the kernel, or None for zeros
    broadcast to that shape (the read-only layers a physical clip leaves off), which the kernel
    reads as the constant 0 (a strided layer would keep its loops from vectorising)."""
    plane = layer[..., 0]
    if not any(plane.strides) and plane.flat[0] == 0.0:
        return None
    return np.ascontiguousarray(plane)


@register_jitable
def _lerp(a, b, w):
    """(1 - w) a + w b, float32 (numbers or arrays)."""
    return (np.float32(1.0) - w) * a + w * b


def _widened(environment: np.ndarray, width: int) -> np.ndarray:
    """The environment (T, h, w, 3) sampled bilinearly along x at every column of an image
    ``width`` px wide, (T, h, width, 3) float32: low-res pixel centres at (i + 1/2) LOW - 1/2,
    edges clamped. The rows are interpolated in ``_compose_lit``."""
    low_w = environment.shape[2]
    fx = np.clip((np.arange(width) + 0.5) / LOW - 0.5, 0.0, low_w - 1.0)
    x0 = fx.astype(np.int64)
    x1, wx = np.minimum(x0 + 1, low_w - 1), (fx - x0).astype(np.float32)
    rows = environment.reshape(-1, low_w, 3)
    out = np.empty((rows.shape[0], width, 3), np.float32)
    _widen_rows(rows, x0, x1, wx, out)
    return out.reshape(environment.shape[:2] + (width, 3))


@jit
def _widen_rows(rows, x0, x1, wx, out):  # pragma: no cover
    """out[r, x] = _lerp(rows[r, x0[x]], rows[r, x1[x]], wx[x]) for every row r of rows
    (R, w, 3) and column x of out (R, width, 3), x0 non-decreasing and x1 a function of it: the
    columns between two low-res pixel centres share their two samples, so the loop over them
    needs no gather and vectorises."""
    width = out.shape[1]
    for r in range(rows.shape[0]):
        start = 0
        while start < width:
            stop = start + 1
            while stop < width and x0[stop] == x0[start]:
                stop += 1
            a, b = rows[r, x0[start]], rows[r, x1[start]]
            for x in range(start, stop):
                for k in range(3):
                    out[r, x, k] = _lerp(a[k], b[k], wx[x])
            start = stop


@jit
def _scene(beta, background, scale, light, veil):  # pragma: no cover
    """Eq. 3 without S and splashes, in display values: beta B + (1 - beta) A + U, float32."""
    return beta * (background * scale) + (np.float32(1.0) - beta) * light + veil


@jit
def _lit(background, covered, environment):  # pragma: no cover
    """Display-value change where a drop covers a fraction ``covered`` of the exposure:
    sqrt((1 - c) bg^2 + c E) - bg, floored at 0 (gamma 2; bg clipped to [0, 1] first, E in
    linear radiance)."""
    bg = min(max(background, np.float32(0.0)), np.float32(1.0))
    mixed = (np.float32(1.0) - covered) * bg * bg + covered * environment
    return max(np.sqrt(mixed) - bg, np.float32(0.0))


@jit
def _compose_lit(
    start, stop, out, clean, scale, beta, veil, light, alpha, intensity, widened, drops, splashes,
    streaks, splash_layer,
):  # pragma: no cover  # fmt: skip
    """Frames [start, stop): see ``compose_lit``. Each frame's coverage by the drops and the
    splashes is splatted into a (2, H, W) buffer, then its rows are composed (``_compose_lit_row``).
    ``veil`` and ``alpha`` (T, H, W) are None where they are zero."""
    height = out.shape[1]
    coverage = np.empty((2, height, out.shape[2]), np.float32)
    for t in range(start, stop):
        _splat(coverage[0], drops, t)
        _splat(coverage[1], splashes, t)
        for y in range(height):
            _compose_lit_row(
                t, y, out, clean, scale, beta, veil, light, alpha, intensity, widened, coverage,
                streaks, splash_layer,
            )  # fmt: skip


@jit
def _splat(frame, streaks, t):  # pragma: no cover
    """frame (H, W) <- the coverage of frame t's ``streaks`` (offsets, columns) (``splat_frame``)."""
    offsets, c = streaks
    splat_frame(frame, offsets[t], offsets[t + 1], c[0], c[1], c[2], c[3], c[4], c[5], c[6])


@jit
def _compose_lit_row(
    t, y, out, clean, scale, beta, veil, light, alpha, intensity, widened, coverage, streaks,
    splashes,
):  # pragma: no cover  # fmt: skip
    """Row y of frame t: ``coverage`` (2, H, W) is the frame's by the drops (0) and the splashes
    (1); ``widened`` is the environment from ``_widened``, interpolated here between its rows.
    One pass over the row computes the drops' and the splashes' light at every pixel and keeps
    them where they cover it: selects, not branches, so that the loop vectorises."""
    width = out.shape[2]
    low_h = widened.shape[1]
    zero, one = np.float32(0.0), np.float32(1.0)
    fy = min(max((y + 0.5) / LOW - 0.5, 0.0), low_h - 1.0)
    y0 = int(fy)
    wy = np.float32(fy - y0)
    upper, lower = widened[t, y0].reshape(-1), widened[t, min(y0 + 1, low_h - 1)].reshape(-1)
    rain, b_row = out[t, y].reshape(-1), clean[t, y].reshape(-1)
    s_row, p_row = streaks[t, y].reshape(-1), splashes[t, y].reshape(-1)
    drops, spray, beta_row = coverage[0, y], coverage[1, y], beta[t, y]
    for x in range(width):
        u = zero if veil is None else veil[t, y, x]
        m = zero if alpha is None else alpha[t, y, x]
        covered = (drops[x] > zero) | (spray[x] > zero)
        for k in range(3):
            i = 3 * x + k
            o = _scene(beta_row[x], b_row[i], scale, light[t, k], u)
            e = _lerp(upper[i], lower[i], wy)
            lit, splash_lit = _lit(o, drops[x], e), _lit(o, spray[x], e)
            s = lit if covered else zero
            p = splash_lit if spray[x] > zero else zero
            s_row[i], p_row[i] = s, p
            o = o + s + p if covered else o  # Eq. 3 with S and splashes
            rain[i] = min(max((one - m) * o + m * intensity[t, k], zero), one)  # Eq. 4
