"""The rain gate (derain.gate, ModelConfig.rain_gate): a closed gate returns the input exactly."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from derain import build_model
from derain.gate import gated, rain_present
from derain.losses import gate_loss

CONFIG = dict(base_channels=4, frame_context=True, row_position=True, rain_gate=True)


def _clip(seed: int = 0) -> torch.Tensor:
    return torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _set_gate(model, bias: float) -> None:
    with torch.no_grad():
        model.gate.out.weight.zero_()
        model.gate.out.bias.fill_(bias)


def test_closed_gate_returns_every_frame_exactly():
    torch.manual_seed(0)
    model = build_model(**CONFIG)
    _set_gate(model, -2.0)
    clip = _clip()
    with torch.no_grad():
        out = model(clip)
    assert torch.equal(out["g"], torch.zeros(2, 3, 1, 1, 1))
    assert torch.equal(out["B"], clip) and torch.equal(out["B_S"], clip)


def test_open_gate_is_eq6_unchanged():
    torch.manual_seed(0)
    model = build_model(**CONFIG)
    _set_gate(model, 3.0)
    clip = _clip(1)
    with torch.no_grad():
        gated_out = model(clip)
        model.gate = None
        plain = model(clip)
    assert torch.equal(gated_out["g"], torch.ones(2, 3, 1, 1, 1))
    assert torch.allclose(gated_out["B"], plain["B"], atol=1e-6) and "g" not in plain


def test_default_model_has_no_gate_and_its_outputs_no_g():
    model = build_model(base_channels=4)
    assert model.gate is None
    assert not any(name.startswith("gate.") for name in model.state_dict())


@settings(max_examples=25, deadline=None)
@given(raw=st.floats(-3.0, 3.0), target=st.sampled_from([0.0, 1.0]))
def test_gate_is_clamped_and_its_gradient_only_points_back_into_range(raw, target):
    """g = clamp(raw, 0, 1) (shut at exactly 0); outside [0, 1] the gradient flows only inward."""
    model = build_model(**CONFIG)
    _set_gate(model, raw)
    out = model(_clip())
    g = out["g"]
    assert torch.allclose(g, torch.full_like(g, min(max(raw, 0.0), 1.0)))
    ((g - target) ** 2).sum().backward()
    grad = model.gate.out.bias.grad.item()
    outward = (raw < 0 and target == 0.0) or (raw > 1 and target == 1.0)
    inward_needed = (raw < 0 and target == 1.0) or (raw > 1 and target == 0.0)
    if outward:
        assert grad == 0.0
    if inward_needed:
        assert grad != 0.0 and (grad < 0) == (raw < 0)  # descent moves raw back towards [0, 1]


def test_gated_blends_input_and_estimate():
    rain, clean = torch.zeros(1, 3, 2, 2), torch.ones(1, 3, 2, 2)
    half = torch.full((1, 1, 1, 1), 0.5)
    assert torch.equal(gated(rain, clean, half), torch.full((1, 3, 2, 2), 0.5))


@pytest.mark.parametrize(
    ("change", "expected"), [(0.0, 0.0), (0.4 / 255, 0.0), (1.0 / 255, 1.0), (-0.2, 1.0)]
)
def test_rain_present_needs_a_change_above_half_a_level(change, expected):
    clean = torch.full((1, 2, 3, 8, 8), 0.5)
    rain = clean.clone()
    rain[0, 1, 2, 3, 4] += change  # one pixel of the second frame
    present = rain_present(rain, clean)
    assert present.shape == (1, 2, 1, 1, 1)
    assert present[0, 0].item() == 0.0 and present[0, 1].item() == expected


def test_l_gate_scores_the_gate_against_rain_presence():
    torch.manual_seed(0)
    model = build_model(**CONFIG)
    clip = _clip(2)
    batch = {
        "rain": clip,
        "clean": clip.clone(),  # rain-free: the gate's target is 0
    }
    losses = {}
    for bias in (-1.0, 2.0):  # shut, open
        _set_gate(model, bias)
        with torch.no_grad():
            losses[bias] = gate_loss(model(clip), batch).item()
    assert losses[-1.0] == 0.0 and losses[2.0] == pytest.approx(1.0, abs=2e-3)
