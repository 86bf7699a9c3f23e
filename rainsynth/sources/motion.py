"""Camera motion over a still photo, with its exact optical flow.

A camera is a similarity map from output pixel p = (x, y) to photo point q (pixel centres at
integers, like OpenCV):

    q = c_t + R(theta_t) (p - o) / s_t           o = ((W - 1) / 2, (H - 1) / 2)

written as a 3x3 matrix M_t. Frame t is the photo sampled at M_t p (inverse mapping, bilinear).
Frame t at p and frame t-1 at p' show the same photo point when M_{t-1} p' = M_t p, so the
backward flow of the project convention (frame_t(p) = frame_{t-1}(p + flow)) is

    flow_t(p) = (M_{t-1}^{-1} M_t - I) p                                   (affine in p)

Parallax adds a foreground layer: a region of the same photo (a disc-like ellipse or a band)
shown at a larger scale and moving at another velocity u, composited over the background with
an anti-aliased matte. Its flow is -u; each pixel takes the flow of the layer visible there
(matte >= 1/2).

Kinds: "pan", "zoom" (in or out), "rotate", "parallax".
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

KINDS = ("pan", "zoom", "rotate", "parallax")
MARGIN = 2.0
"""Photo pixels kept clear of the photo border by every frame's footprint."""
MIN_SCALE = 1.3
"""Least magnification of the photo. Resampling a sharp photo near 1:1 leaves bilinear residuals
of a few /255 between a frame and its flow-warped neighbour; magnified frames are band-limited
enough that the warp reproduces them to about 1/255."""


@dataclass(frozen=True)
class Foreground:
    """A moving layer: cameras (T, 3, 3) output->photo, matte shape and centre path.

    shape: "ellipse" (radii (rx, ry) in output pixels) or "band" (half-width in rx, across
    axis 0 = a vertical band moving in x, axis 1 = a horizontal band moving in y).
    centres: (T, 2) float64 matte centre in output pixels per frame.
    """

    cameras: np.ndarray
    shape: str
    radii: tuple[float, float]
    axis: int
    centres: np.ndarray

    def matte(self, t: int, size: tuple[int, int]) -> np.ndarray:
        """(H, W) float32 coverage in [0, 1] of frame t: 1/2 on the outline, 1 px ramp."""
        height, width = size
        cx, cy = self.centres[t]
        x = np.arange(width, dtype=np.float32) - np.float32(cx)
        y = np.arange(height, dtype=np.float32)[:, None] - np.float32(cy)
        if self.shape == "band":
            offset = np.abs(x)[None, :] if self.axis == 0 else np.abs(y)
            distance = offset - np.float32(self.radii[0])
        else:
            rx, ry = (np.float32(r) for r in self.radii)
            u, v = x[None, :] / rx, y / ry
            rho = np.sqrt(u * u + v * v)
            gradient = np.sqrt((u / rx) ** 2 + (v / ry) ** 2) / np.maximum(rho, 1e-6)
            distance = (rho - 1) / np.maximum(gradient, 1e-6)  # signed distance, first order
        matte = np.clip(0.5 - distance, 0.0, 1.0)
        return np.broadcast_to(matte, size).astype(np.float32)


@dataclass(frozen=True)
class Motion:
    """A synthetic clip's motion: background cameras (T, 3, 3) and an optional foreground."""

    kind: str
    cameras: np.ndarray
    foreground: Foreground | None = None


def camera(centre: np.ndarray, scale: float, angle: float, size: tuple[int, int]) -> np.ndarray:
    """3x3 matrix of q = centre + R(angle) (p - o) / scale (angle in radians)."""
    height, width = size
    origin = np.array([(width - 1) / 2, (height - 1) / 2])
    cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
    linear = np.array([[cos, -sin], [sin, cos]])
    matrix = np.eye(3)
    matrix[:2, :2] = linear
    matrix[:2, 2] = centre - linear @ origin
    return matrix


def affine_flow(previous: np.ndarray, current: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 2) float32 backward flow (M_{t-1}^{-1} M_t - I) p between two cameras."""
    height, width = size
    g = np.linalg.solve(previous, current) - np.eye(3)
    x = np.arange(width, dtype=np.float64)[None, :]
    y = np.arange(height, dtype=np.float64)[:, None]
    flow = np.empty((height, width, 2), np.float32)
    flow[..., 0] = g[0, 0] * x + g[0, 1] * y + g[0, 2]
    flow[..., 1] = g[1, 0] * x + g[1, 1] * y + g[1, 2]
    return flow


def sample_motion(
    kind: str,
    rng: np.random.Generator,
    photo_shape: tuple[int, int],
    size: tuple[int, int],
    frames: int,
) -> Motion:
    """Draw one clip's motion of `kind` over a photo of photo_shape (h, w), output size (H, W).

    Speeds are in output pixels per frame: pans 1.5-6, zooms 1-3.5 % per frame, rotations
    0.5-2 degrees per frame, parallax background 1-3 with a foreground 2-4x faster.
    Every footprint stays inside the photo and the photo is magnified at least MIN_SCALE.
    """
    if kind not in KINDS:
        raise ValueError(f"motion kind must be one of {KINDS}, got {kind!r}")
    t = np.arange(frames, dtype=np.float64) - (frames - 1) / 2  # centred time
    scale = np.full(frames, rng.uniform(MIN_SCALE, 1.25 * MIN_SCALE))
    angle = np.zeros(frames)
    velocity = np.zeros(2)  # background camera velocity, output px / frame (content moves -v)
    if kind in ("pan", "parallax"):
        heading = rng.uniform(0, 2 * np.pi)
        speed = rng.uniform(1.5, 6.0) if kind == "pan" else rng.uniform(1.0, 3.0)
        velocity = speed * np.array([np.cos(heading), np.sin(heading)])
    elif kind == "zoom":
        rate = rng.uniform(1.01, 1.035) ** rng.choice([-1.0, 1.0])
        scale = scale * rate**t
        velocity = rng.uniform(-0.5, 0.5, 2)
    else:
        angle = np.radians(rng.choice([-1.0, 1.0]) * rng.uniform(0.5, 2.0)) * t
    offsets = np.cumsum(np.vstack([np.zeros(2), velocity / scale[1:, None]]), axis=0)
    offsets -= offsets[(frames - 1) // 2]
    scale, offsets = _fit(scale, angle, offsets, photo_shape, size)
    centre = _place(rng, angle, scale, offsets, photo_shape, size)
    cameras = np.stack(
        [camera(centre + o, s, a, size) for o, s, a in zip(offsets, scale, angle, strict=True)]
    )
    foreground = None
    if kind == "parallax":
        foreground = _foreground(rng, velocity, scale[0], photo_shape, size, t)
    return Motion(kind, cameras, foreground)


def _footprint(angle, scale, offsets, size) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (low (2,), high (2,)) of all frames' output corners in photo coordinates."""
    height, width = size
    corners = np.array([[0, 0], [width - 1, 0], [0, height - 1], [width - 1, height - 1]])
    points = [
        (camera(o, s, a, size) @ np.c_[corners, np.ones(4)].T)[:2].T
        for o, s, a in zip(offsets, scale, angle, strict=True)
    ]
    points = np.concatenate(points)
    return points.min(axis=0), points.max(axis=0)


def _fit(scale, angle, offsets, photo_shape, size):
    """Zoom in (scale *= f, offsets /= f) until the footprint fits the photo, scale >= MIN_SCALE."""
    low, high = _footprint(angle, scale, offsets, size)
    room = np.array([photo_shape[1], photo_shape[0]], np.float64) - 1 - 2 * MARGIN
    factor = max(1.0, *((high - low) / room), MIN_SCALE / scale.min()) * 1.0001
    return scale * factor, offsets / factor


def _place(rng, angle, scale, offsets, photo_shape, size) -> np.ndarray:
    """A random footprint position inside the photo: the middle frame's centre (2,)."""
    low, high = _footprint(angle, scale, offsets, size)
    limit = np.array([photo_shape[1], photo_shape[0]], np.float64) - 1 - MARGIN
    return rng.uniform(MARGIN - low, limit - high)


def _foreground(rng, velocity, scale, photo_shape, size, t) -> Foreground:
    """A parallax layer: a band or an ellipse of the photo moving 2-4x faster than the scene.

    The layer shows the photo magnified by 1.1-1.5x the background's scale (it is nearer);
    a band spans the frame and moves across it, an ellipse moves with the scene's direction.
    """
    height, width = size
    content = -rng.uniform(2.0, 4.0) * velocity  # foreground content velocity, output px/frame
    fg_scale = scale * rng.uniform(1.1, 1.5)
    mid = np.array([width, height]) * rng.uniform(0.3, 0.7, 2)
    if rng.random() < 0.5:
        axis = 0 if abs(velocity[0]) >= abs(velocity[1]) else 1  # 0: vertical band, moves in x
        length = size[axis]  # the band spans the frame along its length: that much photo needed
        fg_scale = max(fg_scale, (length + 2 * MARGIN) / (photo_shape[axis] - 1 - 2 * MARGIN))
        half = rng.uniform(0.06, 0.14) * size[1 - axis]
        motion = np.zeros(2)
        motion[axis] = content[axis]
        mid[1 - axis] = (length - 1) / 2
        radii, shape = (half, half), "band"
        reach = np.empty(2)  # photo pixels the layer needs around its anchor, (x, y)
        reach[axis], reach[1 - axis] = (half + 1) / fg_scale, (length + 1) / 2 / fg_scale
    else:
        axis = 0
        rx = rng.uniform(0.12, 0.25) * width
        radii, shape, motion = (rx, rx * rng.uniform(0.6, 1.2)), "ellipse", content
        reach = (np.array(radii) + 1) / fg_scale
    centres = mid + t[:, None] * motion
    low = MARGIN + reach
    high = np.array([photo_shape[1], photo_shape[0]]) - 1 - MARGIN - reach
    anchor = rng.uniform(low, np.maximum(low, high))  # photo point shown at the matte centre
    cameras = np.stack([_translated(anchor, fg_scale, centre) for centre in centres])
    return Foreground(cameras, shape, (float(radii[0]), float(radii[1])), axis, centres)


def _translated(anchor: np.ndarray, scale: float, centre: np.ndarray) -> np.ndarray:
    """3x3 matrix of q = anchor + (p - centre) / scale."""
    matrix = np.eye(3)
    matrix[0, 0] = matrix[1, 1] = 1 / scale
    matrix[:2, 2] = anchor - centre / scale
    return matrix


def render(
    photo: np.ndarray, motion: Motion, size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Frames (T, H, W, 3) uint8 and exact backward flow (T-1, H, W, 2) float32 of a motion."""
    height, width = size
    frames = np.empty((len(motion.cameras), height, width, 3), np.uint8)
    flow = np.empty((len(motion.cameras) - 1, height, width, 2), np.float32)
    for t, matrix in enumerate(motion.cameras):
        _sample(photo, matrix, size, out=frames[t])
        if t > 0:
            flow[t - 1] = affine_flow(motion.cameras[t - 1], matrix, size)
    if motion.foreground is not None:
        _composite(photo, motion.foreground, size, frames, flow)
    return frames, flow


def _sample(photo: np.ndarray, matrix: np.ndarray, size: tuple[int, int], out=None) -> np.ndarray:
    """The photo sampled at matrix @ p for every output pixel p (bilinear, reflected border)."""
    height, width = size
    return cv2.warpAffine(
        photo,
        matrix[:2],
        (width, height),
        dst=out,
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )


def _composite(photo, foreground: Foreground, size, frames, flow) -> None:
    """Matte the foreground layer over the frames and give its pixels its flow (in place)."""
    for t, matrix in enumerate(foreground.cameras):
        matte = foreground.matte(t, size)
        rows, cols = np.nonzero(matte.any(axis=1))[0], np.nonzero(matte.any(axis=0))[0]
        if rows.size == 0:
            continue
        box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        corner = np.eye(3)
        corner[:2, 2] = cols[0], rows[0]
        box_size = (rows[-1] + 1 - rows[0], cols[-1] + 1 - cols[0])
        layer = _sample(photo, matrix @ corner, box_size).astype(np.float32)
        alpha = matte[box][..., None]
        background = frames[t][box].astype(np.float32)
        frames[t][box] = np.rint(background + alpha * (layer - background)).astype(np.uint8)
        if t > 0:
            step = foreground.centres[t] - foreground.centres[t - 1]
            visible = matte >= 0.5
            flow[t - 1][visible] = (-step).astype(np.float32)
