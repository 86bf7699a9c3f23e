"""derain.warp: backward warping by a flow in pixels, and which pixels it keeps in frame."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from derain import warp
from derain.warp import in_frame


def test_warp_zero_flow_is_identity():
    image = torch.rand(2, 5, 17, 23)
    out = warp(image, torch.zeros(2, 2, 17, 23))
    torch.testing.assert_close(out, image, rtol=0, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(dx=st.integers(-6, 6), dy=st.integers(-6, 6))
def test_warp_integer_shift_moves_image(dx, dy):
    h, w = 20, 24
    prev = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(dx * 13 + dy))
    # Content moves by (-dx, -dy) from t-1 to t: frame_t(x, y) = frame_{t-1}(x + dx, y + dy).
    flow = torch.zeros(1, 2, h, w)
    flow[:, 0], flow[:, 1] = dx, dy
    out = warp(prev, flow)
    ys, xs = slice(max(0, -dy), min(h, h - dy)), slice(max(0, -dx), min(w, w - dx))
    ys_src, xs_src = slice(ys.start + dy, ys.stop + dy), slice(xs.start + dx, xs.stop + dx)
    torch.testing.assert_close(out[..., ys, xs], prev[..., ys_src, xs_src], rtol=0, atol=1e-5)
    mask = in_frame(flow)[0, 0]
    assert mask[ys, xs].all() and mask.sum() == (ys.stop - ys.start) * (xs.stop - xs.start)


def test_warp_half_pixel_interpolates_and_rejects_bad_shapes():
    prev = torch.rand(1, 1, 4, 6)
    out = warp(prev, torch.full((1, 2, 4, 6), 0.5) * torch.tensor([1.0, 0.0]).view(1, 2, 1, 1))
    torch.testing.assert_close(out[..., :-1], 0.5 * (prev[..., :-1] + prev[..., 1:]))
    with pytest.raises(ValueError, match="flow"):
        warp(prev, torch.zeros(1, 3, 4, 6))
    with pytest.raises(ValueError, match="differ"):
        warp(prev, torch.zeros(1, 2, 4, 5))
