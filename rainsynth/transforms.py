"""Rain as a data augmentation: ``RandomVideoRain`` renders new rain over a clip on every call.

    rain = RandomVideoRain(presets=("light", "heavy"), seed=0)
    rainy = rain(clip)     # (T, H, W, 3) numpy, or a torch tensor (T, C, H, W) / (C, T, H, W)

Every call is reproducible: its random draws are keyed by (seed, call number) and, inside a torch
``DataLoader`` worker, by the worker's seed too, so a run with the same seed, torch seed and worker
count gives the same clips. This module never imports torch: it only looks at a ``DataLoader``
worker when the caller has imported torch already.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from os import PathLike

import numpy as np

from rainsynth._jit import set_num_threads
from rainsynth.composite import render
from rainsynth.errors import ParamError
from rainsynth.presets import Preset, load_preset, sample_params

LAYOUTS = ("TCHW", "CTHW")
"""Axis orders accepted for torch tensors (numpy clips are always (T, H, W, 3))."""


def rain_over(
    frames: np.ndarray, preset: Preset, seed: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Render one clip's rain, drawn from `preset` with `seed`, over `frames`.

    Args:
        frames: (T, H, W, 3) uint8, or float in [0, 1].
        preset: a loaded preset.
        seed: non-negative; keys every draw (``sample_params(preset, seed=seed, ...)``).

    Returns:
        The rainy frames in the dtype of `frames` (uint8 rounded to nearest), and render's layers.
    """
    params = sample_params(preset, seed=seed, shape=frames.shape[:3])
    if frames.dtype == np.uint8:
        clip = render(frames, params, dtype=np.uint8)
        return clip.rain, clip.layers
    clip = render(frames, params)
    return clip.rain.astype(frames.dtype, copy=False), clip.layers


class RandomVideoRain:
    """Render new, temporally coherent rain over a video clip on each call.

    Args:
        presets: the presets to draw from, one per call, uniformly: names ("light", "heavy",
            "streaks"), TOML file paths or loaded ``Preset``s.
        p: probability of raining on a call; otherwise the clip comes back unchanged.
        seed: non-negative integer that makes the calls reproducible; None draws one from the
            operating system (a different run each time).
        layout: axis order of torch tensors: "TCHW" (frames first) or "CTHW" (channels first).
        worker_threads: threads rendering inside a torch ``DataLoader`` worker (the workers
            already run in parallel); None leaves ``rainsynth.set_num_threads`` alone.
        return_layers: also return the layers (``rainsynth.render``'s, numpy float32; an empty
            dict when it did not rain).

    Call ``t(clip)`` with a (T, H, W, 3) numpy array (uint8, or float in [0, 1]) or a torch tensor
    (uint8 or float in [0, 1], 3 channels, ``layout``, any device). The result has the type,
    dtype, shape, layout and device of the input, and is contiguous when the input is. The rain
    of call n is keyed by (seed, n) and, inside a ``DataLoader`` worker, by the worker's seed
    (``torch.utils.data.get_worker_info``), so each worker draws its own rain and a run with the
    same seeds and worker count repeats.
    """

    def __init__(
        self,
        presets: Sequence[str | PathLike | Preset] = ("light", "heavy"),
        p: float = 1.0,
        seed: int | None = None,
        *,
        layout: str = "TCHW",
        worker_threads: int | None = 1,
        return_layers: bool = False,
    ) -> None:
        if isinstance(presets, str | PathLike | Preset) or not presets:
            raise ParamError(f"presets must be a non-empty sequence of presets, got {presets!r}")
        if not 0.0 <= p <= 1.0:
            raise ParamError(f"p must be a probability in [0, 1], got {p!r}")
        if seed is None:
            seed = int(np.random.SeedSequence().entropy)
        if not isinstance(seed, int) or seed < 0:
            raise ParamError(f"seed must be a non-negative integer or None, got {seed!r}")
        if layout not in LAYOUTS:
            raise ParamError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        self.presets = [
            preset if isinstance(preset, Preset) else load_preset(preset) for preset in presets
        ]
        self.p = p
        self.seed = seed
        self.layout = layout
        self.worker_threads = worker_threads
        self.return_layers = return_layers
        self.calls = 0

    def __repr__(self) -> str:
        names = tuple(preset.name for preset in self.presets)
        return f"RandomVideoRain(presets={names}, p={self.p}, seed={self.seed})"

    def __call__(self, clip):
        """Rain over `clip` (see the class docstring); (clip, layers) with return_layers."""
        worker = _worker_seed()
        if worker is not None and self.worker_threads is not None:
            set_num_threads(self.worker_threads)
        key = [self.seed, self.calls] if worker is None else [self.seed, self.calls, worker]
        self.calls += 1
        rng = np.random.default_rng(key)
        if rng.random() >= self.p:
            return (clip, {}) if self.return_layers else clip
        preset = self.presets[rng.integers(len(self.presets))]
        seed = int(rng.integers(2**63))
        if isinstance(clip, np.ndarray):
            rain, layers = rain_over(clip, preset, seed)
        else:
            rain, layers = self._rain_over_tensor(clip, preset, seed)
        return (rain, layers) if self.return_layers else rain

    def _rain_over_tensor(self, clip, preset: Preset, seed: int):
        """rain_over for a torch tensor in self.layout: same dtype, layout and device back,
        contiguous when `clip` is (else a view of channel-last frames, like
        ``torch.from_numpy(frames).permute(0, 3, 1, 2)``)."""
        torch = sys.modules.get("torch")
        if torch is None or not isinstance(clip, torch.Tensor):
            raise TypeError(f"expected a numpy array or a torch tensor, got {type(clip).__name__}")
        channels = self.layout.index("C")
        if clip.ndim != 4 or clip.shape[channels] != 3:
            raise ParamError(
                f"expected a {self.layout} tensor with 3 channels, got shape {tuple(clip.shape)}"
            )
        order = (0, 2, 3, 1) if self.layout == "TCHW" else (1, 2, 3, 0)
        frames = clip.detach().permute(*order).cpu()
        if frames.is_floating_point():
            frames = frames.float()
        rain, layers = rain_over(frames.numpy(), preset, seed)
        back = (0, 3, 1, 2) if self.layout == "TCHW" else (3, 0, 1, 2)
        rain = torch.from_numpy(rain).permute(*back).to(clip.device, clip.dtype)
        return (rain.contiguous() if clip.is_contiguous() else rain), layers


def _worker_seed() -> int | None:
    """The seed of the torch DataLoader worker running this code; None outside a worker or when
    torch has not been imported."""
    if "torch" not in sys.modules:
        return None
    from torch.utils.data import get_worker_info

    info = get_worker_info()
    return None if info is None else info.seed
