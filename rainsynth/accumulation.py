"""Rain accumulation (Eq. 3's beta_t and A_t): distant streaks veil the scene like fog.

    beta = exp(-k * d)        transmission, from a relative depth d in [0, 1] (1 = far)
    A                         atmospheric light: bright, near-grey, one colour per frame

Depth comes from a pluggable provider: a callable ``provider(clean, params) -> (T, H, W)`` float32
depth in [0, 1]. ``HorizonDepth`` (the default) needs no model: a ground-plane prior (far at and
above the horizon, nearer towards the bottom of the frame) refined edge-aware by the clean frame
with a guided filter, so depth edges follow the image's edges. It is a function of each frame
alone, so beta is identical across frames when the camera and scene are static.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from rainsynth._jit import jit, run_parallel
from rainsynth.errors import ParamError
from rainsynth.params import RainParams
from rainsynth.rng import CLIP_LEVEL, stream

DepthProvider = Callable[[np.ndarray, RainParams], np.ndarray]
"""provider(clean (T,H,W,3) uint8 or float32, params) -> depth (T,H,W) float32 in [0, 1]."""

LUMA = (0.299, 0.587, 0.114)
"""BT.601 luma weights of R, G, B."""

LOW_RES_HEIGHT = 32
"""Height (px) at which the horizon prior is refined; the result is upsampled (fast guided filter)."""

CHANNELS = 128
"""Frames box-filtered per cv2 call, as channels (OpenCV 5 takes at most 128 per array)."""


@dataclass(frozen=True)
class HorizonDepth:
    """Default depth: a ground-plane prior refined by a guided filter on the clean frame.

    Below the horizon row h, depth falls as on a ground plane seen from above it:
    d(y) = 1 / (1 + ground * (y - h) / (H - h)); at and above the horizon d = 1 (far).
    The prior is then guided-filtered (He et al., radius ~ H/8, eps) with the frame's luminance as
    guide, at low resolution, and the linear coefficients upsampled (He & Sun's fast guided filter).
    """

    ground: float = 4.0
    eps: float = 2e-3

    def __call__(self, clean: np.ndarray, params: RainParams) -> np.ndarray:
        num_frames, height, width = clean.shape[:3]
        factor = max(1, height // LOW_RES_HEIGHT)
        low_h, low_w = max(1, height // factor), max(1, width // factor)
        prior = self._prior(low_h, params.accumulation.horizon)
        # the guide is box-filtered below, so point-sampling it at low resolution suffices
        low = clean[:, factor // 2 :: factor, factor // 2 :: factor][:, :low_h, :low_w]
        slope, offset = _guided_coefficients(_luminance(low), prior, max(1, low_h // 8), self.eps)
        out = np.empty((num_frames, height, width), dtype=np.float32)
        scale = np.float32(1 / 255) if clean.dtype == np.uint8 else np.float32(1)
        upsampled = np.empty((2, height, width), dtype=np.float32)  # reused frame after frame
        for t in range(num_frames):
            for i, c in enumerate((slope[t], offset[t])):
                cv2.resize(c, (width, height), dst=upsampled[i], interpolation=cv2.INTER_LINEAR)
            run_parallel(_apply_guided, height, out[t], clean[t], scale, *upsampled)
        return out

    def _prior(self, height: int, horizon: float) -> np.ndarray:
        """Ground-plane depth per row, (height, 1) float32 in (0, 1]."""
        y = (np.arange(height, dtype=np.float32) + 0.5) / height
        below = np.clip((y - horizon) / max(1.0 - horizon, 1e-6), 0.0, 1.0)
        return (1.0 / (1.0 + self.ground * below))[:, None].astype(np.float32)


@dataclass(frozen=True)
class ConstantDepth:
    """The same depth everywhere: uniform fog, beta = exp(-k * value)."""

    value: float = 1.0

    def __call__(self, clean: np.ndarray, params: RainParams) -> np.ndarray:
        if not 0.0 <= self.value <= 1.0:
            raise ParamError(f"ConstantDepth value {self.value!r} must be in [0, 1]")
        return np.full(clean.shape[:3], self.value, dtype=np.float32)


@dataclass(frozen=True)
class DepthMaps:
    """User-supplied depth: (H, W) for the whole clip or (T, H, W) per frame, in [0, 1] (1 = far)."""

    maps: np.ndarray

    def __call__(self, clean: np.ndarray, params: RainParams) -> np.ndarray:
        maps = np.asarray(self.maps, dtype=np.float32)
        if maps.shape not in (clean.shape[1:3], clean.shape[:3]):
            raise ParamError(
                f"depth maps have shape {maps.shape}; expected (H, W) = {clean.shape[1:3]} "
                f"or (T, H, W) = {clean.shape[:3]}"
            )
        if not np.isfinite(maps).all() or maps.min() < 0.0 or maps.max() > 1.0:
            raise ParamError("depth maps must be finite and in [0, 1] (0 = near, 1 = far)")
        return np.ascontiguousarray(np.broadcast_to(maps, clean.shape[:3]))


@dataclass(frozen=True)
class CheckedDepth:
    """A user's depth provider, its output checked: (T, H, W) of the clip, finite, in [0, 1]."""

    provider: DepthProvider

    def __call__(self, clean: np.ndarray, params: RainParams) -> np.ndarray:
        depth = np.asarray(self.provider(clean, params))
        if depth.shape != clean.shape[:3]:
            raise ParamError(
                f"depth provider {self.provider!r} returned shape {depth.shape}; "
                f"expected (T, H, W) = {clean.shape[:3]}"
            )
        valid = depth.dtype.kind == "f" and np.isfinite(depth).all()
        if not valid or depth.min() < 0.0 or depth.max() > 1.0:
            raise ParamError(
                f"depth provider {self.provider!r} must return finite floats in [0, 1]"
            )
        return depth


def as_depth_provider(depth: DepthProvider | float | np.ndarray | None) -> DepthProvider:
    """None -> HorizonDepth(); a number -> ConstantDepth; an array -> DepthMaps; the built-in
    providers as they are; any other callable wrapped in CheckedDepth."""
    if depth is None:
        return HorizonDepth()
    if isinstance(depth, HorizonDepth | ConstantDepth | DepthMaps | CheckedDepth):
        return depth
    if callable(depth):
        return CheckedDepth(depth)
    if isinstance(depth, int | float):
        return ConstantDepth(float(depth))
    return DepthMaps(np.asarray(depth))


def transmission(depth: np.ndarray, k: float, out: np.ndarray | None = None) -> np.ndarray:
    """beta = exp(-k * d) (Sec. 3, accumulation), (T, H, W) depth -> (T, H, W, 1) float32 in (0, 1].

    out: a (T, H, W, 1) float32 array to write into (default: a new array); returned.
    """
    out = np.empty(depth.shape + (1,), dtype=np.float32) if out is None else out
    beta = out[..., 0]
    np.multiply(depth, np.float32(-k), out=beta, dtype=np.float32)
    np.exp(beta, out=beta)
    return out


def atmospheric_light(params: RainParams) -> np.ndarray:
    """A_t: bright, near-grey, slowly varying light, (T, 1, 1, 3) float32 in [0, 1].

    A_t = light * (1 + light_drift * sin(2 pi t / 48 + phase)) + tint_c, with one tint per channel
    in [-tint, tint] and one phase per clip.
    """
    p = params.accumulation
    rng = stream(params.seed, params.clip, CLIP_LEVEL, "A")
    tint = rng.uniform(-p.tint, p.tint, 3)
    phase = rng.uniform(0.0, 2.0 * np.pi)
    t = np.arange(params.shape[0], dtype=np.float64)
    level = p.light * (1.0 + p.light_drift * np.sin(2.0 * np.pi * t / 48.0 + phase))
    light = np.clip(level[:, None] + tint[None, :], 0.0, 1.0)
    return light.astype(np.float32).reshape(-1, 1, 1, 3)


def _luminance(frames: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB frames (..., 3) uint8 or float -> (...) float32 in [0, 1]."""
    scale = 1 / 255 if frames.dtype == np.uint8 else 1.0
    weights = np.array(LUMA, dtype=np.float32) * np.float32(scale)
    return frames.astype(np.float32) @ weights


@jit
def _apply_guided(start, stop, out, clean, scale, a, b):  # pragma: no cover
    """out = clip(a * Y + b, 0, 1) on rows [start, stop) of one frame: the fast guided filter's
    full-resolution step, with Y the BT.601 luma of clean (H, W, 3) times ``scale`` and a, b
    (H, W) the upsampled coefficients."""
    r, g, bl = np.float32(LUMA[0] * scale), np.float32(LUMA[1] * scale), np.float32(LUMA[2] * scale)
    zero, one = np.float32(0.0), np.float32(1.0)
    for y in range(start, stop):
        pixels, slope, offset, depth = clean[y].reshape(-1), a[y], b[y], out[y]
        for x in range(depth.shape[0]):
            luma = r * pixels[3 * x] + g * pixels[3 * x + 1] + bl * pixels[3 * x + 2]
            depth[x] = min(max(slope[x] * luma + offset[x], zero), one)


def _guided_coefficients(
    guide: np.ndarray, target: np.ndarray, radius: int, eps: float
) -> tuple[np.ndarray, np.ndarray]:
    """Guided filter (He et al.) of each frame: box-averaged a, b with target ~ a * guide + b
    locally. guide (T, h, w), target broadcastable to it -> a, b (T, h, w) float32."""
    mean_i, mean_p = _box(guide, radius), _box(np.broadcast_to(target, guide.shape), radius)
    cov_ip = _box(guide * target, radius) - mean_i * mean_p
    var_i = _box(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + np.float32(eps))
    b = mean_p - a * mean_i
    return _box(a, radius), _box(b, radius)


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    """Means over (2 radius + 1)^2 windows in each frame of x (T, h, w), edges mirrored
    (cv2.BORDER_REFLECT); (T, h, w) float32. Frames go through cv2 as channels, CHANNELS at a time."""
    size = (2 * radius + 1, 2 * radius + 1)
    out = np.empty(x.shape, dtype=np.float32)
    for t in range(0, x.shape[0], CHANNELS):
        frames = np.ascontiguousarray(np.moveaxis(x[t : t + CHANNELS], 0, -1), dtype=np.float32)
        blurred = cv2.blur(frames, size, borderType=cv2.BORDER_REFLECT)
        out[t : t + CHANNELS] = np.moveaxis(blurred.reshape(frames.shape), -1, 0)
    return out
