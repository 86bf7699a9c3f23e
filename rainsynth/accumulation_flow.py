"""Rain accumulation flow U (Eq. 3's U_t): a semi-transparent veil with its own motion.

Out-of-focus drops and flowing accumulation: a veil of any shape, not tied to depth. It is built
from two periodic multi-octave random fields F1, F2 (spectral synthesis, ~3 octaves below the
clip's ``scale``), advected with the veil velocity v (px per frame, along the fall direction) and
slowly rotated into each other so the shape evolves while the variance stays constant:

    g_t(x) = cos(w t) F1(x - v t) + sin(w t) F2(x - v t)        (w = evolution, rad / frame)
    U_t(x) = opacity * smoothstep(z - 1, z + 1, g_t(x))          (z: the (1 - coverage) quantile)

so U_t is close to U_{t-1} moved by v: temporally continuous.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import cv2
import numpy as np

from rainsynth.params import RainParams
from rainsynth.rng import CLIP_LEVEL, stream

LOW_RES_HEIGHT = 64
"""The veil is synthesised at about this height and upsampled bilinearly (it is smooth)."""


def veil_velocity(params: RainParams) -> tuple[float, float]:
    """The veil's velocity (vx, vy) in px per frame: ``speed`` along the fall direction at frame 0."""
    angle = math.radians(params.streaks.angle)
    return params.flow.speed * math.sin(angle), params.flow.speed * math.cos(angle)


def render_accumulation_flow(params: RainParams, out: np.ndarray | None = None) -> np.ndarray:
    """The veil U of every frame, (T, H, W, 1) float32 in [0, opacity].

    out: a float32 array of that shape to overwrite (default: a new array); returned.
    """
    num_frames, height, width = params.shape
    p = params.flow
    out = np.empty((num_frames, height, width, 1), dtype=np.float32) if out is None else out
    if p.opacity == 0.0 or p.coverage == 0.0:
        out.fill(0.0)
        return out
    factor = max(1, height // LOW_RES_HEIGHT)
    low_h, low_w = -(-height // factor), -(-width // factor)
    fields = _periodic_fields(params, low_h + 8, low_w + 8, p.scale * height / factor)
    vx, vy = veil_velocity(params)
    threshold = NormalDist().inv_cdf(1.0 - p.coverage) if p.coverage < 1.0 else -np.inf
    for t in range(num_frames):
        g = math.cos(p.evolution * t) * fields[0] + math.sin(p.evolution * t) * fields[1]
        # advect: low-res sample at x - v t (periodic field, so the shift wraps seamlessly);
        # full-res x maps to low-res (x + 1/2) * low / full - 1/2 under the bilinear resize below
        shift = np.array(
            [[1.0, 0.0, -vx * t * low_w / width], [0.0, 1.0, -vy * t * low_h / height]]
        )
        moved = cv2.warpAffine(
            g,
            shift,
            (low_w, low_h),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_WRAP,
        )
        veil = _smoothstep(moved, threshold) * np.float32(p.opacity)
        cv2.resize(veil, (width, height), dst=out[t, :, :, 0], interpolation=cv2.INTER_LINEAR)
    return out


def _smoothstep(g: np.ndarray, threshold: float) -> np.ndarray:
    """smoothstep(threshold - 1, threshold + 1, g), float32: a soft-edged veil."""
    x = np.clip((g - np.float32(threshold - 1.0)) * np.float32(0.5), 0.0, 1.0)
    return (x * x * (3.0 - 2.0 * x)).astype(np.float32)


def _periodic_fields(params: RainParams, height: int, width: int, feature: float) -> np.ndarray:
    """Two independent periodic Gaussian fields (2, height, width) float32, zero mean, unit std.

    Spectral synthesis: white noise filtered with amplitude 1/f^2 (most energy in the largest
    features) between the clip's feature size (px at this resolution) and 8x finer, with a smooth
    roll-off at both ends: about three octaves.
    """
    rng = stream(params.seed, params.clip, CLIP_LEVEL, "U")
    noise = rng.standard_normal((2, height, width), dtype=np.float32)
    fy = np.fft.fftfreq(height)[:, None].astype(np.float32)
    fx = np.fft.rfftfreq(width)[None, :].astype(np.float32)
    f = np.sqrt(fx * fx + fy * fy)
    f0 = 1.0 / max(feature, 2.0)
    amplitude = np.where(f > 0, 1.0 / np.maximum(f * f, np.float32(1e-12)), np.float32(0.0))
    amplitude *= 1.0 - np.exp(-((f / f0) ** 4))  # fade out features larger than `feature`
    amplitude *= np.exp(-((f / (8.0 * f0)) ** 2))  # fade out features 8x finer
    fields = np.fft.irfft2(np.fft.rfft2(noise) * amplitude, s=(height, width))
    fields -= fields.mean(axis=(1, 2), keepdims=True)
    fields /= np.maximum(fields.std(axis=(1, 2), keepdims=True), 1e-12)
    return fields.astype(np.float32, copy=False)
