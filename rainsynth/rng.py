"""Keyed random streams: every draw is keyed by (seed, clip, frame, layer).

Output therefore never depends on the order clips or frames are rendered in, on worker count or
on thread count.
"""

from __future__ import annotations

import zlib

import numpy as np

CLIP_LEVEL = 2**32 - 1
"""Frame index used for draws that belong to the whole clip (per-clip parameters, drift paths)."""


def layer_key(name: str) -> int:
    """A stable 32-bit integer for a layer name (CRC-32; Python's ``hash`` is salted per process)."""
    return zlib.crc32(name.encode("utf-8"))


def stream(seed: int, clip: int, frame: int, layer: str) -> np.random.Generator:
    """The random stream of one (seed, clip, frame, layer); ``frame=CLIP_LEVEL`` for clip-wide draws."""
    if seed < 0 or clip < 0:
        raise ValueError(
            f"seed and clip must be non-negative integers, got seed={seed}, clip={clip}"
        )
    return np.random.default_rng([seed, clip, frame, layer_key(layer)])
