"""Rendering: the four factors composed over a clean clip (Eqns. 3 and 4), and their inverse (Eq. 6).

O_t  = beta_t * B_t + (1 - beta_t) * A_t + U_t + S_t          (3)
O~_t = (1 - alpha_t) * O_t + alpha_t * M_t                     (4)
B^_t = (O~_t - U_t - S_t - (1 - beta_t) * A_t) / max(beta_t, 0.1) + R_t   (6)

A physical preset's clip adds splashes to Eq. 3 and drops on the lens after Eq. 4
(``rainsynth.photometry.compose_lit``), and its streaks and splashes are coloured by the light
around them: S and "splash" have three channels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numba
import numpy as np
from numba.extending import overload

from rainsynth._jit import jit, run_parallel
from rainsynth.accumulation import DepthProvider, as_depth_provider, atmospheric_light, transmission
from rainsynth.accumulation_flow import render_accumulation_flow
from rainsynth.drops import drop_streaks
from rainsynth.errors import ParamError
from rainsynth.lens_drops import render_lens_drops
from rainsynth.occlusion import occlusion_intensity, render_occlusion
from rainsynth.params import RainParams
from rainsynth.photometry import compose_lit, environment, scene_light
from rainsynth.splashes import splash_streaks
from rainsynth.streaks import render_streaks

LAYERS = ("S", "U", "beta", "A", "alpha", "M")
"""Names of the rain layers: streaks, accumulation flow, transmission, light, matte, intensity."""
PHYSICAL_LAYERS = ("splash", "lens_alpha", "lens")
"""Layers only a physical preset's clip has: splashes, the matte of the drops on the lens and
what shows through them."""


@dataclass(frozen=True, eq=False)
class RainClip:
    """A rendered clip.

    Attributes:
        rain: O~ of Eq. 4, (T, H, W, 3) float32 in [0, 1] (uint8 0..255 when rendered with
            ``dtype=np.uint8``).
        layers: float32 arrays broadcastable to (T, H, W, 3): "S", "U", "beta", "alpha"
            (T, H, W, 1) and "A", "M" (T, 1, 1, 3). A physical preset's clip has "S"
            (T, H, W, 3) (coloured by the light) and also "splash" (T, H, W, 3), "lens_alpha"
            (T, H, W, 1) and "lens" (T, H, W, 3) (``PHYSICAL_LAYERS``).
        params: the parameters it was rendered with.
    """

    rain: np.ndarray
    layers: dict[str, np.ndarray]
    params: RainParams


def render(
    clean: np.ndarray,
    params: RainParams,
    *,
    depth: DepthProvider | float | np.ndarray | None = None,
    dtype: type = np.float32,
) -> RainClip:
    """Render rain over a clean clip.

    Args:
        clean: B, (T, H, W, 3) RGB, uint8 or float in [0, 1]; (T, H, W) must equal params.shape.
        params: from ``sample_params`` (or ``RainParams.from_dict``).
        depth: relative depth (1 = far) for the transmission: None for the default
            ``HorizonDepth`` prior, a number for constant depth, a (H, W) or (T, H, W) array of
            depth maps in [0, 1], or a callable ``(clean, params) -> (T, H, W)``.
        dtype: of the rain: np.float32, or np.uint8 for the same values in 8 bits
            (``rainsynth.dataset.to_uint8`` of the float32 rain), rounded as they are composed.

    Returns:
        A ``RainClip``. The same clean input and params give bit-identical output, whatever the
        number of threads.
    """
    clean = _checked_clean(clean, params)
    if params.physics is not None:
        clip = _render_physical(clean, params, depth)
        if dtype is np.uint8:
            clip = dataclasses.replace(clip, rain=to_uint8(clip.rain))
        return clip
    # One block for the four per-pixel layers (each renderer overwrites its own): a single large
    # allocation is mapped in huge pages, where four separate ones would page-fault in 4 KiB
    # steps, which cost more than rendering them.
    streaks, veil, beta, alpha = np.empty((4,) + clean.shape[:3] + (1,), np.float32)
    k = params.accumulation.k
    if k == 0.0:
        beta.fill(1.0)
    else:
        transmission(as_depth_provider(depth)(clean, params), k, out=beta)
    layers = {
        "S": render_streaks(params, out=streaks),
        "U": render_accumulation_flow(params, out=veil),
        "beta": beta,
        "A": atmospheric_light(params),
        "alpha": render_occlusion(params, out=alpha),
        "M": occlusion_intensity(params),
    }
    return RainClip(rain=compose(clean, layers, dtype), layers=layers, params=params)


def _render_physical(
    clean: np.ndarray, params: RainParams, depth: DepthProvider | float | np.ndarray | None
) -> RainClip:
    """``render`` for a physical preset: drops, splashes and lens drops, lit by the scene.

    Memory is what this costs most (each fresh page is a page fault): S, "splash" and the rain
    share one block (under glibc's largest mmap threshold, so that it is reused from call to
    call), the drops' and splashes' coverage is drawn a frame at a time where it is composed
    (``compose_lit``), drops on the lens touch only the pages they cover, and the accumulation flow and occlusion, which a physical preset leaves off, are
    read-only zero layers.
    """
    streaks, splash, rain = np.empty((3,) + clean.shape, np.float32)
    beta = np.empty(clean.shape[:3] + (1,), np.float32)
    transmission(as_depth_provider(depth)(clean, params), params.accumulation.k, out=beta)
    light, sky = environment(clean)
    layers = {
        "S": streaks,
        "U": _rendered_or_zeros(render_accumulation_flow, params, params.flow.opacity > 0.0),
        "beta": beta,
        "A": scene_light(sky),
        "alpha": _rendered_or_zeros(render_occlusion, params, params.occlusion.density > 0.0),
        "M": occlusion_intensity(params),
        "splash": splash,
    }
    compose_lit(clean, layers, light, drop_streaks(params), splash_streaks(params), out=rain)
    layers["lens_alpha"], layers["lens"] = render_lens_drops(params, clean, rain)
    return RainClip(rain=rain, layers=layers, params=params)


def _rendered_or_zeros(renderer, params: RainParams, present: bool) -> np.ndarray:
    """``renderer(params)``, a (T, H, W, 1) layer, if ``present``, else read-only zeros."""
    if present:
        return renderer(params)
    return np.broadcast_to(np.zeros((1, 1, 1, 1), np.float32), params.shape + (1,))


def compose(
    clean: np.ndarray, layers: dict[str, np.ndarray], dtype: type = np.float32
) -> np.ndarray:
    """Eqns. (3) and (4), clipped to [0, 1]: (T, H, W, 3) clean (uint8 or float32) -> rain,
    float32, or uint8 (:func:`eight_bit` of each float32 value) for ``dtype=np.uint8``."""
    if dtype not in (np.float32, np.uint8):
        raise ParamError(f"rain dtype must be numpy.float32 or numpy.uint8, got {dtype!r}")
    out = np.empty(clean.shape, dtype=dtype)
    scale = np.float32(1.0 / 255.0) if clean.dtype == np.uint8 else np.float32(1.0)
    run_parallel(
        _compose,
        out.shape[0] * out.shape[1],
        out,
        clean,
        scale,
        layers["S"][..., 0],
        layers["U"][..., 0],
        layers["beta"][..., 0],
        layers["A"][:, 0, 0, :],
        layers["alpha"][..., 0],
        layers["M"][:, 0, 0, :],
    )
    return out


@jit
def _compose(
    start, stop, out, clean, scale, streaks, veil, beta, light, alpha, intensity
):  # pragma: no cover
    """Per pixel and channel: O = beta B + (1 - beta) A + U + S (3); O~ = (1 - alpha) O + alpha M (4).

    Rows [start, stop) of the (T * H) image rows; channels unrolled, so the loop over x vectorises.
    A uint8 ``out`` gets each float32 value in 8 bits (:func:`eight_bit`).
    """
    height, width = out.shape[1], out.shape[2]
    for row in range(start, stop):
        t = row // height
        y = row - t * height
        rain, b_row = out[t, y].reshape(-1), clean[t, y].reshape(-1)
        beta_row, veil_row, streak_row, alpha_row = (
            beta[t, y],
            veil[t, y],
            streaks[t, y],
            alpha[t, y],
        )
        a0, a1, a2 = light[t, 0], light[t, 1], light[t, 2]
        m0, m1, m2 = intensity[t, 0], intensity[t, 1], intensity[t, 2]
        for x in range(width):
            b, add, m = beta_row[x], veil_row[x] + streak_row[x], alpha_row[x]
            keep = 1.0 - m
            o = b * (b_row[3 * x] * scale) + (1.0 - b) * a0 + add
            rain[3 * x] = _stored(min(max(keep * o + m * m0, 0.0), 1.0), rain)
            o = b * (b_row[3 * x + 1] * scale) + (1.0 - b) * a1 + add
            rain[3 * x + 1] = _stored(min(max(keep * o + m * m1, 0.0), 1.0), rain)
            o = b * (b_row[3 * x + 2] * scale) + (1.0 - b) * a2 + add
            rain[3 * x + 2] = _stored(min(max(keep * o + m * m2, 0.0), 1.0), rain)


@jit
def eight_bit(value):  # pragma: no cover
    """A float32 value in 8 bits: rint(clip(value, 0, 1) * 255) in float32, as uint8."""
    value = min(max(value, np.float32(0.0)), np.float32(1.0))
    return np.uint8(np.rint(value * np.float32(255.0)))


def _stored(value, out):  # pragma: no cover
    """A float value as stored in the array ``out``: float32, or for uint8 its eight_bit."""
    raise NotImplementedError("only inside numba kernels")


@overload(_stored)
def _stored_for(value, out):  # pragma: no cover
    """numba picks the store of ``out``'s dtype when it compiles a kernel."""
    if out.dtype == numba.types.uint8:
        return lambda value, out: eight_bit(np.float32(value))
    return lambda value, out: np.float32(value)


def invert(
    rain: np.ndarray, layers: dict[str, np.ndarray], residual: np.ndarray | float = 0.0
) -> np.ndarray:
    """Eq. (6), the inverse recovery: B^ = (O~ - U - S - (1 - beta) A) / max(beta, 0.1) + R.

    Occlusion is not inverted (where alpha > 0 the background is lost; R accounts for it).

    Args:
        rain: O~, (T, H, W, 3) float.
        layers: as ``RainClip.layers`` (only "S", "U", "beta", "A" are used).
        residual: R, broadcastable to (T, H, W, 3).

    Returns:
        B^, (T, H, W, 3) float32, not clipped.
    """
    s, u, beta, a = (layers[k] for k in ("S", "U", "beta", "A"))
    clean = (rain - u - s - (1.0 - beta) * a) / np.maximum(beta, 0.1) + residual
    return clean.astype(np.float32)


def _checked_clean(clean: np.ndarray, params: RainParams) -> np.ndarray:
    """The clean clip as C-contiguous uint8 or float32, after checking shape, dtype and range."""
    clean = np.asarray(clean)
    if clean.ndim != 4 or clean.shape[-1] != 3:
        raise ParamError(f"clean clip must have shape (T, H, W, 3), got {clean.shape}")
    if clean.shape[:3] != params.shape:
        raise ParamError(
            f"clean clip is {clean.shape[:3]} (T, H, W) but params were sampled for {params.shape}; "
            "call sample_params(..., shape=clean.shape[:3])"
        )
    if clean.dtype == np.uint8:
        return np.ascontiguousarray(clean)
    if clean.dtype.kind != "f":
        raise ParamError(f"clean clip must be uint8 or float in [0, 1], got dtype {clean.dtype}")
    clean = np.ascontiguousarray(clean, dtype=np.float32)
    if not np.isfinite(clean).all() or clean.min() < 0.0 or clean.max() > 1.0:
        raise ParamError(
            f"float clean clip must be finite and in [0, 1], got range [{clean.min()}, {clean.max()}]"
        )
    return clean


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] (any shape) -> uint8: rint(clip(x, 0, 1) * 255) in float32.

    One pass over the values (numba); the same bytes as the NumPy expression.
    """
    values = np.ascontiguousarray(frames, dtype=np.float32)
    out = np.empty(values.shape, np.uint8)
    run_parallel(_to_uint8, values.size, values.reshape(-1), out.reshape(-1))
    return out


@jit
def _to_uint8(start, stop, values, out):  # pragma: no cover
    """out[i] = rint(clip(values[i], 0, 1) * 255) for i in [start, stop)."""
    for i in range(start, stop):
        out[i] = eight_bit(values[i])
