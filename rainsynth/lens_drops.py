"""Drops on the lens of a physical preset (Eq. 4 applied once more): water on the glass in front of
the lens, with its own matte ``lens_alpha`` and what shows through it, ``lens``.

Drops land on the glass (``window`` m in front of the lens; the part the camera sees is
W window / f by H window / f) at the rain's number flux (``physics.number_flux``) times the
camera's ``wetting``, plus the drops the camera runs into (number density times its forward
speed). A glass in the rain has been wet for a while: the clip starts with the drops of
RESIDENCE s, and more land during the clip. A drop of diameter D sits as a spherical cap of
contact radius 0.63 D (a hemisphere of the same volume); drops wider than SLIDE mm slide down
(gravity overcomes the pinning of the contact line), the others stay.

The glass is far out of focus: a drop's matte is its disc blurred by the circle of confusion at
the glass (``physics.circle_of_confusion``): peak 1 - exp(-r^2 / (2 s^2)) at the centre for a disc
of radius r under a blur of standard deviation s, falling smoothly over 2 s either side of the
edge. Through it the drop shows the scene turned upside down and shrunk, as a ball lens does
(Roser & Geiger 2009; You et al. 2016): the clean frame blurred, sampled at c - MAGNIFY (x - c)
around the drop's centre c, dimmed by the glass and water's reflections (TRANSMITTANCE).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from rainsynth._jit import jit, run_parallel
from rainsynth.params import RainParams
from rainsynth.physics import (
    Optics,
    check_count,
    number_density,
    number_flux,
    sample_diameters,
)
from rainsynth.rng import CLIP_LEVEL, stream

RESIDENCE = 10.0
"""s a drop stays on the glass before it runs off or dries: the clip starts with this much rain."""
CONTACT = 0.5 * 2.0 ** (1.0 / 3.0)
"""Contact radius of a drop sitting on the glass / its diameter: a hemisphere of equal volume."""
SMALLEST = 0.5
"""mm: smaller drops on the glass are too small to see."""
SLIDE = 3.0
"""mm: drops at least this wide slide down the glass, at SLIDE_SPEED m/s per mm above it."""
SLIDE_SPEED = 0.01
MAGNIFY = 5.0
"""A drop shows the scene this many times its own size around it, upside down."""
TRANSMITTANCE = 0.9
"""Fraction of the light through a drop on the glass that reaches the lens (Fresnel losses)."""
LOW = 8
"""The view through the drops is sampled from the frame at 1/LOW of its size, blurred with a
standard deviation of 1.5 of its pixels (the glass is far out of focus)."""


def render_lens_drops(
    params: RainParams, clean: np.ndarray, rain: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The drops on the lens: their matte ``lens_alpha`` (T, H, W, 1) in [0, 1] and what shows
    through them ``lens`` (T, H, W, 3) (0 outside the drops), float32, from the clean clip
    (T, H, W, 3) uint8 or float32; ``rain`` (T, H, W, 3) float32 in [0, 1], O~ of Eq. 4, is
    replaced by (1 - lens_alpha) O~ + lens_alpha lens where drops are.

    Without drops both layers are read-only zeros; with drops, memory is touched only where they
    are (the arrays start as lazily mapped zeros).
    """
    num_frames, height, width = params.shape
    birth, x, y, radius, speed = _drops_on_glass(params)
    if birth.size == 0:
        zeros = np.zeros((num_frames, 1, 1, 1), np.float32)
        return (np.broadcast_to(zeros, (num_frames, height, width, 1)),
                np.broadcast_to(zeros, (num_frames, height, width, 3)))  # fmt: skip
    alpha = np.zeros((num_frames, height, width, 1), np.float32)
    view = np.zeros((num_frames, height, width, 3), np.float32)
    optics = Optics.of(params.physics.camera, params.shape)
    blur = optics.blur(params.physics.camera.window)
    run_parallel(
        _splat_lens_drops,
        num_frames,
        alpha[..., 0],
        view,
        rain,
        _blurred(clean),
        birth,
        x,
        y,
        radius,
        speed,
        np.float64(max(blur / 4.0, 0.5)),
        np.float64(1.0 / optics.fps),
    )
    return alpha, view


def _drops_on_glass(params: RainParams) -> tuple[np.ndarray, ...]:
    """The drops on the glass during the clip, float64 arrays (N,): landing time (s, negative for
    drops already there), centre at landing (px), radius (px) and sliding speed (px per s)."""
    physical = params.physics
    camera, rate = physical.camera, physical.rain.rate
    num_frames, height, width = params.shape
    optics = Optics.of(camera, params.shape)
    scale = optics.focal / camera.window  # px per m on the glass
    area = (width / scale) * (height / scale)
    landing = camera.wetting * number_flux(rate, SMALLEST) + abs(camera.motion_z) * number_density(
        rate, SMALLEST
    )
    duration = RESIDENCE + num_frames / camera.fps
    check_count("drops on the lens", landing * area * duration)
    rng = stream(params.seed, params.clip, CLIP_LEVEL, "lens")
    count = rng.poisson(landing * area * duration)
    u = rng.random((3, count))
    diameter = sample_diameters(rng, rate, count, SMALLEST)
    sliding = np.maximum(diameter - SLIDE, 0.0) * SLIDE_SPEED * scale
    return (
        -RESIDENCE + duration * u[0],
        width * u[1],
        height * u[2],
        CONTACT * diameter / 1000.0 * scale,
        sliding,
    )


def _blurred(clean: np.ndarray) -> np.ndarray:
    """The clean clip at 1/LOW of its size, Gaussian-blurred, float32 in [0, 1], (T, h, w, 3)."""
    num_frames, height, width = clean.shape[:3]
    size = (max(1, width // LOW), max(1, height // LOW))
    scale = 1.0 / 255.0 if clean.dtype == np.uint8 else 1.0
    out = np.empty((num_frames, size[1], size[0], 3), np.float32)
    shrunk = _shrunk(clean, size)
    for t in range(num_frames):
        low = cv2.GaussianBlur(shrunk[t], (0, 0), 1.5)
        out[t] = low.reshape(out[t].shape) * np.float32(scale)
    return out


def _shrunk(clean: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The clip (T, H, W, 3) resized to ``size`` (w, h) by cv2's INTER_AREA, as float32
    (T, h, w, 3). A uint8 clip exactly LOW times that size is averaged by ``_block_means``
    (the same values: cv2 rounds the mean of each block to the nearest, ties to even), in
    half cv2's time."""
    num_frames, height, width = clean.shape[:3]
    out = np.empty((num_frames, size[1], size[0], 3), np.float32)
    if clean.dtype == np.uint8 and (height, width) == (LOW * size[1], LOW * size[0]):
        _block_means(clean, out)
        return out
    for t in range(num_frames):
        low = cv2.resize(clean[t], size, interpolation=cv2.INTER_AREA)
        out[t] = low.reshape(out[t].shape)
    return out


@jit
def _block_means(clean, out):  # pragma: no cover
    """out[t, i, j] = rint(mean of the LOW x LOW block clean[t, LOW i:, LOW j:]) per channel:
    clean (T, LOW h, LOW w, 3) uint8 -> out (T, h, w, 3) float32 (whole numbers). Each block
    row is summed down the rows first (contiguous, so that the loop vectorises), then across."""
    num_frames, low_h, low_w = out.shape[:3]
    sums = np.empty(clean.shape[2] * 3, np.int32)
    scale = np.float32(1.0 / (LOW * LOW))
    for t in range(num_frames):
        for i in range(low_h):
            sums[:] = 0
            for y in range(LOW * i, LOW * (i + 1)):
                row = clean[t, y].reshape(-1)
                for k in range(sums.size):
                    sums[k] += row[k]
            means = out[t, i].reshape(-1)
            for j in range(low_w):
                for c in range(3):
                    total = 0
                    for x in range(LOW * j, LOW * (j + 1)):
                        total += sums[3 * x + c]
                    means[3 * j + c] = np.rint(np.float32(total) * scale)


@jit
def _splat_lens_drops(
    start, stop, alpha, view, rain, blurred, birth, cx, cy, radius, speed, blur, frame_time
):  # pragma: no cover
    """Frames [start, stop) of zero-filled alpha (T, H, W) and view (T, H, W, 3): every drop on
    the glass at the frame's time, composited "over" (a drop's matte a and view v:
    alpha <- a + (1 - a) alpha, premultiplied view likewise), then the view divided by alpha and
    blended into rain. Only the rows and columns the drops reach are visited."""
    _, height, width = alpha.shape
    low_h, low_w = blurred.shape[1], blurred.shape[2]
    ratio_y, ratio_x = low_h / height, low_w / width
    left = np.empty(height, np.int64)
    right = np.empty(height, np.int64)
    mattes = np.empty(width, np.float32)
    for t in range(start, stop):
        left[:] = width
        right[:] = -1
        now = t * frame_time
        for i in range(birth.size):
            if birth[i] > now:
                continue
            centre_y = cy[i] + speed[i] * (now - max(birth[i], 0.0))
            peak = 1.0 - math.exp(-radius[i] * radius[i] / (2.0 * blur * blur))
            reach = radius[i] + 2.0 * blur
            x0, x1 = max(int(cx[i] - reach), 0), min(int(cx[i] + reach) + 1, width - 1)
            y0, y1 = max(int(centre_y - reach), 0), min(int(centre_y + reach) + 1, height - 1)
            for y in range(y0, y1 + 1):
                dy = y - centre_y
                half = math.sqrt(max(reach * reach - dy * dy, 0.0))  # the disc's row
                xa, xb = max(int(cx[i] - half), x0), min(int(cx[i] + half) + 1, x1)
                left[y], right[y] = min(left[y], xa), max(right[y], xb)
                for x in range(xa, xb + 1):  # the matte first: a loop that vectorises
                    r = math.sqrt((x - cx[i]) * (x - cx[i]) + dy * dy)
                    e = min(max((reach - r) / (4.0 * blur), 0.0), 1.0)
                    mattes[x] = np.float32(peak * e * e * (3.0 - 2.0 * e))
                # upside down and shrunk around the centre, the nearest low-res pixel
                sy = int((centre_y - MAGNIFY * (y - centre_y) + 0.5) * ratio_y)
                sy = min(max(sy, 0), low_h - 1)
                for x in range(xa, xb + 1):
                    a = mattes[x]
                    if a <= 0.0:
                        continue
                    sx = int((cx[i] - MAGNIFY * (x - cx[i]) + 0.5) * ratio_x)
                    sx = min(max(sx, 0), low_w - 1)
                    keep = np.float32(1.0) - a
                    alpha[t, y, x] = a + keep * alpha[t, y, x]
                    for k in range(3):
                        v = a * TRANSMITTANCE * blurred[t, sy, sx, k]
                        view[t, y, x, k] = v + keep * view[t, y, x, k]
        for y in range(height):
            for x in range(left[y], right[y] + 1):
                a = alpha[t, y, x]
                if a > 0.0:
                    for k in range(3):
                        v = min(view[t, y, x, k] / a, np.float32(1.0))
                        view[t, y, x, k] = v
                        rain[t, y, x, k] = (np.float32(1.0) - a) * rain[t, y, x, k] + a * v
