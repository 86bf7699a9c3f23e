"""Training data: paired rain/clean clips as a torch Dataset, plain or in the trainer's keyed order.

:class:`PairedClips` reads a dataset built by ``rainsynth build`` or a plain paired folder
(rainsynth.paired). Indexed by an int it is an ordinary map-style Dataset: item i is window i
(see its docstring). Indexed by a :class:`SampleKey` it gives the trainer's sample of that key.
:class:`SourceClips` and :class:`OnlineRainClips` give keyed samples of a rainsynth source.

A sample is a dict of float32 tensors (T frames, crop H x W):
    "rain" (T,3,H,W) O~ in [0, 1], "clean" (T,3,H,W) B in [0, 1]; where the clip knows them, its
    rain layers "S", "U", "beta", "alpha" (T,1,H,W) and "A", "M" (T,3,1,1) (rainsynth.dataset)
    and "flow" (T-1,2,H,W), the exact backward flow in px; samples augmented for a model with
    ModelConfig.frame_context also "rain_context" (T,3,64,64), derain.context.frame_context of the
    whole rain frames the crop was cut from (the per-frame heads read it: a crop alone hides the
    veil), and samples for a model with ModelConfig.row_position "rows" (T,1,H,1), the position
    of each crop row in its whole frame (derain.context.row_positions).
:func:`collate` stacks samples into a batch (N first).

Keyed order: the sample at global position p = iteration * global_batch + rank * batch + k is
clip ``perm(seed, epoch)[p % n]`` with epoch = p // n. Every draw comes from its own stream
``numpy.random.default_rng([seed, key, zlib.crc32(tag)])``: the window start from key p, tag
"window"; the crop corner (y0, then x0) and the flips (horizontal, then vertical) from key p, tag
"augment"; the temporal reversal from key = iteration, tag "reverse". Nothing depends on an
iterator's state, so a run resumed at iteration i sees exactly the batches it would have seen, and
DDP ranks split each global batch without overlap (a DistributedSampler with keyed order).
:class:`KeyedBatchSampler` yields the keys.

Augmentations and the flow (project convention: backward flow, frame_t(x, y) ~=
frame_{t-1}(x + dx, y + dy)):
- crop: the same window in every frame and layer; flow is cropped alike (values unchanged);
  "rain_context" is taken from the whole frames first and only flipped and reversed; "rows" are
  the crop's rows in the frame as flipped.
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
import os
import zlib
from collections.abc import Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

import rainsynth
from derain.context import frame_context, row_positions
from rainsynth.dataset import decode_layers, to_float
from rainsynth.errors import RainsynthError
from rainsynth.paired import read_clips
from rainsynth.sources import open_source

LIGHT_KEYS = ("A", "M")


class SampleKey(NamedTuple):
    """Which clip a sample reads and the keys of its randomness."""

    index: int  # clip index in the dataset
    epoch: int  # pass over the dataset this sample belongs to
    position: int  # global sample position: keys the window, crop and flips
    iteration: int  # training iteration: keys the temporal reversal


def _tag(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _stream(seed: int, key: int, tag: str) -> np.random.Generator:
    """The random stream of one draw (module docstring: "Keyed order")."""
    return np.random.default_rng([seed, key, _tag(tag)])


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The clip order of one epoch: a permutation of range(n) keyed by (seed, epoch)."""
    return _stream(seed, epoch, "order").permutation(n)


class KeyedBatchSampler(Sampler[list[SampleKey]]):
    """Batches of SampleKeys for iterations ``start`` .. ``stop - 1`` of one rank.

    n: clips in the dataset (its ``num_clips``); batch_size: per rank; rank / world: DDP rank and
    world size.
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

    frames: T; crop: (H, W), or None for the whole frame; augment: flips, reversal and extras
    (None: none); seed: keys every draw (module docstring).
    """

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
            _stream(self.seed, key.iteration, "reverse").random() < 0.5
        )
        return self.cut(self.load(key), key.position, reverse)

    def cut(self, loaded: Arrays, position: int, reverse: bool) -> dict[str, torch.Tensor]:
        """Crop, flip (drawn from key ``position``) and reverse a loaded window; as tensors."""
        arrays, flow = loaded
        rng = _stream(self.seed, position, "augment")
        arrays, flow = augment_clip(arrays, flow, self.crop, self.augment, rng, reverse)
        return to_tensors(arrays, flow)


def augment_clip(
    arrays: dict[str, np.ndarray],
    flow: np.ndarray | None,
    crop: tuple[int, int] | None,
    augment: Augment,
    rng: np.random.Generator,
    reverse: bool,
) -> Arrays:
    """Crop and flips (drawn from ``rng``: y0, x0, hflip, vflip), then reversal when
    ``reverse``; see the module docstring.

    arrays, flow: a loaded window (:data:`Arrays`); crop: (H, W), None for the whole frame.
    """
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


class PairedClips(KeyedClips):
    """Windows of T frames of paired rain/clean clips, as a map-style torch Dataset.

    ``ds[i]``, i in ``range(len(ds))``: window i, a dict of float32 tensors (module docstring):
    "rain", "clean" (T,3,H,W) in [0, 1]; for a built dataset also the layers "S", "U", "beta",
    "alpha" (T,1,H,W) and "A", "M" (T,3,1,1) as rendered, and "flow" (T-1,2,H,W) in px (see
    ``flow``). The windows are frames t0 .. t0+T-1 for t0 = 0, stride, 2 stride, ... of each
    clip in turn (clips in read order); the crop's corner is drawn from (seed, i), the flips
    (``augment``) too, so ``ds[i]`` is the same on every call and in every worker.

    ``torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)`` batches it with the default
    collate when its samples share one frame size (a crop, or same-size clips) and their keys.
    They do by default: "flow" is in every sample or in none. With ``flow=True``, a dataset that
    stores the flow of some clips only (the builtin source's synthetic clips) gives samples with
    and without "flow": the default collate then fails (KeyError 'flow') when a batch's first
    sample has it and drops it from the batch when the first lacks it; batch those with
    ``collate_fn=derain.data.collate`` (zeros for the missing flow, and "flow_valid" (N,) bool).
    Its samples also keep only the keys all share, for roots that mix built datasets (layers)
    and paired folders (none).

    ``ds[SampleKey(...)]`` is the trainer's sample of that key (module docstring): a random
    window of clip ``key.index``, a random crop, the flips and reversal of ``augment``.

    Args:
        roots: a folder or folders: datasets built by ``rainsynth build`` or paired folders
            (rainsynth.paired: X_Rain/ + X_GT/, LQ/ + GT/, <clip>/rain + <clip>/clean), whose
            clips have no layers and no flow.
        frames: T, frames a window; every clip must have at least T.
        crop: (H, W) of the crop, or None for the whole frame.
        stride: frames between window starts in a clip (default: T, windows that do not
            overlap); ``len(ds)`` is the number of windows.
        split: the split of built datasets ("train", "test"; None: all); paired folders have none.
        presets: keep the clips of these presets (built) or pair names (paired); empty: all.
        seed: keys the crops and flips (and the trainer's windows and reversal).
        augment: random flips (and for keyed samples reversal), "rain_context" and "rows".
        clean_only: load only "clean" (and "flow"), not the rain and its layers.
        flow: None (default): "flow" where known if every clip's is, else never; True: "flow"
            in the samples of the clips whose flow is known; False: never.
        flow_only: keep only the clips whose exact flow the dataset stores.
        cache: keep each clip's frames and layers in memory, 8-bit as stored, after its first read
            (about 8 MB per 7-frame 448x256 clip, in each data worker), so that later epochs skip
            decoding its PNGs and layers.npz; the samples are the same either way.
    """

    def __init__(
        self,
        roots: str | os.PathLike | Sequence[str | os.PathLike],
        frames: int = 5,
        crop: tuple[int, int] | None = None,
        stride: int | None = None,
        *,
        split: str | None = "train",
        presets: Sequence[str] = (),
        seed: int = 0,
        augment: Augment | None = None,
        clean_only: bool = False,
        flow: bool | None = None,
        flow_only: bool = False,
        cache: bool = False,
    ):
        super().__init__(frames, crop, augment, seed)
        roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
        self.clean_only = clean_only
        self.cache: dict[int, dict] | None = {} if cache else None
        self.clips = [
            clip
            for root in roots
            for clip in read_clips(root, split=split)
            if (not presets or clip.preset in presets) and (not flow_only or clip.has_flow)
        ]
        if not self.clips:
            raise RainsynthError(
                f"no {split + ' ' if split else ''}clips of presets {list(presets) or 'any'}"
                f"{' with flow' if flow_only else ''} in {', '.join(map(str, roots))}"
            )
        for clip in self.clips:
            self._check(clip, getattr(clip, "height", None), getattr(clip, "width", None))
        self.windows = self._windows(frames if stride is None else stride)
        self.with_flow = all(c.has_flow for c in self.clips) if flow is None else flow

    def _windows(self, stride: int) -> np.ndarray:
        """(len, 2) int64: (clip index, first frame) of each window."""
        if self.frames < 1 or stride < 1:
            raise RainsynthError(
                f"frames and stride must be integers >= 1; got {self.frames} and {stride}"
            )
        starts = [
            (index, t0)
            for index, clip in enumerate(self.clips)
            for t0 in range(0, clip.num_frames - self.frames + 1, stride)
        ]
        return np.array(starts, np.int64).reshape(-1, 2)

    def _check(self, clip, height: int | None, width: int | None) -> None:
        """RainsynthError naming the clip when it is shorter than T or smaller than the crop
        (None: a size not known before its frames are read)."""
        if clip.num_frames < self.frames:
            raise RainsynthError(
                f"clip {clip.path} has {clip.num_frames} frames, fewer than frames={self.frames}"
            )
        if self.crop and height is not None and (height < self.crop[0] or width < self.crop[1]):
            raise RainsynthError(
                f"clip {clip.path} is {height}x{width}, smaller than the crop "
                f"{self.crop[0]}x{self.crop[1]}"
            )

    def __len__(self) -> int:
        return len(self.windows)

    @property
    def num_clips(self) -> int:
        return len(self.clips)

    def __getitem__(self, item: int | SampleKey) -> dict[str, torch.Tensor]:
        """Window ``item`` (an int), or the trainer's sample of a SampleKey."""
        if isinstance(item, tuple):
            return super().__getitem__(item)
        item = range(len(self))[item]  # IndexError past the end; -1 is the last window
        index, start = (int(v) for v in self.windows[item])
        return self.cut(self.read(index, start), item, False)

    def load(self, key: SampleKey) -> Arrays:
        """A random window of clip ``key.index``, its start drawn from key.position."""
        clip = self.clips[key.index]
        start = _stream(self.seed, key.position, "window").integers(
            0, clip.num_frames - self.frames + 1
        )
        return self.read(key.index, int(start))

    def read(self, index: int, start: int) -> Arrays:
        """Frames start .. start+T-1 of clip ``index``: its arrays and flow (:data:`Arrays`)."""
        window = slice(start, start + self.frames)
        stored = self._stored(index, window)
        arrays = {"clean": to_float(stored["clean"])}
        if not self.clean_only:
            arrays["rain"] = to_float(stored["rain"])
            if stored["layers"] is not None:
                arrays.update({k: v[window] for k, v in decode_layers(stored["layers"]).items()})
        flow = self.clips[index].flow() if self.with_flow else None
        return arrays, None if flow is None else flow[start : start + self.frames - 1]

    def _stored(self, index: int, window: slice) -> dict:
        """Clip ``index`` as stored: its 8-bit frames "clean" (and "rain") of ``window``,
        (T,H,W,3) uint8, and (unless clean_only) all of layers.npz's arrays, "layers" (None for
        a paired folder's clip); through the cache if on."""
        if self.cache is None:
            return self._read(self.clips[index], window)
        if index not in self.cache:
            self.cache[index] = self._read(self.clips[index], slice(None))
        cached = self.cache[index]
        return {k: v if k == "layers" else v[window] for k, v in cached.items()}

    def _read(self, clip, frames: slice) -> dict:
        stored = {"clean": clip.stored_frames("clean", frames)}
        self._check(clip, *stored["clean"].shape[1:3])
        if not self.clean_only:
            stored["rain"] = clip.stored_frames("rain", frames)
            stored["layers"] = clip.stored_layers()
        return stored


class SourceClips(KeyedClips):
    """Clean clips (and exact flow, where known) of a rainsynth source, e.g. "builtin"; keyed.

    Gives "clean" (and "flow"); used to pretrain the flow network. root: the source's folder (""
    for builtin); size: (H, W) of the source clips; count: number of builtin synthetic clips (see
    rainsynth.sources.open_source). synthetic_only: keep only the builtin source's synthetic
    clips, the ones with exact flow (it lists them first, ``count`` of them).
    """

    def __init__(
        self,
        source: str,
        frames: int,
        size: tuple[int, int],
        count: int,
        crop: tuple[int, int] | None,
        augment: Augment | None,
        seed: int = 0,
        root: str = "",
        synthetic_only: bool = False,
    ):
        super().__init__(frames, crop, augment, seed)
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

    @property
    def num_clips(self) -> int:
        return len(self.refs)

    def load(self, key: SampleKey) -> Arrays:
        sequence = self.source.read(self.refs[key.index])
        return {"clean": to_float(sequence.frames)}, sequence.flow


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

    def load(self, key: SampleKey) -> Arrays:
        arrays, flow = super().load(key)
        clean = arrays["clean"]
        rng = np.random.default_rng([self.seed, key.epoch, key.index, _tag("preset")])
        preset = self.presets[int(rng.integers(len(self.presets)))]
        clip_id = key.epoch * len(self) + key.index
        params = rainsynth.sample_params(
            preset, seed=self.seed, shape=clean.shape[:3], clip=clip_id
        )
        rendered = rainsynth.render(clean, params)
        arrays["rain"] = rendered.rain
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
    add "rain_context" (the model has ModelConfig.frame_context); ``rows``: add "rows" (the model
    has ModelConfig.row_position)."""
    augment = Augment(data.hflip, data.vflip, data.reverse, context, rows)
    if data.online:
        return OnlineRainClips(
            data.online_source,
            data.frames,
            tuple(data.online_size),
            data.online_clips,
            tuple(data.crop),
            augment,
            seed,
            root=data.online_root,
            presets=data.online_presets,
        )
    return config_clips(data, seed, augment)


def config_clips(data, seed: int, augment: Augment, **options) -> PairedClips:
    """The PairedClips of a DataConfig's datasets, as training and flow pretraining read them:
    the flow where known (batched by :func:`collate`); ``options``: more PairedClips keywords."""
    return PairedClips(
        data.datasets,
        data.frames,
        tuple(data.crop),
        split=data.split,
        presets=data.presets,
        seed=seed,
        augment=augment,
        flow=True,
        cache=data.cache,
        **options,
    )
