"""derain.heads: the layers from the raw outputs: transmission, the veil gate, additive rain, layout."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from derain.heads import (
    PRIOR_BETA,
    layers_from_raw,
    prior_raw,
    raw_channels,
    stack_raw,
    streak_bound,
)


@settings(max_examples=25, deadline=None)
@given(k=st.floats(-3.0, 3.0), depth=st.floats(-4.0, 4.0))
def test_transmission_is_exp_minus_k_d_and_reaches_one(k, depth):
    raw = prior_raw(torch.rand(2, 3, 4, 4), direct=False)
    raw["k"] = torch.full_like(raw["k"], k)
    raw["d"] = torch.full_like(raw["d"], depth)
    layers = layers_from_raw(raw)
    beta = layers["beta"]
    d = torch.nn.functional.softplus(torch.tensor(depth))
    expected = torch.exp(-min(max(k, 0.0), 1.0) * d)  # beta = exp(-k d), k in [0, 1], d > 0
    torch.testing.assert_close(beta, expected.expand_as(beta))
    assert 0 < beta.min() and beta.max() <= 1
    if k <= 0:  # the frame's veil switched off: beta exactly 1 everywhere
        assert (beta == 1).all()
    assert set(layers) == {"S", "U", "beta", "R", "A"}


@settings(max_examples=25, deadline=None)
@given(
    k=st.floats(-9.0, 3.0).filter(lambda k: k == 0 or abs(k) > 1e-6),  # no sign lost to float32
    target=st.sampled_from([0.8, 1.2]),
)
def test_a_shut_veil_gate_learns_only_to_come_back_into_range(k, target):
    """veil_scale: forward clamps k to [0, 1]; the gradient passes the clamp only inward."""
    raw = prior_raw(torch.rand(1, 3, 4, 4), direct=False)
    raw["k"] = torch.full_like(raw["k"], k).requires_grad_(True)
    beta = layers_from_raw(raw)["beta"]
    ((beta - target) ** 2).mean().backward()
    expected = PRIOR_BETA ** min(max(k, 0.0), 1.0)  # exp(-k d) at the prior depth, exp(-d) = 0.9
    assert beta.max().item() == pytest.approx(expected, rel=1e-5)
    grad, shut, full = raw["k"].grad.item(), k < 0, k > 1
    if target < 0.9:  # a thicker veil asked for: descent raises raw k, also where the gate is shut
        assert grad == 0 if full else grad < 0
    else:  # a veil thinner than none asked for: descent lowers raw k, but not further below 0
        assert grad == 0 if shut else grad > 0


@settings(max_examples=25, deadline=None)
@given(raw_s=st.floats(-5.0, 5.0), target=st.sampled_from([0.0, 0.3]))
def test_additive_rain_is_exactly_zero_below_and_can_come_back(raw_s, target):
    """layers_from_raw(additive=True): S, U = max(raw, 0); the gradient passes 0 only inward."""
    raw = prior_raw(torch.rand(1, 3, 4, 4), direct=False)
    for name in ("S", "U"):
        raw[name] = torch.full_like(raw[name], raw_s).requires_grad_(True)
    layers = layers_from_raw(raw, additive=True)
    sum(((layers[n] - target) ** 2).sum() for n in ("S", "U")).backward()
    for name in ("S", "U"):
        assert (layers[name] == max(raw_s, 0.0)).all()
        grad = raw[name].grad
        if raw_s < 0 and target == 0.0:  # already none, and none asked for: no push further down
            assert not grad.any()
        elif raw_s < 0:  # rain asked for where there is none: descent raises raw S
            assert (grad < 0).all()
    torch.testing.assert_close(layers_from_raw(raw)["S"], raw["S"])  # off: unbounded as before


@pytest.mark.parametrize("direct", [False, True])
def test_stack_raw_lays_out_pixel_then_per_frame_variables(direct):
    raw = prior_raw(torch.rand(2, 3, 4, 6), direct=direct)
    raw = {k: torch.rand_like(v) for k, v in raw.items()}
    stacked = stack_raw(raw)
    assert stacked.shape == (2, raw_channels(direct), 4, 6)
    order = ["S", "U", "d", "R", *(["B"] if direct else []), "A", "k"]
    parts = stacked.split([raw[k].shape[1] for k in order], dim=1)
    for name, part in zip(order, parts, strict=True):
        torch.testing.assert_close(part, raw[name].expand_as(part), rtol=0, atol=0)


@settings(max_examples=25, deadline=None)
@given(
    background=st.floats(0.0, 0.7),
    streak=st.floats(0.0, 0.3),
    shift=st.floats(-0.2, 0.2),
)
def test_streak_bound_is_the_light_frame_t_gained_in_every_channel(background, streak, shift):
    """streak_bound: a grey streak over a steady background is let through whole; texture that
    both frames share (or that darkened) leaves no room for a streak; never negative."""
    prev = torch.full((1, 3, 2, 2), background)
    rain_t = prev + streak
    torch.testing.assert_close(streak_bound(rain_t, prev), torch.full((1, 1, 2, 2), streak))
    coloured = prev.clone()
    coloured[:, 1] += shift  # one channel changed: the bound is the smallest gain of the three
    bound = streak_bound(coloured, prev)
    assert bound.shape == (1, 1, 2, 2) and (bound >= 0).all()
    torch.testing.assert_close(bound, torch.zeros_like(bound))  # other channels gained nothing


def test_streak_bound_window_forgives_texture_the_flow_misplaces():
    """A bright texture pixel moved by one pixel between the frames: the pixel bound takes it
    for a streak, the 3x3 one does not; an isolated streak passes both whole."""
    prev = torch.zeros(1, 3, 5, 5)
    prev[..., 2, 2] = 0.6
    rain_t = torch.roll(prev, 1, dims=-1)  # the texture one pixel to the right
    assert streak_bound(rain_t, prev, 1)[0, 0, 2, 3] == pytest.approx(0.6)
    assert streak_bound(rain_t, prev, 3).max() == 0
    streak = torch.zeros(1, 3, 5, 5)
    streak[..., 0, 4] = 0.3
    assert streak_bound(streak, prev, 3)[0, 0, 0, 4] == pytest.approx(0.3)
