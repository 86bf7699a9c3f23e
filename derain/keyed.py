"""Keyed order: which clip, window, crop, flips and reversal each training sample gets.

The sample at global position p = iteration * global_batch + rank * batch + k is clip
``perm(seed, epoch)[p % n]`` with epoch = p // n. Every draw comes from its own :func:`stream`:
the window start from key p, "window"; the crop corner (y0, then x0) and the flips (horizontal,
then vertical) from key p, "augment"; the temporal reversal from key = iteration, "reverse".
Nothing depends on an iterator's state, so a run resumed at iteration i sees exactly the
batches it would have seen, and DDP ranks split each global batch without overlap.

Augmentations and the flow (backward flow: frame_t(x, y) ~= frame_{t-1}(x + dx, y + dy)): the
crop is the same window in every frame, layer and flow; "rain_context" is taken from the whole
frames first and only flipped and reversed; "rows" are the crop's rows in the frame as flipped.
A flip mirrors the flow alike and negates dx (horizontal) or dy (vertical; off by default: rain
falls down). The backward flow of a reversed clip is the forward flow of the original, which
datasets do not store, so a reversed sample has no "flow"; reversal is drawn once per
iteration, so a batch is either all forward, with flow, or all reversed, without.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from derain.context import frame_context, row_positions
from rainsynth.errors import RainsynthError

LIGHT_KEYS = ("A", "M")


class SampleKey(NamedTuple):
    """Which clip a sample reads and the keys of its randomness."""

    index: int  # clip index in the dataset
    epoch: int  # pass over the dataset this sample belongs to
    position: int  # global sample position: keys the window, crop and flips
    iteration: int  # training iteration: keys the temporal reversal


def stream(seed: int, *keys: int | str) -> np.random.Generator:
    """The random stream of one draw: ``numpy.random.default_rng([seed, *keys])``, the last key
    a name, as zlib.crc32 of its UTF-8 bytes."""
    *keys, name = keys
    return np.random.default_rng([seed, *keys, zlib.crc32(name.encode("utf-8"))])


class KeyedBatchSampler(Sampler[list[SampleKey]]):
    """Batches of SampleKeys for iterations ``start`` .. ``stop - 1`` of one rank: n clips in
    the dataset (its ``num_clips``), ``batch_size`` of them per rank; rank / world: DDP rank and
    world size."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int, rank=0, world=1):
        if n < 1:
            raise ValueError("KeyedBatchSampler needs at least one clip")
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def keys(self, iteration: int) -> list[SampleKey]:
        """The keys of this rank's share of the global batch of ``iteration``."""
        first = (iteration * self.world + self.rank) * self.batch_size
        out = []
        for position in range(first, first + self.batch_size):
            epoch = position // self.n
            if epoch not in self._orders:
                self._orders = {epoch: stream(self.seed, epoch, "order").permutation(self.n)}
            index = int(self._orders[epoch][position % self.n])
            out.append(SampleKey(index, epoch, position, iteration))
        return out

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for iteration in range(self.start, self.stop):
            yield self.keys(iteration)


class Augment(NamedTuple):
    """Which random flips/reversal are allowed, and whether to add "rain_context" (for a model
    with ModelConfig.frame_context) and "rows" (ModelConfig.row_position)."""

    hflip: bool = False
    vflip: bool = False
    reverse: bool = False
    context: bool = False
    rows: bool = False


Arrays = tuple[dict[str, np.ndarray], np.ndarray | None]
"""A loaded clip window: arrays maps "rain", "clean" to (T,H,W,3), "S", "U", "beta", "alpha" to
(T,H,W,1) and "A", "M" to (T,1,1,3) (any subset with "clean"), all float32 numpy; and the flow,
(T-1,H,W,2) or None."""


class KeyedClips(Dataset):
    """Base of the datasets: subclasses load a clip window (``load``), this cuts and augments it.
    frames: T; crop: (H, W), or None for the whole frame; augment: None for none."""

    def __init__(
        self, frames: int, crop: tuple[int, int] | None, augment: Augment | None, seed: int
    ):
        self.frames, self.seed = frames, seed
        self.crop = None if crop is None else tuple(crop)
        self.augment = augment or Augment()

    @property
    def num_clips(self) -> int:
        """Clips the keys' ``index`` ranges over (KeyedBatchSampler's n)."""
        raise NotImplementedError

    def load(self, key: SampleKey) -> Arrays:
        raise NotImplementedError

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        """The trainer's sample of ``key``: clip ``key.index``, cut and augmented as keyed."""
        key = SampleKey(*key) if not isinstance(key, SampleKey) else key
        reverse = self.augment.reverse and bool(
            stream(self.seed, key.iteration, "reverse").random() < 0.5
        )
        return self.cut(self.load(key), key.position, reverse)

    def cut(self, loaded: Arrays, position: int, reverse: bool) -> dict[str, torch.Tensor]:
        """Crop, flip (drawn from key ``position``) and reverse a loaded window; as tensors."""
        arrays, flow = loaded
        rng = stream(self.seed, position, "augment")
        arrays, flow = augment_clip(arrays, flow, self.crop, self.augment, rng, reverse)
        sample = {  # (T,H,W,C) -> (T,C,H,W) float32; flow (T-1,H,W,2) -> (T-1,2,H,W)
            name: torch.from_numpy(np.ascontiguousarray(value.transpose(0, 3, 1, 2), np.float32))
            for name, value in arrays.items()
        }
        if flow is not None:
            sample["flow"] = torch.from_numpy(np.ascontiguousarray(flow.transpose(0, 3, 1, 2)))
        return sample


def augment_clip(
    arrays: dict[str, np.ndarray],
    flow: np.ndarray | None,
    crop: tuple[int, int] | None,
    augment: Augment,
    rng: np.random.Generator,
    reverse: bool,
) -> Arrays:
    """Crop and flips (drawn from ``rng``: y0, x0, hflip, vflip), then reversal when
    ``reverse``, of a loaded window (:data:`Arrays`); crop: (H, W), None for the whole frame."""
    t, h, w = arrays["clean"].shape[:3]
    ch, cw = crop or (h, w)
    if ch > h or cw > w:
        raise RainsynthError(f"crop {ch}x{cw} is larger than the clip's {h}x{w} frames")
    if augment.context and "rain" in arrays:
        frames = torch.from_numpy(np.ascontiguousarray(arrays["rain"])).permute(0, 3, 1, 2)
        context = frame_context(frames).permute(0, 2, 3, 1).numpy()
        arrays = dict(arrays, rain_context=context)
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    hflip = augment.hflip and bool(rng.random() < 0.5)
    vflip = augment.vflip and bool(rng.random() < 0.5)
    out = {}
    for name, value in arrays.items():
        if name not in LIGHT_KEYS:
            value = value if name == "rain_context" else value[:, y0 : y0 + ch, x0 : x0 + cw]
            value = value[:, :, ::-1] if hflip else value
            value = value[:, ::-1] if vflip else value
        out[name] = value[::-1] if reverse else value
    if augment.rows:
        # a vertically flipped crop is rows h - y0 - ch .. h - y0 - 1 of the flipped frame
        positions = row_positions(h - y0 - ch if vflip else y0, ch, h).numpy()
        out["rows"] = np.broadcast_to(positions[None, :, None, None], (t, ch, 1, 1))
    if flow is not None and not reverse:
        flow = flow[:, y0 : y0 + ch, x0 : x0 + cw]
        if hflip:
            flow = flow[:, :, ::-1] * np.array([-1.0, 1.0], np.float32)
        if vflip:
            flow = flow[:, ::-1] * np.array([1.0, -1.0], np.float32)
    return out, None if reverse else flow
