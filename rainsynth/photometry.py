"""Drop photometry of the physical presets: streaks and splashes lit by the light around them.

A falling drop refracts light from a wide field of view (about 165 degrees) towards the camera,
so its radiance is close to the mean radiance of its environment, not that of the scene point
behind it (Garg & Nayar 2004): drops are bright in daylight, bright and coloured near lamps, dim
in the dark. The environment of a drop at pixel x is modelled from the clip's own light, in linear
radiance: half of it the scene around the drop, the frame blurred at 1/16 and at 1/4 of its height
in equal parts (a light nearby subtends a larger solid angle than the same light far away), and
half of it the sky above, which the frame hardly shows: SKY_GAIN times the 90th percentile of the
frame's upper half, per channel, since a camera exposed for the scene clips the sky (its
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

from rainsynth._jit import jit, run_parallel

LOW = 16
"""The environment's light is computed at 1/LOW of the frame's size and sampled bilinearly."""
SKY_GAIN = 2.0
"""The sky's radiance over the frame's 90th percentile in its upper half (where a camera exposed
for the scene clips it): set so that streak contrast matches real rain (docs/streak_stats.py)."""


def linear(frames: np.ndarray) -> np.ndarray:
    """Linear radiance (gamma 2) of display values: uint8 or float in [0, 1] -> float32."""
    scale = 1.0 / 255.0 if frames.dtype == np.uint8 else 1.0
    values = frames.astype(np.float32) * np.float32(scale)
    return values * values


def environment(clean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The light drops see, from the clean clip (T, H, W, 3) uint8 or float32.

    Returns (environment, sky): the environment's linear radiance at 1/LOW resolution,
    (T, ceil(H / LOW), ceil(W / LOW), 3) float32, and the sky term per frame, (T, 3) float32.
    """
    num_frames, height, width = clean.shape[:3]
    low_h, low_w = -(-height // LOW), -(-width // LOW)
    step = max(1, LOW // 4)  # point samples 4 per low-res pixel and side; the blur does the rest
    y0, x0 = min(step // 2, height - 1), min(step // 2, width - 1)
    samples = linear(clean[:, y0::step, x0::step])
    out = np.empty((num_frames, low_h, low_w, 3), np.float32)
    upper = samples[:, : max(1, samples.shape[1] // 2)].reshape(num_frames, -1, 3)
    sky = np.percentile(upper, 90, axis=1)
    for t in range(num_frames):
        low = cv2.resize(samples[t], (low_w, low_h), interpolation=cv2.INTER_AREA)
        near = cv2.GaussianBlur(low, (0, 0), max(low_h / LOW, 0.5), borderType=cv2.BORDER_REFLECT)
        wide = cv2.GaussianBlur(low, (0, 0), max(low_h / 4, 0.5), borderType=cv2.BORDER_REFLECT)
        around = np.float32(0.25) * (near.reshape(low.shape) + wide.reshape(low.shape))
        out[t] = around + np.float32(0.5 * SKY_GAIN) * sky[t]
    return out, sky.astype(np.float32)


def scene_light(sky: np.ndarray) -> np.ndarray:
    """A of a physical clip: the clip's mean sky term (``environment``) in display values,
    (T, 1, 1, 3) float32, the same in every frame (the veil's light changes slowly)."""
    light = np.sqrt(sky.mean(axis=0)).clip(0.0, 1.0).astype(np.float32)
    return np.broadcast_to(light, (len(sky), 1, 1, 3)).copy()


def compose_lit(
    clean: np.ndarray,
    layers: dict[str, np.ndarray],
    light: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The rain of a physical clip before the drops on the lens, filling in its lit layers S and
    "splash" on the way:

    O = beta B + (1 - beta) A + U + S + splash          (3, with splashes)
    O~ = (1 - alpha) O + alpha M                         (4)

    Args:
        clean: B, (T, H, W, 3) uint8 or float32 in [0, 1].
        layers: "U", "beta", "alpha" (T, H, W, 1) and "A", "M" (T, 1, 1, 3), float32; "S" and
            "splash", (T, H, W, 3) float32, hold the coverage of the drops and of the splashes in
            their first channel (in [0, 1]) and are overwritten.
        light: the environment's linear radiance, (T, h, w, 3) float32 (``environment``).
        out: a (T, H, W, 3) float32 array to write the rain into (default: a new array).

    Returns:
        O~, (T, H, W, 3) float32, clipped to [0, 1].
    """
    out = np.empty(clean.shape, dtype=np.float32) if out is None else out
    scale = np.float32(1.0 / 255.0) if clean.dtype == np.uint8 else np.float32(1.0)
    run_parallel(
        _compose_lit,
        out.shape[0] * out.shape[1],
        out,
        clean,
        scale,
        layers["beta"][..., 0],
        layers["U"][..., 0],
        layers["A"][:, 0, 0, :],
        layers["alpha"][..., 0],
        layers["M"][:, 0, 0, :],
        light,
        layers["S"],
        layers["splash"],
    )
    return out


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
    start, stop, out, clean, scale, beta, veil, light, alpha, intensity, environment, streaks,
    splashes,
):  # pragma: no cover  # fmt: skip
    """Rows [start, stop) of the (T * H) image rows: see ``compose_lit``. Where a drop or splash
    covers a pixel, the environment is sampled bilinearly (low-res pixel centres at
    (i + 1/2) LOW - 1/2, edges clamped)."""
    height, width = out.shape[1], out.shape[2]
    low_h, low_w = environment.shape[1], environment.shape[2]
    zero, one = np.float32(0.0), np.float32(1.0)
    for row in range(start, stop):
        t = row // height
        y = row - t * height
        fy = min(max((y + 0.5) / LOW - 0.5, 0.0), low_h - 1.0)
        y0 = int(fy)
        wy = np.float32(fy - y0)
        upper, lower = environment[t, y0], environment[t, min(y0 + 1, low_h - 1)]
        rain, b_row = out[t, y].reshape(-1), clean[t, y].reshape(-1)
        s_row, p_row = streaks[t, y].reshape(-1), splashes[t, y].reshape(-1)
        beta_row, veil_row, alpha_row = beta[t, y], veil[t, y], alpha[t, y]
        a0, a1, a2 = light[t, 0], light[t, 1], light[t, 2]
        for x in range(width):  # Eq. 3 without S and splashes: vectorises
            b, u = beta_row[x], veil_row[x]
            rain[3 * x] = b * (b_row[3 * x] * scale) + (one - b) * a0 + u
            rain[3 * x + 1] = b * (b_row[3 * x + 1] * scale) + (one - b) * a1 + u
            rain[3 * x + 2] = b * (b_row[3 * x + 2] * scale) + (one - b) * a2 + u
        for x in range(width):
            c, cs = s_row[3 * x], p_row[3 * x]
            if c > zero or cs > zero:
                fx = min(max((x + 0.5) / LOW - 0.5, 0.0), low_w - 1.0)
                x0 = int(fx)
                x1 = min(x0 + 1, low_w - 1)
                wx = np.float32(fx - x0)
                for k in range(3):
                    e = (one - wy) * ((one - wx) * upper[x0, k] + wx * upper[x1, k]) + wy * (
                        (one - wx) * lower[x0, k] + wx * lower[x1, k])  # fmt: skip
                    o = rain[3 * x + k]
                    s = _lit(o, c, e)
                    p = _lit(o, cs, e) if cs > zero else zero
                    s_row[3 * x + k] = s
                    p_row[3 * x + k] = p
                    rain[3 * x + k] = o + s + p
            else:
                s_row[3 * x], s_row[3 * x + 1], s_row[3 * x + 2] = zero, zero, zero
                p_row[3 * x], p_row[3 * x + 1], p_row[3 * x + 2] = zero, zero, zero
        for x in range(width):  # Eq. 4 and the clip to [0, 1]
            m = alpha_row[x]
            for k in range(3):
                o = (one - m) * rain[3 * x + k] + m * intensity[t, k]
                rain[3 * x + k] = min(max(o, zero), one)
