"""``RandomVideoRain`` as an albumentations transform, for the frames of one clip (``images=``).

albumentations (2.0 or later) is not a dependency of rainsynth; importing it imports torch:

    import albumentations as A
    from rainsynth.albumentations_rain import AlbumentationsVideoRain

    pipeline = A.ReplayCompose([AlbumentationsVideoRain(presets=("heavy",)), A.HorizontalFlip()])
    out = pipeline(images=frames)    # frames: (T, H, W, 3) uint8 / float in [0, 1], or a list
    same = A.ReplayCompose.replay(out["replay"], images=frames)["images"]   # the same rain

The preset and rain seed of each call are drawn in ``get_params`` from albumentations' random
state (``Compose(seed=...)``), so ``ReplayCompose`` records them and a replay renders the same rain.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rainsynth.compat import require
from rainsynth.presets import load_preset
from rainsynth.transforms import rain_over

A = require("albumentations")


class AlbumentationsVideoRain(A.ImageOnlyTransform):
    """Rain over a clip given as ``images=`` (T frames, (H, W, 3) each); an ``image=`` is a
    one-frame clip.

    Args:
        presets: preset names or TOML file paths, one drawn per call, uniformly.
        p: probability of raining on a call.
    """

    class InitSchema(A.core.transforms_interface.BaseTransformInitSchema):
        presets: tuple[str, ...]

    def __init__(self, presets: tuple[str, ...] = ("light", "heavy"), p: float = 1.0) -> None:
        super().__init__(p=p)
        self.presets = tuple(str(preset) for preset in presets)
        self._loaded = {preset: load_preset(preset) for preset in self.presets}

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("presets",)

    def get_params(self) -> dict[str, Any]:
        """The preset and the rain seed of this call (recorded by ReplayCompose)."""
        return {
            "preset": self.py_random.choice(self.presets),
            "seed": self.py_random.getrandbits(63),
        }

    def apply_to_images(self, images: np.ndarray, preset: str, seed: int, **params) -> np.ndarray:
        """(T, H, W, 3) frames -> the same frames under rain, same dtype."""
        return rain_over(np.asarray(images), self._loaded[preset], seed)[0]

    def apply(self, img: np.ndarray, preset: str, seed: int, **params) -> np.ndarray:
        """(H, W, 3) frame -> the frame under rain (a one-frame clip)."""
        return self.apply_to_images(img[None], preset, seed)[0]
