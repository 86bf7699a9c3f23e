"""derain.data: keyed order (resume, DDP shares), augmentations that keep the flow right."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from derain_helpers import make_dataset

from derain.context import CONTEXT_SIZE, frame_context
from derain.data import (
    Augment,
    DatasetClips,
    KeyedBatchSampler,
    OnlineRainClips,
    SampleKey,
    augment_clip,
    collate,
)
from derain.metrics import warp_backward
from rainsynth.errors import RainsynthError
from rainsynth.sources import open_source


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "tiny")


def test_sampler_covers_each_clip_once_per_epoch_and_is_keyed():
    sampler = KeyedBatchSampler(n=7, batch_size=3, seed=5, start=0, stop=14)
    keys = [k for batch in sampler for k in batch]
    for epoch in range(5):
        in_epoch = [k.index for k in keys if k.epoch == epoch]
        assert sorted(in_epoch) == list(range(7))
    assert [k.position for k in keys] == list(range(42))
    assert keys[:7] != sorted(keys[:7], key=lambda k: k.index)  # shuffled
    other = KeyedBatchSampler(n=7, batch_size=3, seed=6, start=0, stop=14)
    assert [k.index for b in other for k in b] != [k.index for k in keys]


def test_sampler_resumed_at_an_iteration_gives_the_same_batches():
    full = list(KeyedBatchSampler(n=5, batch_size=2, seed=0, start=0, stop=12))
    resumed = list(KeyedBatchSampler(n=5, batch_size=2, seed=0, start=7, stop=12))
    assert resumed == full[7:]


def test_ddp_ranks_split_the_global_batch_without_overlap():
    single = KeyedBatchSampler(n=9, batch_size=4, seed=1, start=0, stop=6)
    ranks = [KeyedBatchSampler(9, 2, 1, 0, 6, rank=r, world=2) for r in range(2)]
    for iteration, batch in enumerate(single):
        shares = [s.keys(iteration) for s in ranks]
        assert shares[0] + shares[1] == batch
        assert not {k.position for k in shares[0]} & {k.position for k in shares[1]}


def _clip_with_flow(frames: int = 4):
    seq = open_source("builtin", frames=frames, size=(64, 96), seed=0, count=1).read(
        open_source("builtin", frames=frames, size=(64, 96), seed=0, count=1).sequences()[0]
    )
    assert seq.flow is not None
    return {"B": seq.frames.astype(np.float32) / 255}, seq.flow


def _warp_error(arrays: dict, flow: np.ndarray) -> float:
    """Mean |warp(B_{t-1}, flow) - B_t| over in-frame pixels (small when the flow is right)."""
    errors = []
    for t in range(1, len(arrays["B"])):
        warped, valid = warp_backward(arrays["B"][t - 1], flow[t - 1])
        errors.append(np.abs(warped - arrays["B"][t])[valid].mean())
    return float(np.mean(errors))


@pytest.mark.parametrize("flip", ["hflip", "vflip"])
def test_flips_and_crops_keep_the_flow_consistent_with_the_frames(flip):
    arrays, flow = _clip_with_flow()
    zero = _warp_error(arrays, np.zeros_like(flow))
    assert _warp_error(arrays, flow) < 0.2 * zero  # the source's flow is right to begin with
    crop = Augment((48, 64), hflip=flip == "hflip", vflip=flip == "vflip", reverse=False)
    for seed in range(6):  # random crops, flipped or not: the flow still fits the frames
        out, out_flow = augment_clip(arrays, flow, crop, np.random.default_rng(seed), False)
        assert out["B"].shape == (4, 48, 64, 3) and out_flow.shape == (3, 48, 64, 2)
        assert _warp_error(out, out_flow) < 0.2 * zero
    whole = crop._replace(crop=(64, 96))
    flipped = []
    for seed in range(16):
        out, out_flow = augment_clip(arrays, flow, whole, np.random.default_rng(seed), False)
        if not np.array_equal(out["B"], arrays["B"]):
            flipped.append((out, out_flow))
    assert 0 < len(flipped) < 16  # flips happen about half of the time
    out, out_flow = flipped[0]
    axis = 2 if flip == "hflip" else 1
    np.testing.assert_array_equal(out["B"], np.flip(arrays["B"], axis))
    sign = np.array([-1.0, 1.0] if flip == "hflip" else [1.0, -1.0], np.float32)
    good, wrong = _warp_error(out, out_flow), _warp_error(out, out_flow * sign)
    assert good < 0.2 * zero and wrong > 2 * good  # a flip that forgot to negate would fail


@pytest.mark.parametrize("reverse", [False, True])
def test_context_is_the_whole_frames_averaged_down_and_follows_flips_and_reversal(reverse):
    rng = np.random.default_rng(3)
    arrays = {
        "O": rng.random((3, 40, 56, 3), np.float32),
        "B": rng.random((3, 40, 56, 3), np.float32),
    }
    whole = Augment((40, 56), hflip=True, context=True)
    for seed in range(4):  # the whole frame as the crop: the context must be the output's own
        out, _ = augment_clip(arrays, None, whole, np.random.default_rng(seed), reverse)
        frames = torch.from_numpy(np.ascontiguousarray(out["O"])).permute(0, 3, 1, 2)
        expected = frame_context(frames).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(out["O_context"], expected, atol=1e-6)
        cropped, _ = augment_clip(
            arrays, None, Augment((16, 24), context=True), np.random.default_rng(seed), reverse
        )
        assert cropped["O"].shape[1:3] == (16, 24)
        assert cropped["O_context"].shape == (3, CONTEXT_SIZE, CONTEXT_SIZE, 3)
    unflipped, _ = augment_clip(
        arrays, None, Augment((16, 24), hflip=False, context=True), rng, reverse
    )
    frames = np.ascontiguousarray(arrays["O"][::-1] if reverse else arrays["O"])
    expected = frame_context(torch.from_numpy(frames).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    np.testing.assert_allclose(
        unflipped["O_context"], expected.numpy(), atol=1e-6
    )  # not the crop's


@pytest.mark.parametrize("vflip", [False, True])
def test_rows_give_each_crop_row_its_position_in_the_frame_as_flipped(vflip):
    rng = np.random.default_rng(4)
    height = 40
    # frames whose every pixel holds its own row index: the crop shows which rows it took
    rows = np.arange(height, dtype=np.float32)[None, :, None, None]
    arrays = {"B": np.broadcast_to(rows, (3, height, 56, 3)).copy()}
    for seed in range(6):
        augment = Augment((16, 24), hflip=True, vflip=vflip, rows=True)
        out, _ = augment_clip(arrays, None, augment, np.random.default_rng(seed), seed % 2 == 1)
        assert out["rows"].shape == (3, 16, 1, 1)
        taken = out["B"][0, :, 0, 0]  # frame rows, top to bottom of the crop as it is now
        expected = (height - 1 - taken) if vflip and taken[0] > taken[1] else taken
        np.testing.assert_allclose(out["rows"][0, :, 0, 0], expected / (height - 1), atol=1e-6)
        assert (out["rows"] == out["rows"][:1]).all()  # the same window in every frame
    without, _ = augment_clip(arrays, None, Augment((16, 24)), rng, False)
    assert "rows" not in without


def test_cached_clips_give_the_same_samples_as_read_from_disk(dataset):
    keys = [SampleKey(i % 6, i // 6, i, i // 2) for i in range(14)]  # over two epochs
    plain = DatasetClips([str(dataset)], "train", (), 3, Augment((32, 40)), seed=0)
    cached = DatasetClips([str(dataset)], "train", (), 3, Augment((32, 40)), seed=0, cache=True)
    for key in keys:
        a, b = plain[key], cached[key]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(cached.cache) == list(range(6))  # every clip read once, then held


def test_reversal_drops_the_flow_and_collate_marks_which_samples_have_flow():
    arrays, flow = _clip_with_flow()
    augment = Augment((32, 32), hflip=False, reverse=True)
    out, out_flow = augment_clip(arrays, flow, augment, np.random.default_rng(0), True)
    assert out_flow is None
    cropped, _ = augment_clip(arrays, flow, augment, np.random.default_rng(0), False)
    np.testing.assert_array_equal(out["B"], cropped["B"][::-1])
    with_flow = {"B": torch.zeros(4, 3, 8, 8), "flow": torch.ones(3, 2, 8, 8)}
    without = {"B": torch.ones(4, 3, 8, 8)}
    assert set(collate([without, without])) == {"B"}
    both = collate([with_flow, with_flow])
    assert set(both) == {"B", "flow", "flow_valid"} and both["flow_valid"].all()
    mixed = collate([without, with_flow])
    assert mixed["B"].shape == (2, 4, 3, 8, 8) and mixed["flow"].shape == (2, 3, 2, 8, 8)
    assert mixed["flow_valid"].tolist() == [False, True]
    assert not mixed["flow"][0].any() and mixed["flow"][1].eq(1).all()


def test_dataset_samples_have_the_documented_shapes_and_are_keyed(dataset):
    clips = DatasetClips([str(dataset)], "train", (), 3, Augment((32, 40)), seed=0)
    assert len(clips) == 6
    key = SampleKey(index=2, epoch=0, position=2, iteration=1)
    sample = clips[key]
    shapes = {k: tuple(v.shape) for k, v in sample.items()}
    expected = {
        "O": (3, 3, 32, 40),
        "B": (3, 3, 32, 40),
        **{k: (3, 1, 32, 40) for k in ("S", "U", "beta", "alpha")},
        **{k: (3, 3, 1, 1) for k in ("A", "M")},
    }
    if "flow" in sample:
        expected["flow"] = (2, 2, 32, 40)
    assert shapes == expected
    with_context = DatasetClips([str(dataset)], "train", (), 3, Augment((32, 40), context=True))
    rest = with_context[key]  # the same sample, plus the context for a model with frame_context
    assert tuple(rest.pop("O_context").shape) == (3, 3, CONTEXT_SIZE, CONTEXT_SIZE)
    assert rest.keys() == sample.keys() and all(torch.equal(rest[k], sample[k]) for k in sample)
    assert all(v.dtype == torch.float32 for v in sample.values())
    again = clips[key]
    assert all(torch.equal(sample[k], again[k]) for k in sample)
    other = clips[SampleKey(2, 1, 8, 1)]
    assert not torch.equal(sample["O"], other["O"])  # another position, another crop


def test_dataset_presets_filter_and_errors(dataset):
    heavy = DatasetClips([str(dataset)], "train", ("heavy",), 3, None)
    assert len(heavy) == 3 and all(c.preset == "heavy" for c in heavy.clips)
    with pytest.raises(RainsynthError, match="smaller than the crop"):
        DatasetClips([str(dataset)], "train", (), 3, Augment((64, 64)))
    with pytest.raises(RainsynthError, match="fewer than frames"):
        DatasetClips([str(dataset)], "train", (), 9, None)
    with pytest.raises(RainsynthError, match="no train clips"):
        DatasetClips([str(dataset)], "train", ("streaks",), 3, None)


def test_clean_only_and_flow_only_clips_for_flow_pretraining(dataset):
    everything = DatasetClips([str(dataset)], "train", (), 3, None)
    clean = DatasetClips([str(dataset)], "train", (), 3, None, clean_only=True, flow_only=True)
    assert len(clean) == len(everything) and all(c.has_flow for c in clean.clips)
    assert set(clean[SampleKey(0, 0, 0, 0)]) == {"B", "flow"}
    torch.testing.assert_close(
        clean[SampleKey(0, 0, 0, 0)]["B"], everything[SampleKey(0, 0, 0, 0)]["B"]
    )
    assert not any(c.has_flow for c in DatasetClips([str(dataset)], "test", (), 3, None).clips)
    with pytest.raises(RainsynthError, match="no test clips .* with flow"):
        DatasetClips([str(dataset)], "test", (), 3, None, flow_only=True)


def test_online_rain_is_deterministic_and_new_every_epoch():
    clips = OnlineRainClips(
        "builtin", 3, (48, 64), 2, Augment((32, 32)), 0, presets=("heavy",), synthetic_only=True
    )
    assert len(clips) == 2
    a = clips[SampleKey(0, 0, 0, 0)]
    b = clips[SampleKey(0, 0, 0, 0)]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert {"O", "B", "S", "U", "beta", "alpha", "A", "M"} <= set(a)
    # same clip and crop/flip stream (same position), next epoch: same clean, new rain
    c = clips[SampleKey(0, 1, 0, 0)]
    assert torch.equal(a["B"], c["B"])
    assert not torch.equal(a["O"], c["O"])
