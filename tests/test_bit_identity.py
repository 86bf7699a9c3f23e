"""Every pixel preset and seed renders the same bytes as before the physical parameterisation.

The digests below were computed on the code before rainsynth.physics existed; a change that moves
any of them changes datasets that users have already built. ``python tests/test_bit_identity.py``
prints the table (run it on commit 9a65efb to re-pin on a CPU whose vector maths rounds otherwise).
They hold for the NumPy release they were computed with: another release's float32 maths (exp,
sin) can round a value by one unit in the last place (NumPy 2.2 on Python 3.10 moves 0.1% of the
rain values of the first case by 6e-8), so under another release these tests are skipped.
"""

from __future__ import annotations

import hashlib
import io
import json

import cv2
import numpy as np
import pytest
import skimage.data

import rainsynth
from rainsynth import dataset

PINNED_NUMPY = "2.4"
pytestmark = pytest.mark.skipif(
    not np.__version__.startswith(PINNED_NUMPY + "."),
    reason=f"digests computed with NumPy {PINNED_NUMPY}.x, this is {np.__version__}",
)

CASES = [
    (preset, seed, clip)
    for preset in ("light", "heavy", "streaks", "dry")
    for seed, clip in ((0, 0), (11, 4), (3, 17))
]


def photo_clip(num_frames: int, height: int, width: int) -> np.ndarray:
    """A static clip of a real photo: (T, H, W, 3) uint8."""
    frame = cv2.resize(skimage.data.astronaut(), (width, height), interpolation=cv2.INTER_AREA)
    return np.repeat(frame[None], num_frames, axis=0)


def rendered_digest(clean: np.ndarray, params: rainsynth.RainParams, **kwargs) -> str:
    """sha256 of the rain, every layer (sorted by name), the params.json text and the
    layers.npz bytes of one rendered clip."""
    clip = rainsynth.render(clean, params, **kwargs)
    digest = hashlib.sha256(clip.rain.tobytes())
    for name in sorted(clip.layers):
        digest.update(name.encode() + clip.layers[name].tobytes())
    digest.update(json.dumps(params.to_dict(), indent=2, sort_keys=True).encode())
    buffer = io.BytesIO()
    dataset.write_npz(buffer, dataset.encode_layers(clip.layers))
    digest.update(buffer.getvalue())
    return digest.hexdigest()[:16]


def case_digest(preset: str, seed: int, clip: int) -> str:
    clean = photo_clip(4, 72, 120)
    params = rainsynth.sample_params(preset, seed=seed, shape=clean.shape[:3], clip=clip)
    return rendered_digest(clean, params)


def benchmark_digest() -> str:
    """The heavy clip of benchmarks/synth_speed.py's size, from float input, constant depth."""
    clean = photo_clip(7, 256, 448).astype(np.float32) / np.float32(255.0)
    params = rainsynth.sample_params("heavy", seed=0, shape=clean.shape[:3])
    return rendered_digest(clean, params) + rendered_digest(clean, params, depth=0.5)


EXPECTED: dict[tuple[str, int, int], str] = {
    ("light", 0, 0): "37370c46c885f75a",
    ("light", 11, 4): "3887fbbec1e967a2",
    ("light", 3, 17): "1c9ce2e4dc89252d",
    ("heavy", 0, 0): "ac8f7b63e6d848e2",
    ("heavy", 11, 4): "5a3ff1b3b2ea3726",
    ("heavy", 3, 17): "b17b7b304c4dca58",
    ("streaks", 0, 0): "124cf6e49f1293e5",
    ("streaks", 11, 4): "e687f4aef109a377",
    ("streaks", 3, 17): "aefe28f3fa06f888",
    ("dry", 0, 0): "04234fe84367d6e9",
    ("dry", 11, 4): "33139a3d418717cd",
    ("dry", 3, 17): "4bdf94ea6e99ea37",
}
EXPECTED_BENCHMARK = "1138a5851df2c0dabb441a05311b7a9f"


@pytest.mark.parametrize(("preset", "seed", "clip"), CASES)
def test_pixel_presets_render_the_same_bytes_as_before(preset, seed, clip):
    assert case_digest(preset, seed, clip) == EXPECTED[(preset, seed, clip)]


def test_benchmark_clip_renders_the_same_bytes_as_before():
    assert benchmark_digest() == EXPECTED_BENCHMARK


if __name__ == "__main__":  # prints the table above
    for case in CASES:
        print(f"    {case!r}: {case_digest(*case)!r},")
    print(repr(benchmark_digest()))
