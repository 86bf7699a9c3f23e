"""derain.data: PairedClips as a plain Dataset and as the trainer's keyed one (pinned to the
documented key streams), source and online clips, collate."""

from __future__ import annotations

import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from derain.config import DataConfig
from derain.context import CONTEXT_SIZE
from derain.data import OnlineRainClips, PairedClips, collate, training_dataset
from derain.keyed import Augment, KeyedBatchSampler, SampleKey
from rainsynth.errors import RainsynthError


def _stream(seed: int, key: int, tag: str) -> np.random.Generator:
    """A draw's stream as the module docstring of derain.keyed documents it."""
    return np.random.default_rng([seed, key, zlib.crc32(tag.encode())])


def _stored_window(folder: Path, t0: int, frames: int) -> tuple[dict, np.ndarray | None]:
    """Frames t0 .. t0+frames-1 of a built clip, read from its files as rainsynth.dataset
    documents them: 8-bit PNGs / 255, layers lo + q (hi - lo) / 255, A and M float32."""
    window = slice(t0, t0 + frames)

    def png(kind, t):
        bgr = cv2.imread(str(folder / kind / f"{t + 1:04d}.png"), cv2.IMREAD_COLOR)
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    arrays = {
        name: np.stack([png(kind, t) for t in range(t0, t0 + frames)]) / np.float32(255)
        for name, kind in (("rain", "rain"), ("clean", "clean"))
    }
    with np.load(folder / "layers.npz") as stored:
        for name in ("S", "U", "beta", "alpha"):
            lo, hi = (float(v) for v in stored[f"{name}_range"])
            q = stored[name][window].astype(np.float32)
            arrays[name] = np.float32(lo) + q * np.float32((hi - lo) / 255.0)
        arrays.update({name: stored[name][window] for name in ("A", "M")})
    flow = None
    if (folder / "flow.npz").exists():
        with np.load(folder / "flow.npz") as stored:
            flow = stored["flow"][t0 : t0 + frames - 1]
    return arrays, flow


def _expected_sample(folder, key, seed, frames, crop, start=None) -> tuple[dict, tuple]:
    """The sample of ``key`` computed from the files and the documented key streams, and its
    draws (hflip, vflip, reverse): the trainer's (``start`` None: window start from (seed,
    position, "window"), crop corner and flips from (seed, position, "augment"), reversal from
    (seed, iteration, "reverse")), or window ``position`` of a plain PairedClips (starting at
    frame ``start``; its crop corner from (seed, position, "augment"), no flips, no reversal)."""
    total = len(list((folder / "clean").glob("*.png")))
    keyed = start is None
    if keyed:
        start = int(_stream(seed, key.position, "window").integers(0, total - frames + 1))
        reverse = bool(_stream(seed, key.iteration, "reverse").random() < 0.5)
    else:
        reverse = False
    arrays, flow = _stored_window(folder, start, frames)
    h, w = arrays["clean"].shape[1:3]
    rng = _stream(seed, key.position, "augment")
    y0, x0 = int(rng.integers(0, h - crop[0] + 1)), int(rng.integers(0, w - crop[1] + 1))
    hflip, vflip = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
    hflip, vflip = hflip and keyed, vflip and keyed
    sample = {}
    for name, value in arrays.items():
        if name not in ("A", "M"):
            value = value[:, y0 : y0 + crop[0], x0 : x0 + crop[1]]
            value = value[:, :, ::-1] if hflip else value
            value = value[:, ::-1] if vflip else value
        value = value[::-1] if reverse else value
        sample[name] = torch.from_numpy(value.transpose(0, 3, 1, 2).copy())
    if flow is not None and not reverse:
        flow = flow[:, y0 : y0 + crop[0], x0 : x0 + crop[1]]
        flow = flow[:, :, ::-1] * np.float32([-1, 1]) if hflip else flow
        flow = flow[:, ::-1] * np.float32([1, -1]) if vflip else flow
        sample["flow"] = torch.from_numpy(flow.transpose(0, 3, 1, 2).copy())
    return sample, (hflip, vflip, reverse)


def _assert_equal_samples(got: dict, expected: dict) -> None:
    assert sorted(got) == sorted(expected)
    for name in expected:
        assert got[name].dtype == torch.float32, name
        assert torch.equal(got[name], expected[name]), name


def test_the_trainer_gets_exactly_the_samples_of_the_documented_key_streams(dataset):
    seed, frames, crop = 7, 3, (32, 40)
    folders = sorted(path.parent for path in dataset.glob("train/*/*/clip.json"))
    config = DataConfig(datasets=(str(dataset),), frames=frames, crop=crop, vflip=True)
    clips = training_dataset(config, seed)
    assert isinstance(clips, PairedClips) and clips.num_clips == len(folders) == 6
    sampler = KeyedBatchSampler(clips.num_clips, 2, seed, 0, 7)
    keys = [key for batch in sampler for key in batch]
    draws = set()
    for key in keys:  # over two epochs: each epoch's order a keyed permutation
        order = _stream(seed, key.epoch, "order").permutation(len(folders))
        assert key == SampleKey(int(order[key.position % 6]), key.position // 6, key.position,
                                key.position // 2)  # fmt: skip
        expected, drawn = _expected_sample(folders[key.index], key, seed, frames, crop)
        _assert_equal_samples(clips[key], expected)
        draws |= {(i, v) for i, v in enumerate(drawn)}
    assert len(draws) == 6  # every flip and the reversal both drawn and not among these keys


def test_int_indices_are_windows_with_a_keyed_crop(dataset):
    folders = sorted(path.parent for path in dataset.glob("train/*/*/clip.json"))
    clips = PairedClips(dataset, frames=3, crop=(32, 40), stride=1, seed=2)  # 2 windows a clip
    assert len(clips) == 2 * len(folders) and clips.num_clips == len(folders)
    for i in (0, 1, 5, len(clips) - 1):
        key = SampleKey(i // 2, 0, i, 0)
        expected, _ = _expected_sample(folders[i // 2], key, 2, 3, (32, 40), start=i % 2)
        _assert_equal_samples(clips[i], expected)
    sample = clips[3]
    shapes = {k: tuple(v.shape) for k, v in sample.items()}
    assert shapes == {
        "rain": (3, 3, 32, 40),
        "clean": (3, 3, 32, 40),
        **{k: (3, 1, 32, 40) for k in ("S", "U", "beta", "alpha")},
        **{k: (3, 3, 1, 1) for k in ("A", "M")},
        "flow": (2, 2, 32, 40),
    }
    assert all(torch.equal(sample[k], clips[3][k]) for k in sample)  # the same on every call
    assert torch.equal(clips[-1]["rain"], clips[len(clips) - 1]["rain"])
    with pytest.raises(IndexError):
        clips[len(clips)]
    assert len(PairedClips(dataset, frames=3)) == 6  # stride = frames: one window of 4 frames
    whole = PairedClips(dataset, frames=4, flow=False)[0]
    assert whole["clean"].shape == (4, 3, 48, 64) and "flow" not in whole


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_the_default_dataloader_batches_it_with_two_workers(dataset):
    clips = PairedClips(dataset, frames=3, crop=(32, 40), stride=1)
    loader = DataLoader(clips, batch_size=4, num_workers=2, timeout=120)
    batches = list(loader)
    assert [b["rain"].shape for b in batches] == [(4, 3, 3, 32, 40)] * 3
    for i, batch in enumerate(batches):
        for k in range(4):
            assert all(torch.equal(batch[name][k], v) for name, v in clips[4 * i + k].items())
    # train (with flow) and test (without) mixed: by default no sample has flow, so the default
    # collate batches them; flow=True gives the flow where known, batched by derain.data.collate
    mixed = PairedClips(dataset, frames=3, crop=(32, 40), split=None)
    assert not any("flow" in mixed[i] for i in range(len(mixed)))
    assert next(iter(DataLoader(mixed, batch_size=len(mixed))))["clean"].shape[0] == 12
    known = PairedClips(dataset, frames=3, crop=(32, 40), split=None, flow=True)
    batch = next(iter(DataLoader(known, batch_size=len(known), collate_fn=collate)))
    assert batch["flow_valid"].tolist() == [c.split == "train" for c in known.clips]


def test_a_paired_folder_gives_rain_and_clean_only(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 5, 24, 32, 3), np.uint8)
    for side, folder in enumerate(("LQ", "GT")):
        for clip in ("000", "001"):
            (tmp_path / folder / clip).mkdir(parents=True)
            for t, frame in enumerate(frames[side]):
                cv2.imwrite(str(tmp_path / folder / clip / f"{t:08d}.png"), frame[..., ::-1])
    clips = PairedClips(tmp_path, frames=2, crop=(16, 16), stride=2)
    assert len(clips) == 4  # windows 0-1 and 2-3 of each clip
    sample = clips[1]
    assert set(sample) == {"rain", "clean"}
    rng = _stream(0, 1, "augment")
    y0, x0 = int(rng.integers(0, 24 - 16 + 1)), int(rng.integers(0, 32 - 16 + 1))
    for name, side in (("rain", 0), ("clean", 1)):
        window = frames[side][2:4, y0 : y0 + 16, x0 : x0 + 16] / np.float32(255)
        assert torch.equal(sample[name], torch.from_numpy(window.transpose(0, 3, 1, 2).copy()))
    with pytest.raises(RainsynthError, match=r"LQ.000 is 24x32, smaller than the crop 32x32"):
        PairedClips(tmp_path, frames=2, crop=(32, 32))[0]


def test_cached_clips_give_the_same_samples_as_read_from_disk(dataset):
    keys = [SampleKey(i % 6, i // 6, i, i // 2) for i in range(14)]  # over two epochs
    flips = Augment(hflip=True, reverse=True)
    plain = PairedClips(dataset, 3, (32, 40), augment=flips)
    cached = PairedClips(dataset, 3, (32, 40), augment=flips, cache=True)
    for key in [*keys, 0, 5]:
        a, b = plain[key], cached[key]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(cached.cache) == list(range(6))  # every clip read once, then held


def test_context_is_added_only_when_asked_and_leaves_the_rest_alone(dataset):
    key = SampleKey(index=2, epoch=0, position=2, iteration=1)
    sample = PairedClips(dataset, 3, (32, 40))[key]
    rest = PairedClips(dataset, 3, (32, 40), augment=Augment(context=True))[key]
    assert tuple(rest.pop("rain_context").shape) == (3, 3, CONTEXT_SIZE, CONTEXT_SIZE)
    assert rest.keys() == sample.keys() and all(torch.equal(rest[k], sample[k]) for k in sample)


def test_dataset_presets_filter_and_errors(dataset):
    heavy = PairedClips(dataset, 3, presets=("heavy",))
    assert len(heavy) == 3 and all(c.preset == "heavy" for c in heavy.clips)
    with pytest.raises(RainsynthError, match="smaller than the crop"):
        PairedClips(dataset, 3, (64, 64))
    with pytest.raises(RainsynthError, match="fewer than frames"):
        PairedClips(dataset, 9)
    with pytest.raises(RainsynthError, match="no train clips"):
        PairedClips(dataset, 3, presets=("streaks",))
    with pytest.raises(
        RainsynthError, match="frames and stride must be integers >= 1; got 3 and 0"
    ):
        PairedClips(dataset, 3, stride=0)


def test_clean_only_and_flow_only_clips_for_flow_pretraining(dataset):
    everything = PairedClips(dataset, 3)
    clean = PairedClips(dataset, 3, clean_only=True, flow_only=True)
    assert len(clean) == len(everything) and all(c.has_flow for c in clean.clips)
    assert set(clean[0]) == {"clean", "flow"}
    assert torch.equal(clean[0]["clean"], everything[0]["clean"])
    assert not any(c.has_flow for c in PairedClips(dataset, 3, split="test").clips)
    with pytest.raises(RainsynthError, match="no test clips .* with flow"):
        PairedClips(dataset, 3, split="test", flow_only=True)


def test_online_rain_is_deterministic_and_new_every_epoch():
    data = DataConfig(
        frames=3,
        crop=(32, 32),
        online=True,
        online_size=(48, 64),
        online_clips=2,
        online_presets=("heavy",),
    )
    clips = OnlineRainClips(data, 0, None, synthetic_only=True)
    assert len(clips) == clips.num_clips == 2
    a = clips[SampleKey(0, 0, 0, 0)]
    b = clips[SampleKey(0, 0, 0, 0)]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert {"rain", "clean", "S", "U", "beta", "alpha", "A", "M"} <= set(a)
    # same clip and crop/flip stream (same position), next epoch: same clean, new rain
    c = clips[SampleKey(0, 1, 0, 0)]
    assert torch.equal(a["clean"], c["clean"])
    assert not torch.equal(a["rain"], c["rain"])
