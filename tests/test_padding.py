"""derain.padding: InputPadder pads to a multiple (replicate or reflect) and unpads exactly."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from derain import InputPadder


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 40),
    w=st.integers(1, 40),
    multiple=st.sampled_from([1, 8, 16, 32]),
    video=st.booleans(),
)
def test_padder_round_trip(h, w, multiple, video):
    shape = (2, 2, 3, h, w) if video else (2, 3, h, w)
    x = torch.rand(shape)
    padder = InputPadder(x.shape, multiple=multiple)
    padded = padder.pad(x)
    assert padded.shape[:-2] == x.shape[:-2]
    assert padded.shape[-2] % multiple == 0 and padded.shape[-1] % multiple == 0
    assert padded.shape[-2] - h < multiple and padded.shape[-1] - w < multiple
    assert torch.equal(padder.unpad(padded), x)


def test_padder_replicates_border_and_unpads_other_channels():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).reshape(2, 3, 5, 6)
    padder = InputPadder(x.shape, multiple=8)
    padded = padder.pad(x)
    left, _, top, _ = padder.pads
    assert padded.shape == (2, 3, 8, 8)
    assert torch.equal(padded[..., 0, left : left + 6], x[..., 0, :])  # top row repeated
    assert torch.equal(padded[..., top : top + 5, -1], x[..., :, -1])  # right column repeated
    flow = torch.rand(2, 2, 8, 8)
    assert padder.unpad(flow).shape == (2, 2, 5, 6)


def test_padder_reflect_and_bad_input():
    x = torch.rand(1, 3, 30, 30)
    padded = InputPadder(x.shape, multiple=16, mode="reflect").pad(x)
    assert torch.equal(padded[..., 0, 1:31], x[..., 1, :])  # reflected, not repeated
    with pytest.raises(ValueError, match="reflect"):
        InputPadder((1, 3, 2, 2), multiple=16, mode="reflect")
    with pytest.raises(ValueError, match="mode"):
        InputPadder(x.shape, mode="zeros")
    with pytest.raises(ValueError, match="made for"):
        InputPadder(x.shape).pad(torch.rand(1, 3, 31, 30))
