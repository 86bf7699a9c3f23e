"""The deraining network: padding, warping, Eq. 6, shapes, gradients, recurrence, autocast."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from derain import InputPadder, ModelConfig, State, build_flownet, build_model, warp
from derain.context import frame_context, row_positions
from derain.convlstm import ConvLSTMCell
from derain.flownet import local_contrast
from derain.heads import PRIOR_BETA, layers_from_raw, prior_raw, raw_channels, stack_raw
from derain.recovery import InverseRecovery, recover, residual_target
from derain.warp import in_frame

ABLATIONS = ("v1", "v2", "v3", "v4", "v5")
N, T, H, W = 1, 3, 32, 32


def rain_clip(seed: int = 0, n: int = N, t: int = T, h: int = H, w: int = W) -> torch.Tensor:
    return torch.rand(n, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


# --- InputPadder -------------------------------------------------------------------------------


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


# --- warping -----------------------------------------------------------------------------------


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


# --- Eq. 6 -------------------------------------------------------------------------------------


def _render(preset: str, **occlusion):
    rainsynth = pytest.importorskip("rainsynth")
    if not hasattr(rainsynth, "render"):
        pytest.skip("rainsynth.render is not available")
    t, h, w = 3, 48, 64
    params = rainsynth.sample_params(preset, seed=3, shape=(t, h, w))
    if occlusion:
        params = dataclasses.replace(
            params, occlusion=dataclasses.replace(params.occlusion, **occlusion)
        )
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.1, 0.6, (t, h, w, 3)).astype(np.float32)
    clip = rainsynth.render(clean, params)
    to_torch = {
        k: torch.from_numpy(np.ascontiguousarray(v)).permute(0, 3, 1, 2)
        for k, v in clip.layers.items()
    }
    return (
        torch.from_numpy(clean).permute(0, 3, 1, 2),
        torch.from_numpy(clip.rain).permute(0, 3, 1, 2),
        to_torch,
    )


def test_eq6_inverts_rainsynth_composition_without_occlusion():
    clean, rain, layers = _render("light", density=0.0)
    assert float(layers["alpha"].abs().max()) == 0.0
    assert float(layers["S"].max()) > 0.0 and float(layers["beta"].min()) < 1.0  # rain is there
    estimate = recover(rain, layers["S"], layers["U"], layers["beta"], layers["A"], R=0.0)
    unclipped = (rain > 0) & (rain < 1)  # the renderer clips O~ to [0, 1]
    assert unclipped.float().mean() > 0.9
    torch.testing.assert_close(estimate[unclipped], clean[unclipped], rtol=0, atol=2e-5)
    assert (estimate - rain).abs().max() > 0.05  # and the inversion did something


def test_residual_target_makes_eq6_exact_with_occlusion():
    clean, rain, layers = _render("heavy")
    parts = [layers[k] for k in ("S", "U", "beta", "A")]
    R = residual_target(clean, rain, *parts)
    torch.testing.assert_close(recover(rain, *parts, R=R), clean, rtol=0, atol=1e-5)


def test_recovery_switch_predicts_b_directly():
    rain = torch.rand(2, 3, 8, 8)
    raw = prior_raw(rain, direct=True)
    raw["B"] = torch.rand(2, 3, 8, 8)
    layers = layers_from_raw(raw)
    torch.testing.assert_close(InverseRecovery(False)(rain, layers), rain + raw["B"])
    expected = (rain - (1 - 0.9) * 0.8) / 0.9  # the prior veil: beta 0.9, grey light 0.8
    torch.testing.assert_close(InverseRecovery(True)(rain, layers), expected)


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


# --- the model ---------------------------------------------------------------------------------


def _expected_shapes(name: str) -> dict[str, tuple[int, ...]]:
    layer = {"S": 1, "U": 1, "beta": 1, "R": 3}
    stages = ["M"] if name == "v1" else ["S", "M"]
    shapes = {"B": (N, T, 3, H, W), "flow": (N, T, 2, H, W)}
    for s in stages:
        shapes.update({f"{k}_{s}": (N, T, c, H, W) for k, c in layer.items()})
        shapes[f"A_{s}"] = (N, T, 3, 1, 1)
    if name != "v1":
        shapes["B_S"] = (N, T, 3, H, W)
    return shapes


@pytest.mark.parametrize("name", ABLATIONS)
def test_output_shapes_every_ablation(name):
    torch.manual_seed(0)
    model = build_model(ModelConfig.ablation(name))
    out = model(rain_clip())
    assert {k: tuple(v.shape) for k, v in out.items()} == _expected_shapes(name)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in out.values())
    for s in ("S", "M"):
        if f"beta_{s}" in out:
            assert 0 < out[f"beta_{s}"].min() and out[f"beta_{s}"].max() <= 1
            assert 0 < out[f"A_{s}"].min() and out[f"A_{s}"].max() < 1
    assert not out["flow"][:, 0].any()  # no previous frame at t = 0
    if name == "v4":
        assert not out["flow"].any()
    else:
        assert out["flow"][:, 1:].abs().sum() > 0


@pytest.mark.parametrize("name", ABLATIONS)
def test_gradients_reach_every_parameter(name):
    torch.manual_seed(0)
    model = build_model(ModelConfig.ablation(name))
    if model.mf.memory is not None:  # zero at start (see below): the LSTM learns once it is not
        nn.init.normal_(model.mf.memory.weight, std=0.1)
    out = model(rain_clip())
    loss = sum(v.square().mean() for v in out.values())
    loss.backward()
    trainable = {k: p for k, p in model.named_parameters() if p.requires_grad}
    missing = [k for k, p in trainable.items() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing
    flow_params = [p for p in model.flownet.parameters()]
    assert all(p.requires_grad for p in flow_params) == (name != "v4")
    heads = {
        "sf.head.pixel.weight",
        "sf.head.globals.weight",
        "mf.head.pixel.weight",
        "mf.head.globals.weight",
    }
    assert {k for k in heads if name != "v1" or k.startswith("mf")} <= set(trainable)


def test_step_over_a_sequence_equals_forward():
    torch.manual_seed(0)
    model = build_model()
    rain = rain_clip(n=2)
    with torch.no_grad():
        whole = model(rain)
        state = model.init_state(rain[:, 0])
        steps = []
        for t in range(T):
            out, state = model.step(rain[:, t], state)
            steps.append(out)
            state = state.detach()
    for k, v in whole.items():
        torch.testing.assert_close(torch.stack([s[k] for s in steps], dim=1), v, rtol=0, atol=0)
    assert isinstance(state, State) and state.clean_prev.shape == (2, 3, H, W)
    assert state.lstm[0].dtype == torch.float32 and state.lstm[0].shape == (2, 64, H // 4, W // 4)


def test_state_carries_memory():
    torch.manual_seed(0)
    model = build_model()
    rain = rain_clip()
    other = rain.clone()
    other[:, 0] = 1 - other[:, 0]  # change only the first frame
    with torch.no_grad():
        b, b_other = model(rain)["B"], model(other)["B"]
    assert (b[:, 2] - b_other[:, 2]).abs().max() > 1e-4  # the last frame remembers the first


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


def test_autocast_bfloat16_cpu():
    torch.manual_seed(0)
    model = build_model()
    rain = rain_clip()
    with torch.no_grad():
        ref = model(rain)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(rain)
        loss = sum(v.square().mean() for v in out.values())
    loss.backward()
    for k, v in out.items():
        assert v.dtype == torch.float32 and torch.isfinite(v).all(), k
    assert (out["B"] - ref["B"]).abs().mean() < 0.05
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_channels_last_gives_the_same_outputs():
    torch.manual_seed(0)
    model = build_model()
    rain = rain_clip()
    with torch.no_grad():
        ref = model(rain)
        model = model.to(memory_format=torch.channels_last)
        state = model.init_state(rain[:, 0])
        for t in range(T):
            out, state = model.step(rain[:, t].contiguous(memory_format=torch.channels_last), state)
    for k, v in out.items():
        torch.testing.assert_close(v, ref[k][:, -1], rtol=1e-4, atol=1e-5, msg=k)


def test_bad_input_is_a_clear_error():
    model = build_model()
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.rand(1, 2, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\(N,T,3,H,W\)"):
        model(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(N,3,H,W\)"):
        model.step(torch.rand(1, 4, 32, 32), model.init_state(torch.rand(1, 3, 32, 32)))
    with pytest.raises(ValueError, match="float"):
        model(torch.zeros(1, 2, 3, 32, 32, dtype=torch.uint8))
    _, state = model.step(torch.rand(1, 3, 32, 32), model.init_state(torch.rand(1, 3, 32, 32)))
    with pytest.raises(ValueError, match="init_state"):
        model.step(torch.rand(1, 3, 32, 48), state)


def test_full_model_starts_as_v2_and_its_memory_learns():
    """The ConvLSTM memory enters through a zero-initialised projection: from one seed, v5 draws
    v2's initial weights and computes v2's output; the projection is the first to get a gradient."""
    clip = rain_clip()
    torch.manual_seed(3)
    v2 = build_model(ModelConfig.ablation("v2"))
    torch.manual_seed(3)
    v5 = build_model(ModelConfig.ablation("v5"))
    shared, full = v2.state_dict(), v5.state_dict()
    assert all(torch.equal(t, full[k]) for k, t in shared.items())
    assert set(full) - set(shared) == {
        f"mf.{m}.{p}" for m in ("memory", "lstm.gates") for p in ("weight", "bias")
    }
    out5 = v5(clip)
    torch.testing.assert_close(out5["B"], v2(clip)["B"], rtol=0, atol=0)
    out5["B"].square().mean().backward()
    assert v5.mf.memory.weight.grad.abs().sum() > 0
    assert not v5.mf.lstm.gates.weight.grad.any()


def test_frame_context_is_opt_in_read_by_the_per_frame_heads_and_checked():
    plain = build_model()
    assert plain.context is None and not any(k.startswith("context.") for k in plain.state_dict())
    assert plain.context_vector(rain_clip()[:, 0]).shape == (N, 0)
    torch.manual_seed(0)
    model = build_model(frame_context=True)
    rain = rain_clip()
    with torch.no_grad():
        own = model(rain)
        explicit = model(rain, frame_context(rain))
        other = model(rain, frame_context(rain_clip(seed=1)))
    torch.testing.assert_close(own["B"], explicit["B"], rtol=0, atol=0)  # default: its own frames
    assert (own["beta_S"] - other["beta_S"]).abs().max() > 0  # another whole frame, another k
    # the context reaches only the per-frame variables: the pixel maps stay as they are
    torch.testing.assert_close(own["S_S"], other["S_S"], rtol=0, atol=0)
    loss = model(rain)["B"].square().mean()
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.context.parameters())
    with pytest.raises(ValueError, match="context must be"):
        model.step(rain[:, 0], model.init_state(rain[:, 0]), torch.rand(N, 3, 32, 32))


def test_row_position_is_opt_in_read_by_both_stages_and_checked():
    plain = build_model()
    assert plain.position_map(rain_clip()[:, 0]).shape == (N, 0, H, W)
    torch.manual_seed(0)
    model = build_model(row_position=True)
    rain = rain_clip()
    own = row_positions(0, H, H).view(1, 1, 1, H, 1).expand(N, T, 1, H, 1)
    lower = row_positions(H, H, 2 * H).view(1, 1, 1, H, 1).expand(N, T, 1, H, 1)  # bottom half
    with torch.no_grad():
        default, explicit, moved = model(rain), model(rain, rows=own), model(rain, rows=lower)
    torch.testing.assert_close(default["B"], explicit["B"], rtol=0, atol=0)  # default: its own
    for stage in ("S", "M"):  # the same pixels lower in the frame: another estimate
        assert (default[f"U_{stage}"] - moved[f"U_{stage}"]).abs().max() > 0
    model(rain, rows=lower)["B"].square().mean().backward()
    first_convs = (model.sf.encoder.stages[0][0], model.mf.rain_encoder.stages[0][0])
    assert all(conv.weight.grad[:, -1].abs().sum() > 0 for conv in first_convs)
    assert plain.sf.encoder.stages[0][0].in_channels + 1 == first_convs[0].in_channels
    with pytest.raises(ValueError, match="rows must be"):
        model.step(rain[:, 0], model.init_state(rain[:, 0]), rows=torch.rand(N, 1, H + 1, 1))


def test_row_positions_run_top_to_bottom_and_clamp_padding():
    torch.testing.assert_close(row_positions(0, 5, 5), torch.tensor([0, 0.25, 0.5, 0.75, 1]))
    torch.testing.assert_close(row_positions(-2, 4, 3), torch.tensor([0, 0, 0, 0.5]))
    torch.testing.assert_close(row_positions(2, 3, 4), torch.tensor([2 / 3, 1, 1]))
    assert row_positions(0, 2, 1).tolist() == [0, 0]  # a one-row frame


def test_model_config_ablations_and_round_trip():
    assert ModelConfig.ablation("v1").use_sf is False
    assert ModelConfig.ablation("v2").use_lstm is False
    assert ModelConfig.ablation("v3").use_recovery is False
    assert ModelConfig.ablation("v4").use_align is False
    assert ModelConfig.ablation("v5") == ModelConfig()
    config = ModelConfig.ablation("v2", size="paper", base_channels=8)
    assert ModelConfig.from_dict(config.to_dict()) == config
    assert config.channels == (8, 16, 32, 32)
    with pytest.raises(ValueError, match="v6"):
        ModelConfig.ablation("v6")
    with pytest.raises(ValueError, match="huge"):
        ModelConfig(size="huge")
    with pytest.raises(ValueError, match="colour"):
        ModelConfig.from_dict({"colour": 1})
    with pytest.raises(ValueError, match="base_channels"):
        ModelConfig(base_channels=0)
    model = build_model({"size": "small", "use_lstm": False}, base_channels=8)
    assert model.config == ModelConfig(use_lstm=False, base_channels=8)
    assert model.mf.lstm is None and model.size_multiple == 16


def test_size_multiple_and_param_counts():
    small, paper = build_model(size="small"), build_model(size="paper")
    assert small.size_multiple == 16 and paper.size_multiple == 32
    n_small = sum(p.numel() for p in small.parameters())
    n_paper = sum(p.numel() for p in paper.parameters())
    assert 3e5 < n_small < 1e6 < n_paper


def test_flownet_shape_and_size_check():
    net = build_flownet(size="small")
    a, b = torch.rand(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
    flow = net(a, b)
    assert flow.shape == (2, 2, 32, 48) and flow.dtype == torch.float32
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.rand(1, 3, 24, 32), torch.rand(1, 3, 24, 32))


def test_local_contrast_normalises_luma():
    g = torch.Generator().manual_seed(3)
    frame = 0.2 + 0.5 * torch.rand(2, 3, 20, 24, generator=g)
    contrast = local_contrast(frame)
    assert contrast.shape == (2, 1, 20, 24) and contrast.dtype == torch.float32
    torch.testing.assert_close(local_contrast(frame + 0.1), contrast, atol=1e-4, rtol=0)
    assert local_contrast(torch.full((1, 3, 16, 16), 0.6)).abs().max() < 1e-5  # flat stays flat
    edge = torch.zeros(1, 3, 16, 16)
    edge[..., 8:] = 1.0  # a vertical step: dark left, bright right
    c = local_contrast(edge)[0, 0]
    assert (c[:, 6:8] < -0.5).all() and (c[:, 8:10] > 0.5).all() and c[:, :3].abs().max() < 1e-5
    faint = local_contrast(0.5 + 0.1 * (edge - 0.5))[0, 0]  # a tenth of the step, a fifth of C
    assert (faint[:, 8:10] > 0.2 * c[:, 8:10]).all() and (faint[:, 8:10] < c[:, 8:10]).all()
    edge.requires_grad_(True)  # flat regions (zero variance) must not make the gradient NaN
    local_contrast(edge * torch.rand(1, 3, 16, 16, generator=g)).square().sum().backward()
    assert torch.isfinite(edge.grad).all() and edge.grad.abs().sum() > 0


def test_convlstm_state_update():
    cell = ConvLSTMCell(4, 5)
    x = torch.rand(2, 4, 6, 7)
    h, (h2, c) = cell(x, cell.init_state(x))
    assert h.shape == c.shape == (2, 5, 6, 7) and h is h2
    assert h.abs().max() < 1 and c.abs().sum() > 0


def test_flownet_learns_a_known_shift():
    torch.manual_seed(0)
    net = build_flownet()
    g = torch.Generator().manual_seed(0)
    scene = torch.nn.functional.interpolate(
        torch.rand(2, 3, 12, 14, generator=g), size=(48, 56), mode="bilinear"
    )
    prev, cur = scene[..., 4:36, 4:52], scene[..., 5:37, 2:50]  # cur(x, y) = prev(x - 2, y + 1)
    flow_gt = torch.tensor([-2.0, 1.0]).view(1, 2, 1, 1).expand(2, 2, 32, 48)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    errors = []
    for _ in range(30):
        error = (net(prev, cur) - flow_gt).norm(dim=1).mean()
        optimizer.zero_grad()
        error.backward()
        optimizer.step()
        errors.append(error.item())
    assert errors[-1] < 0.25 * errors[0], errors
