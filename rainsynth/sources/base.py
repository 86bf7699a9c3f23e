"""The clip-source interface: references, sequences, windows, image reading and resizing.

A source lists its clips cheaply as :class:`SequenceRef` and decodes one on demand as a
:class:`Sequence`. Flow follows the project convention: BACKWARD flow, ``flow[t-1]`` at pixel
(x, y) of frame t points to where that content is in frame t-1, so
``frame_t(x, y) ~= frame_{t-1}(x + dx, y + dy)``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from rainsynth.errors import SourceError

RESIZE_MODES = ("crop", "scale")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@dataclass(frozen=True)
class SequenceRef:
    """One clip of a source, listed without decoding it.

    source: "vimeo90k" | "videos" | "frames" | "builtin".
    key: unique, stable, human-readable id within the source ("00001/0001", "bikes.mp4@0014").
    group: the source video the clip comes from; train and test never share a group.
    subset: "train" / "test" when the source prescribes it (Vimeo-90K lists), else None.
    """

    source: str
    key: str
    group: str
    subset: str | None = None


@dataclass(frozen=True)
class Sequence:
    """One decoded clip.

    frames: (T, H, W, 3) uint8 RGB.
    flow: (T-1, H, W, 2) float32 backward flow in pixels (dx, dy), exact; None when unknown.
    files: the source files read (for manifests and error messages).
    """

    ref: SequenceRef
    frames: np.ndarray
    flow: np.ndarray | None
    files: tuple[str, ...]


class Source(Protocol):
    """What every clip source offers."""

    name: str

    def sequences(self) -> list[SequenceRef]:
        """All clips, in a deterministic order, without decoding frames."""
        ...

    def read(self, ref: SequenceRef) -> Sequence:
        """Decode one clip; raises SourceError naming the file on unreadable or truncated input."""
        ...

    def describe(self) -> dict:
        """JSON-able description (source name, root, options) for the manifest."""
        ...


@dataclass(frozen=True)
class Options:
    """Options shared by all sources (validated by :func:`check_options`).

    frames: clip length T; stride: step between window starts (None = frames, no overlap);
    size: (H, W) output size or None for native; resize: "crop" or "scale"; seed; count.
    """

    frames: int = 7
    stride: int | None = None
    size: tuple[int, int] | None = None
    resize: str = "crop"
    seed: int = 0
    count: int | None = None

    @property
    def step(self) -> int:
        """Window stride in frames."""
        return self.stride if self.stride is not None else self.frames

    def to_dict(self) -> dict:
        """JSON-able options."""
        return {
            "frames": self.frames,
            "stride": self.step,
            "size": list(self.size) if self.size is not None else None,
            "resize": self.resize,
            "seed": self.seed,
            "count": self.count,
        }


MAX_FRAMES = 1000
"""Longest clip, frames."""
MAX_SIDE = 4096
"""Largest frame side of a clip, px (4K video fits)."""
MAX_PIXELS = 2**27
"""Most pixels (frames x height x width) of one clip: 7 frames of 4096x4096, 1000 of 256x448."""
MAX_COUNT = 100_000
"""Most synthetic clips of the builtin source (count)."""


def check_options(options: Options) -> Options:
    """Validate the shared options; raises SourceError naming the bad value and what is allowed."""
    if not isinstance(options.frames, int) or not 2 <= options.frames <= MAX_FRAMES:
        raise SourceError(
            f"frames must be an integer from 2 to {MAX_FRAMES} (clip length), got {options.frames!r}"
        )
    if options.stride is not None and (not isinstance(options.stride, int) or options.stride < 1):
        raise SourceError(f"stride must be an integer >= 1 or None, got {options.stride!r}")
    if options.size is not None:
        size = tuple(options.size)
        if len(size) != 2 or not all(isinstance(v, int) and 8 <= v <= MAX_SIDE for v in size):
            raise SourceError(
                f"size must be (H, W) with integers from 8 to {MAX_SIDE}, got {options.size!r}"
            )
        if options.frames * size[0] * size[1] > MAX_PIXELS:
            raise SourceError(
                f"a clip of {options.frames} frames of {size[0]}x{size[1]} has more than "
                f"{MAX_PIXELS} pixels; use fewer frames or a smaller size"
            )
        options = Options(**{**options.__dict__, "size": size})
    if options.resize not in RESIZE_MODES:
        raise SourceError(f"resize must be one of {RESIZE_MODES}, got {options.resize!r}")
    if not isinstance(options.seed, int) or options.seed < 0:
        raise SourceError(f"seed must be a non-negative integer, got {options.seed!r}")
    if options.count is not None and (
        not isinstance(options.count, int) or not 0 <= options.count <= MAX_COUNT
    ):
        raise SourceError(
            f"count must be an integer from 0 to {MAX_COUNT} or None, got {options.count!r}"
        )
    return options


def window_starts(n_frames: int, frames: int, step: int) -> range:
    """First-frame indices of the windows of `frames` frames, `step` apart, inside `n_frames`."""
    return range(0, max(n_frames - frames + 1, 0), step)


def natural_key(name: str) -> list:
    """Sort key that orders "frame2" before "frame10"."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def read_image(path: str, out: np.ndarray | None = None) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB, into `out` when given (same shape).

    Raises SourceError naming the file when it is missing, truncated or not an image.
    """
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        what = "is missing" if not os.path.exists(path) else "is unreadable (truncated or corrupt?)"
        raise SourceError(f"image {path} {what}")
    if out is not None and out.shape != image.shape:
        raise SourceError(
            f"image {path} is {image.shape[1]}x{image.shape[0]}, but the other frames of its "
            f"clip are {out.shape[1]}x{out.shape[0]}; pass a size to resize them all"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=out)


def read_images(paths) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB from image files of one size (read_image's errors, and one naming
    a frame whose size differs from the first's)."""
    first = read_image(paths[0])
    frames = np.empty((len(paths), *first.shape), np.uint8)
    frames[0] = first
    for i, path in enumerate(paths[1:], 1):
        read_image(path, out=frames[i])
    return frames


def fit_frame(frame: np.ndarray, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    """Resize one (h, w, 3) uint8 frame to size (H, W).

    "crop": scale so the frame covers (H, W), then cut the centre; "scale": plain resize
    (aspect ratio not kept). None or the native size returns the frame unchanged.
    """
    h, w = frame.shape[:2]
    if size is None or (h, w) == tuple(size):
        return frame
    height, width = size
    if mode == "scale":
        return _resize(frame, width, height)
    scale = max(height / h, width / w)
    sw, sh = max(width, round(w * scale)), max(height, round(h * scale))
    scaled = _resize(frame, sw, sh)
    y0, x0 = (sh - height) // 2, (sw - width) // 2
    return scaled[y0 : y0 + height, x0 : x0 + width]


def _resize(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """cv2.resize with area averaging when shrinking and bilinear when enlarging."""
    h, w = frame.shape[:2]
    shrink = width * height < w * h
    return cv2.resize(
        frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    )


def fit_frames(frames: np.ndarray, size: tuple[int, int] | None, mode: str) -> np.ndarray:
    """Resize (T, h, w, 3) uint8 frames to (T, H, W, 3) with :func:`fit_frame`."""
    if size is None or frames.shape[1:3] == tuple(size):
        return frames
    return np.stack([fit_frame(frame, size, mode) for frame in frames])
