"""Training data: clips from built datasets or rendered on the fly, in a keyed order.

Order: the sample at global position p = iteration * global_batch + rank * batch + k is clip
``perm(seed, epoch)[p % n]`` with epoch = p // n, and its crop and flips are drawn from a stream
keyed by (seed, p). Nothing depends on an iterator's state, so a run resumed at iteration i sees
exactly the batches it would have seen, and DDP ranks split each global batch without overlap
(a DistributedSampler with keyed order). :class:`KeyedBatchSampler` yields the keys; the
datasets below map a :class:`SampleKey` to a sample.

A sample is a dict of float32 tensors (T frames, crop H x W):
    "O" (T,3,H,W) rain, "B" (T,3,H,W) clean, "S", "U", "beta", "alpha" (T,1,H,W),
    "A", "M" (T,3,1,1), and "flow" (T-1,2,H,W) backward flow when the clip's flow is known;
    samples augmented for a model with ModelConfig.frame_context also "O_context" (T,3,64,64),
    derain.context.frame_context of the whole rain frames the crop was cut from (the per-frame
    heads read it: a crop alone hides the veil), and samples for a model with
    ModelConfig.row_position "rows" (T,1,H,1), the position of each crop row in its whole frame
    (derain.context.row_positions).
:func:`collate` stacks samples into a batch (N first).

Augmentations and the flow (project convention: backward flow, frame_t(x, y) ~=
frame_{t-1}(x + dx, y + dy)):
- crop: the same window in every frame and layer; flow is cropped alike (values unchanged);
  "O_context" is taken from the whole frames first and only flipped and reversed; "rows" are the
  crop's rows in the frame as flipped.
- horizontal flip: x -> W-1-x in every frame; the flow is flipped alike and dx negated.
- vertical flip: y -> H-1-y; flow flipped alike and dy negated (off by default: rain falls down).
- temporal reversal: frames in reverse order. The backward flow of the reversed clip is the
  forward flow of the original, which datasets do not store, so a reversed sample has no
  "flow". Reversal is drawn once per iteration (keyed by (seed, iteration)), so a batch is
  either all forward, with flow, or all reversed, without. When only some samples of a batch
  have flow (datasets that mix clips with and without it), :func:`collate` fills the others
  with zeros and marks which are real in "flow_valid" (N,) bool.
"""

from __future__ import annotations

import multiprocessing
import zlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

import rainsynth
from derain.context import frame_context, row_positions
from rainsynth.dataset import DatasetClip, decode_layers, read_dataset, to_float
from rainsynth.errors import RainsynthError
from rainsynth.sources import open_source

FRAME_KEYS = ("O", "B")
MAP_KEYS = ("S", "U", "beta", "alpha")
LIGHT_KEYS = ("A", "M")


class SampleKey(NamedTuple):
    """Which clip a sample reads and the keys of its randomness."""

    index: int  # clip index in the dataset
    epoch: int  # pass over the dataset this sample belongs to
    position: int  # global sample position: keys the crop and flips
    iteration: int  # training iteration: keys the temporal reversal


def _tag(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The clip order of one epoch: a permutation of range(n) keyed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch, _tag("order")]).permutation(n)


class KeyedBatchSampler(Sampler[list[SampleKey]]):
    """Batches of SampleKeys for iterations ``start`` .. ``stop - 1`` of one rank.

    n: clips in the dataset; batch_size: per rank; rank / world: DDP rank and world size.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start: int,
        stop: int,
        rank: int = 0,
        world: int = 1,
    ):
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
                self._orders = {epoch: epoch_order(self.seed, epoch, self.n)}
            index = int(self._orders[epoch][position % self.n])
            out.append(SampleKey(index, epoch, position, iteration))
        return out

    def __iter__(self) -> Iterator[list[SampleKey]]:
        for iteration in range(self.start, self.stop):
            yield self.keys(iteration)


class Augment(NamedTuple):
    """Crop size (H, W), which random flips/reversal are allowed, and whether to add "O_context"
    (for a model with ModelConfig.frame_context) and "rows" (ModelConfig.row_position)."""

    crop: tuple[int, int]
    hflip: bool = True
    vflip: bool = False
    reverse: bool = True
    context: bool = False
    rows: bool = False


class KeyedClips(Dataset):
    """Base of the keyed datasets: subclasses load a clip, this cuts and augments it.

    ``load(key)`` returns (arrays, flow): arrays maps "O", "B" to (T,H,W,3), "S", "U", "beta",
    "alpha" to (T,H,W,1) and "A", "M" to (T,1,1,3) (any subset with "B"), all float32 numpy;
    flow is (T-1,H,W,2) or None.
    """

    def __init__(self, frames: int, augment: Augment | None, seed: int):
        self.frames, self.augment, self.seed = frames, augment, seed

    def __len__(self) -> int:
        raise NotImplementedError

    def load(self, key: SampleKey) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        raise NotImplementedError

    def __getitem__(self, key: SampleKey) -> dict[str, torch.Tensor]:
        key = SampleKey(*key) if not isinstance(key, SampleKey) else key
        arrays, flow = self.load(key)
        if self.augment is not None:
            rng = np.random.default_rng([self.seed, key.position, _tag("augment")])
            reverse = self.augment.reverse and bool(
                np.random.default_rng([self.seed, key.iteration, _tag("reverse")]).random() < 0.5
            )
            arrays, flow = augment_clip(arrays, flow, self.augment, rng, reverse)
        return to_tensors(arrays, flow)


def augment_clip(
    arrays: dict[str, np.ndarray],
    flow: np.ndarray | None,
    augment: Augment,
    rng: np.random.Generator,
    reverse: bool,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Random crop and flips (drawn from ``rng``), then reversal when ``reverse``; see module doc.

    arrays: as KeyedClips.load returns them; flow (T-1,H,W,2) or None.
    """
    t, h, w = arrays["B"].shape[:3]
    ch, cw = augment.crop
    if ch > h or cw > w:
        raise RainsynthError(f"crop {ch}x{cw} is larger than the clip's {h}x{w} frames")
    if augment.context and "O" in arrays:
        frames = torch.from_numpy(np.ascontiguousarray(arrays["O"])).permute(0, 3, 1, 2)
        context = frame_context(frames).permute(0, 2, 3, 1).numpy()
        arrays = dict(arrays, O_context=context)
    y0, x0 = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    hflip = augment.hflip and bool(rng.random() < 0.5)
    vflip = augment.vflip and bool(rng.random() < 0.5)
    out = {}
    for name, value in arrays.items():
        if name not in LIGHT_KEYS:
            value = value if name == "O_context" else value[:, y0 : y0 + ch, x0 : x0 + cw]
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


def to_tensors(arrays: dict[str, np.ndarray], flow: np.ndarray | None) -> dict[str, torch.Tensor]:
    """(T,H,W,C) numpy -> (T,C,H,W) float32 tensors; flow (T-1,H,W,2) -> (T-1,2,H,W)."""
    sample = {
        name: torch.from_numpy(np.ascontiguousarray(value.transpose(0, 3, 1, 2), np.float32))
        for name, value in arrays.items()
    }
    if flow is not None:
        sample["flow"] = torch.from_numpy(np.ascontiguousarray(flow.transpose(0, 3, 1, 2)))
    return sample


def collate(samples: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples on a new first dim.

    "flow" (N,T-1,2,H,W) is kept when any sample has it, zeros standing in for the others, and
    "flow_valid" (N,) bool says which samples' flow is real; the losses average over those only.
    """
    keys = set.intersection(*(set(s) for s in samples)) - {"flow"}
    batch = {k: torch.stack([s[k] for s in samples]) for k in sorted(keys)}
    flows = [s.get("flow") for s in samples]
    known = next((f for f in flows if f is not None), None)
    if known is not None:
        batch["flow"] = torch.stack(
            [known.new_zeros(known.shape) if f is None else f for f in flows]
        )
        batch["flow_valid"] = torch.tensor([f is not None for f in flows])
    return batch


class DatasetClips(KeyedClips):
    """Clips of one or more datasets built by ``rainsynth build``; a random window of T frames.

    roots: dataset folders; split: "train" / "test"; presets: keep these (empty = all).
    clean_only: load only "B" (and "flow"), not the rain and its layers (flow pretraining).
    flow_only: keep only the clips whose exact flow the dataset stores.
    cache: keep each clip's frames and layers in memory, 8-bit as stored, after its first read
        (about 8 MB per 7-frame 448x256 clip, in each data worker), so that later epochs skip
        decoding its PNGs and layers.npz; the samples are the same either way.
    """

    def __init__(
        self,
        roots: Sequence[str],
        split: str,
        presets: Sequence[str],
        frames: int,
        augment: Augment | None,
        seed: int = 0,
        clean_only: bool = False,
        flow_only: bool = False,
        cache: bool = False,
    ):
        super().__init__(frames, augment, seed)
        self.clean_only = clean_only
        self.cache: dict[int, dict] | None = {} if cache else None
        self.clips: list[DatasetClip] = []
        for root in roots:
            self.clips += [
                c
                for c in read_dataset(root, split=split)
                if (not presets or c.preset in presets) and (not flow_only or c.has_flow)
            ]
        if not self.clips:
            raise RainsynthError(
                f"no {split} clips of presets {list(presets) or 'any'}"
                f"{' with flow' if flow_only else ''} in {', '.join(roots)}"
            )
        short = [c for c in self.clips if c.num_frames < frames]
        if short:
            raise RainsynthError(
                f"clip {short[0].path} has {short[0].num_frames} frames, fewer than frames={frames}"
            )
        if augment is not None:
            small = [
                c for c in self.clips if c.height < augment.crop[0] or c.width < augment.crop[1]
            ]
            if small:
                raise RainsynthError(
                    f"clip {small[0].path} is {small[0].height}x{small[0].width}, smaller than "
                    f"the crop {augment.crop[0]}x{augment.crop[1]}"
                )

    def __len__(self) -> int:
        return len(self.clips)

    def load(self, key: SampleKey) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        clip = self.clips[key.index]
        rng = np.random.default_rng([self.seed, key.position, _tag("window")])
        t0 = int(rng.integers(0, clip.num_frames - self.frames + 1)) if self.augment else 0
        window = slice(t0, t0 + self.frames)
        stored = self._stored(key.index, window)
        arrays = {"B": to_float(stored["B"])}
        if not self.clean_only:
            arrays["O"] = to_float(stored["O"])
            arrays.update({k: v[window] for k, v in decode_layers(stored["layers"]).items()})
        flow = clip.flow()
        return arrays, None if flow is None else flow[t0 : t0 + self.frames - 1]

    def _stored(self, index: int, window: slice) -> dict:
        """Clip ``index`` as stored: its 8-bit frames "B" (and "O") of ``window``, (T,H,W,3) uint8,
        and (unless clean_only) all of layers.npz's arrays, "layers"; through the cache if on."""
        if self.cache is None:
            return self._read(self.clips[index], window)
        if index not in self.cache:
            self.cache[index] = self._read(self.clips[index], slice(None))
        cached = self.cache[index]
        return {k: v if k == "layers" else v[window] for k, v in cached.items()}

    def _read(self, clip: DatasetClip, frames: slice) -> dict:
        stored = {"B": clip.stored_frames("clean", frames)}
        if not self.clean_only:
            stored["O"] = clip.stored_frames("rain", frames)
            stored["layers"] = clip.stored_layers()
        return stored


class SourceClips(KeyedClips):
    """Clean clips (and exact flow, where known) of a rainsynth source, e.g. "builtin".

    Gives "B" (and "flow"); used to pretrain the flow network. root: the source's folder ("" for
    builtin); size: (H, W) of the source clips; count: number of builtin synthetic clips (see
    rainsynth.sources.open_source). synthetic_only: keep only the builtin source's synthetic
    clips, the ones with exact flow (it lists them first, ``count`` of them).
    """

    def __init__(
        self,
        source: str,
        frames: int,
        size: tuple[int, int],
        count: int,
        augment: Augment | None,
        seed: int = 0,
        root: str = "",
        synthetic_only: bool = False,
    ):
        super().__init__(frames, augment, seed)
        self.source = open_source(
            source, root=root or None, frames=frames, size=tuple(size), seed=seed, count=count
        )
        self.refs = self.source.sequences()
        if synthetic_only:
            if source != "builtin":
                raise RainsynthError(f"only the builtin source has synthetic clips, not {source!r}")
            self.refs = self.refs[:count]
        if not self.refs:
            raise RainsynthError(f"source {source!r} has no clips of {frames} frames")

    def __len__(self) -> int:
        return len(self.refs)

    def load(self, key: SampleKey) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        sequence = self.source.read(self.refs[key.index])
        return {"B": to_float(sequence.frames)}, sequence.flow


class OnlineRainClips(SourceClips):
    """Source clips with fresh rain each epoch (``--online``): every pass sees new rain.

    The rain of clip i in epoch e is ``rainsynth.render(clean, sample_params(preset, seed=seed,
    clip=e * n + i))`` with the preset drawn from ``presets`` by a stream keyed (seed, e, i), so
    the data stay deterministic.
    """

    def __init__(self, *args, presets: Sequence[str], **kwargs):
        super().__init__(*args, **kwargs)
        if not presets:
            raise RainsynthError("online rain needs at least one preset")
        self.presets = tuple(presets)

    def load(self, key: SampleKey) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
        arrays, flow = super().load(key)
        clean = arrays["B"]
        rng = np.random.default_rng([self.seed, key.epoch, key.index, _tag("preset")])
        preset = self.presets[int(rng.integers(len(self.presets)))]
        clip_id = key.epoch * len(self) + key.index
        params = rainsynth.sample_params(
            preset, seed=self.seed, shape=clean.shape[:3], clip=clip_id
        )
        rendered = rainsynth.render(clean, params)
        arrays["O"] = rendered.rain
        arrays.update(rendered.layers)
        return arrays, flow


def make_loader(
    dataset: KeyedClips, sampler: KeyedBatchSampler, workers: int, pin_memory: bool = False
) -> DataLoader:
    """A DataLoader over keyed batches. Workers start by "forkserver" (or "spawn"), never a
    plain fork: a process forked after numba's or torch's thread pools ran (rendering, an
    evaluation) can hang in the child."""
    context = None
    if workers > 0:
        methods = multiprocessing.get_all_start_methods()
        context = "forkserver" if "forkserver" in methods else "spawn"
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        multiprocessing_context=context,
    )


def training_dataset(data, seed: int, context: bool = False, rows: bool = False) -> KeyedClips:
    """The training dataset a DataConfig describes (built datasets or online rain); ``context``:
    add "O_context" (the model has ModelConfig.frame_context); ``rows``: add "rows" (the model has
    ModelConfig.row_position)."""
    augment = Augment(tuple(data.crop), data.hflip, data.vflip, data.reverse, context, rows)
    if data.online:
        return OnlineRainClips(
            data.online_source,
            data.frames,
            tuple(data.online_size),
            data.online_clips,
            augment,
            seed,
            root=data.online_root,
            presets=data.online_presets,
        )
    return DatasetClips(
        data.datasets, data.split, data.presets, data.frames, augment, seed, cache=data.cache
    )
