"""derain.keyed: the sampler's keyed order (resume, DDP shares) and augmentations that keep the
flow, the context and the row positions right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from derain.context import CONTEXT_SIZE, frame_context
from derain.data import collate
from derain.keyed import Augment, KeyedBatchSampler, augment_clip
from derain.metrics import warp_backward
from rainsynth.sources import open_source


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
    return {"clean": seq.frames.astype(np.float32) / 255}, seq.flow


def _warp_error(arrays: dict, flow: np.ndarray) -> float:
    """Mean |warp(B_{t-1}, flow) - B_t| over in-frame pixels (small when the flow is right)."""
    errors = []
    for t in range(1, len(arrays["clean"])):
        warped, valid = warp_backward(arrays["clean"][t - 1], flow[t - 1])
        errors.append(np.abs(warped - arrays["clean"][t])[valid].mean())
    return float(np.mean(errors))


@pytest.mark.parametrize("flip", ["hflip", "vflip"])
def test_flips_and_crops_keep_the_flow_consistent_with_the_frames(flip):
    arrays, flow = _clip_with_flow()
    zero = _warp_error(arrays, np.zeros_like(flow))
    assert _warp_error(arrays, flow) < 0.2 * zero  # the source's flow is right to begin with
    augment = Augment(hflip=flip == "hflip", vflip=flip == "vflip")
    for seed in range(6):  # random crops, flipped or not: the flow still fits the frames
        rng = np.random.default_rng(seed)
        out, out_flow = augment_clip(arrays, flow, (48, 64), augment, rng, False)
        assert out["clean"].shape == (4, 48, 64, 3) and out_flow.shape == (3, 48, 64, 2)
        assert _warp_error(out, out_flow) < 0.2 * zero
    flipped = []
    for seed in range(16):  # crop None: the whole frame
        out, out_flow = augment_clip(
            arrays, flow, None, augment, np.random.default_rng(seed), False
        )
        if not np.array_equal(out["clean"], arrays["clean"]):
            flipped.append((out, out_flow))
    assert 0 < len(flipped) < 16  # flips happen about half of the time
    out, out_flow = flipped[0]
    axis = 2 if flip == "hflip" else 1
    np.testing.assert_array_equal(out["clean"], np.flip(arrays["clean"], axis))
    sign = np.array([-1.0, 1.0] if flip == "hflip" else [1.0, -1.0], np.float32)
    good, wrong = _warp_error(out, out_flow), _warp_error(out, out_flow * sign)
    assert good < 0.2 * zero and wrong > 2 * good  # a flip that forgot to negate would fail


@pytest.mark.parametrize("reverse", [False, True])
def test_context_is_the_whole_frames_averaged_down_and_follows_flips_and_reversal(reverse):
    rng = np.random.default_rng(3)
    arrays = {
        "rain": rng.random((3, 40, 56, 3), np.float32),
        "clean": rng.random((3, 40, 56, 3), np.float32),
    }
    flips = Augment(hflip=True, context=True)
    for seed in range(4):  # the whole frame as the crop: the context must be the output's own
        out, _ = augment_clip(arrays, None, None, flips, np.random.default_rng(seed), reverse)
        frames = torch.from_numpy(np.ascontiguousarray(out["rain"])).permute(0, 3, 1, 2)
        expected = frame_context(frames).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(out["rain_context"], expected, atol=1e-6)
        cropped, _ = augment_clip(
            arrays, None, (16, 24), flips, np.random.default_rng(seed), reverse
        )
        assert cropped["rain"].shape[1:3] == (16, 24)
        assert cropped["rain_context"].shape == (3, CONTEXT_SIZE, CONTEXT_SIZE, 3)
    unflipped, _ = augment_clip(arrays, None, (16, 24), Augment(context=True), rng, reverse)
    frames = np.ascontiguousarray(arrays["rain"][::-1] if reverse else arrays["rain"])
    expected = frame_context(torch.from_numpy(frames).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    np.testing.assert_allclose(
        unflipped["rain_context"], expected.numpy(), atol=1e-6
    )  # not the crop's


@pytest.mark.parametrize("vflip", [False, True])
def test_rows_give_each_crop_row_its_position_in_the_frame_as_flipped(vflip):
    rng = np.random.default_rng(4)
    height = 40
    # frames whose every pixel holds its own row index: the crop shows which rows it took
    rows = np.arange(height, dtype=np.float32)[None, :, None, None]
    arrays = {"clean": np.broadcast_to(rows, (3, height, 56, 3)).copy()}
    for seed in range(6):
        augment = Augment(hflip=True, vflip=vflip, rows=True)
        rng = np.random.default_rng(seed)
        out, _ = augment_clip(arrays, None, (16, 24), augment, rng, seed % 2 == 1)
        assert out["rows"].shape == (3, 16, 1, 1)
        taken = out["clean"][0, :, 0, 0]  # frame rows, top to bottom of the crop as it is now
        expected = (height - 1 - taken) if vflip and taken[0] > taken[1] else taken
        np.testing.assert_allclose(out["rows"][0, :, 0, 0], expected / (height - 1), atol=1e-6)
        assert (out["rows"] == out["rows"][:1]).all()  # the same window in every frame
    without, _ = augment_clip(arrays, None, (16, 24), Augment(), rng, False)
    assert "rows" not in without


def test_reversal_drops_the_flow_and_collate_marks_which_samples_have_flow():
    arrays, flow = _clip_with_flow()
    out, out_flow = augment_clip(arrays, flow, (32, 32), Augment(), np.random.default_rng(0), True)
    assert out_flow is None
    cropped, _ = augment_clip(arrays, flow, (32, 32), Augment(), np.random.default_rng(0), False)
    np.testing.assert_array_equal(out["clean"], cropped["clean"][::-1])
    with_flow = {"clean": torch.zeros(4, 3, 8, 8), "flow": torch.ones(3, 2, 8, 8)}
    without = {"clean": torch.ones(4, 3, 8, 8)}
    assert set(collate([without, without])) == {"clean"}
    both = collate([with_flow, with_flow])
    assert set(both) == {"clean", "flow", "flow_valid"} and both["flow_valid"].all()
    mixed = collate([without, with_flow])
    assert mixed["clean"].shape == (2, 4, 3, 8, 8) and mixed["flow"].shape == (2, 3, 2, 8, 8)
    assert mixed["flow_valid"].tolist() == [False, True]
    assert not mixed["flow"][0].any() and mixed["flow"][1].eq(1).all()
