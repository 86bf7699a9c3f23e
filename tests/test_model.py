"""derain.model: every ablation's outputs and gradients, recurrence, autocast, opt-in inputs, configs."""

from __future__ import annotations

import pytest
import torch
from derain_helpers import H, N, T, W, rain_clip
from torch import nn

from derain import ModelConfig, State, build_model
from derain.context import frame_context, row_positions
from derain.heads import streak_bound
from derain.model import ABLATIONS
from derain.warp import warp


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


def test_streak_bound_caps_the_final_streak_layer_from_the_second_frame_on():
    """ModelConfig.streak_bound: S^M_t = min(S, streak_bound(O~_t, O~^F_{t-1})) for t >= 1 and
    untouched at t = 0; a still clip keeps no streak after its first frame (v4: no alignment)."""
    torch.manual_seed(0)
    free = build_model(additive_rain=True)
    bounded = build_model(additive_rain=True, streak_bound=3)
    bounded.load_state_dict(free.state_dict())
    rain = rain_clip()
    out = bounded(rain)
    with torch.no_grad():
        first = free.step(rain[:, 0], free.init_state(rain[:, 0]))[0]
    torch.testing.assert_close(out["S_M"][:, 0], first["S_M"], rtol=0, atol=0)
    for t in range(1, T):
        aligned = warp(rain[:, t - 1], out["flow"][:, t])
        assert (out["S_M"][:, t] <= streak_bound(rain[:, t], aligned, 3) + 1e-6).all()
    out["B"].square().mean().backward()
    assert all(p.grad is not None for p in bounded.align.parameters())  # the bound trains the flow
    still_model = build_model(additive_rain=True, streak_bound=1, use_align=False)
    still = rain[:, :1].expand(N, T, 3, H, W).contiguous()
    with torch.no_grad():
        s_m = still_model(still)["S_M"]
    assert s_m[:, 0].max() > 0 and (s_m[:, 1:] == 0).all()  # nothing gained: no streak
    with pytest.raises(ValueError, match="streak_bound"):
        ModelConfig(use_recovery=False, streak_bound=3)
    with pytest.raises(ValueError, match="streak_bound must be one of 0, 1, 3, 5"):
        ModelConfig(streak_bound=2)
