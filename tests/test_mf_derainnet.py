"""derain.mf_derainnet: the correction delta_t depends on the single-frame variables it is given."""

from __future__ import annotations

import torch
from derain_helpers import rain_clip

from derain import build_model
from derain.heads import prior_raw


def test_mf_derainnet_corrects_the_single_frame_variables_it_is_given():
    """delta_t depends on v^S_t itself, not only on B^S_t: the same frames with another v^S give
    another correction."""
    torch.manual_seed(0)
    model = build_model()
    frame = rain_clip()[:, 0]
    raw = prior_raw(frame, direct=False)
    thicker = dict(raw, d=raw["d"] + 1.0)
    state = model.mf.init_state(frame)
    with torch.no_grad():
        where, context = model.position_map(frame), model.context_vector(frame)
        delta, _ = model.mf(frame, frame, raw, frame, frame, where, context, state)
        delta_thicker, _ = model.mf(frame, frame, thicker, frame, frame, where, context, state)
    assert set(delta) == set(raw)
    assert (delta["d"] - delta_thicker["d"]).abs().max() > 1e-4
