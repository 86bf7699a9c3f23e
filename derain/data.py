"""Training data: paired rain/clean clips (:class:`PairedClips`) and clips of a rainsynth source
(:class:`SourceClips`, :class:`OnlineRainClips`), keyed (derain.keyed).

A sample is a dict of float32 tensors (T frames, crop H x W):
    "rain" (T,3,H,W) O~ in [0, 1], "clean" (T,3,H,W) B in [0, 1]; where the clip knows them, its
    rain layers "S", "U", "beta", "alpha" (T,1,H,W) and "A", "M" (T,3,1,1) (rainsynth.dataset)
    and "flow" (T-1,2,H,W), the exact backward flow in px; samples augmented for a model with
    ModelConfig.frame_context also "rain_context" (T,3,64,64), derain.context.frame_context of the
    whole rain frames the crop was cut from (the per-frame heads read it: a crop alone hides the
    veil), and samples for a model with ModelConfig.row_position "rows" (T,1,H,1), the position
    of each crop row in its whole frame (derain.context.row_positions).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

import rainsynth
from derain.config import DataConfig
from derain.keyed import Arrays, Augment, KeyedBatchSampler, KeyedClips, SampleKey, stream
from rainsynth.dataset import decode_layers, to_float
from rainsynth.errors import RainsynthError
from rainsynth.paired import read_clips
from rainsynth.sources import open_source


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

    ``ds[i]``, i in ``range(len(ds))``: window i, a sample (module docstring) of frames
    t0 .. t0+T-1 for t0 = 0, stride, 2 stride, ... of each clip in turn (clips in read order);
    the crop's corner and the flips (``augment``) are drawn from (seed, i), so ``ds[i]`` is the
    same on every call and in every worker. ``ds[SampleKey(...)]``: the trainer's sample of
    that key, a random window of clip ``key.index``, cut and augmented as keyed.

    Batch with ``collate_fn=derain.data.collate`` when samples may differ in keys: with
    ``flow=True`` a dataset that stores the flow of some clips only gives samples with and
    without "flow" (the default collate would fail or drop it), and roots may mix built
    datasets (layers) and paired folders (none).

    Args:
        roots: a folder or folders: datasets built by ``rainsynth build`` or paired folders
            (rainsynth.paired), whose clips have no layers and no flow.
        frames: T, frames a window; every clip must have at least T.
        crop: (H, W) of the crop, or None for the whole frame.
        stride: frames between window starts in a clip (default: T).
        split: the split of built datasets ("train", "test"; None: all).
        presets: keep the clips of these presets (built) or pair names (paired); empty: all.
        seed: keys the crops and flips (and the trainer's windows and reversal).
        augment: random flips (and for keyed samples reversal), "rain_context" and "rows".
        clean_only: load only "clean" (and "flow"), not the rain and its layers.
        flow: None: "flow" where known if every clip's is, else never; True: "flow" in the
            samples of the clips whose flow is known; False: never.
        flow_only: keep only the clips whose exact flow the dataset stores.
        cache: keep each clip's frames and layers in memory, 8-bit as stored, after its first
            read (about 8 MB per 7-frame 448x256 clip, in each data worker); the samples are
            the same either way.
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
        stride = frames if stride is None else stride
        if frames < 1 or stride < 1:
            raise RainsynthError(
                f"frames and stride must be integers >= 1; got {frames} and {stride}"
            )
        starts = [
            (index, t0)
            for index, clip in enumerate(self.clips)
            for t0 in range(0, clip.num_frames - frames + 1, stride)
        ]  # (clip index, first frame) of each window
        self.windows = np.array(starts, np.int64).reshape(-1, 2)
        self.with_flow = all(c.has_flow for c in self.clips) if flow is None else flow

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
        start = stream(self.seed, key.position, "window").integers(
            0, clip.num_frames - self.frames + 1
        )
        return self.read(key.index, int(start))

    def read(self, index: int, start: int) -> Arrays:
        """Frames start .. start+T-1 of clip ``index``: its arrays and flow (:data:`Arrays`)."""
        window = slice(start, start + self.frames)
        if self.cache is None:
            stored = self._read(self.clips[index], window)
        else:  # the whole clip as stored, read once
            if index not in self.cache:
                self.cache[index] = self._read(self.clips[index], slice(None))
            stored = {k: v if k == "layers" else v[window] for k, v in self.cache[index].items()}
        arrays = {"clean": to_float(stored["clean"])}
        if not self.clean_only:
            arrays["rain"] = to_float(stored["rain"])
            if stored["layers"] is not None:
                arrays.update({k: v[window] for k, v in decode_layers(stored["layers"]).items()})
        flow = self.clips[index].flow() if self.with_flow else None
        return arrays, None if flow is None else flow[start : start + self.frames - 1]

    def _read(self, clip, frames: slice) -> dict:
        """A clip as stored: its 8-bit frames "clean" (and "rain") of ``frames``, (T,H,W,3)
        uint8, and (unless clean_only) all of layers.npz's arrays, "layers" (None for a paired
        folder's clip)."""
        stored = {"clean": clip.stored_frames("clean", frames)}
        self._check(clip, *stored["clean"].shape[1:3])
        if not self.clean_only:
            stored["rain"] = clip.stored_frames("rain", frames)
            stored["layers"] = clip.stored_layers()
        return stored


class SourceClips(KeyedClips):
    """Clean clips (and exact flow, where known) of a DataConfig's ``online_source`` (its folder
    ``online_root``, "" for builtin; ``online_clips`` builtin synthetic clips; frames resized to
    ``online_size``; rainsynth.sources.open_source), cut as it says; keyed. Gives "clean" (and
    "flow"); used to pretrain the flow network. synthetic_only: keep only the builtin source's
    synthetic clips, the ones with exact flow (it lists them first).
    """

    def __init__(
        self, data: DataConfig, seed: int, augment: Augment | None, synthetic_only: bool = False
    ):
        super().__init__(data.frames, data.crop, augment, seed)
        name, count = data.online_source, data.online_clips
        self.source = open_source(
            name,
            root=data.online_root or None,
            frames=data.frames,
            size=tuple(data.online_size),
            seed=seed,
            count=count,
        )
        self.refs = self.source.sequences()
        if synthetic_only:
            self.refs = self.refs[:count]
        if not self.refs:
            raise RainsynthError(f"source {name!r} has no clips of {data.frames} frames")

    def __len__(self) -> int:
        return len(self.refs)

    num_clips = property(__len__)

    def load(self, key: SampleKey) -> Arrays:
        sequence = self.source.read(self.refs[key.index])
        return {"clean": to_float(sequence.frames)}, sequence.flow


class OnlineRainClips(SourceClips):
    """Source clips with fresh rain each epoch (``[data] online``): every pass sees new rain.

    The rain of clip i in epoch e is ``rainsynth.render(clean, sample_params(preset, seed=seed,
    clip=e * n + i))`` with the preset drawn from ``online_presets`` by a stream keyed (seed, e,
    i), so the data stay deterministic.
    """

    def __init__(self, data: DataConfig, *args, **kwargs):
        super().__init__(data, *args, **kwargs)
        self.presets = tuple(data.online_presets)

    def load(self, key: SampleKey) -> Arrays:
        arrays, flow = super().load(key)
        clean = arrays["clean"]
        rng = stream(self.seed, key.epoch, key.index, "preset")
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
    methods = multiprocessing.get_all_start_methods()
    context = ("forkserver" if "forkserver" in methods else "spawn") if workers > 0 else None
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        multiprocessing_context=context,
    )


def training_dataset(
    data: DataConfig, seed: int, context: bool = False, rows: bool = False
) -> KeyedClips:
    """The training dataset a DataConfig describes (built datasets or online rain); ``context``:
    add "rain_context" (the model has ModelConfig.frame_context); ``rows``: add "rows" (the model
    has ModelConfig.row_position)."""
    augment = Augment(data.hflip, data.vflip, data.reverse, context, rows)
    if data.online:
        return OnlineRainClips(data, seed, augment)
    return config_clips(data, seed, augment)


def config_clips(data: DataConfig, seed: int, augment: Augment, **options) -> PairedClips:
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
