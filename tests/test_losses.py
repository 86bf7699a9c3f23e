"""Losses: every term zero at the ground truth and positive off it, differentiable; training lowers them."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from derain import LossConfig, ModelConfig, build_model, derain_loss
from derain.losses import (
    flow_loss_photometric,
    flow_loss_supervised,
    flow_smoothness,
    layer_targets,
    spatiotemporal_gradients,
)

TERMS = ("rect", "var", "opt_fine", "opt_reg", "flow_sup", "streak_free")


def make_batch(
    n: int = 1, t: int = 3, h: int = 32, w: int = 32, seed: int = 0
) -> dict[str, torch.Tensor]:
    """A tiny clip rendered with Eqns. 3-4: a smooth scene panning left 1 px per frame (exact
    backward flow dx = +1), vertical streaks, a faint veil, haze and a few occluding drops."""
    g = torch.Generator().manual_seed(seed)
    scene = F.interpolate(
        torch.rand(n, 3, h // 4, (w + t) // 4 + 1, generator=g), scale_factor=4, mode="bilinear"
    )
    clean = torch.stack([scene[..., :h, i : i + w] for i in range(t)], dim=1) * 0.8 + 0.1
    streaks = (torch.rand(n, t, 1, h, w, generator=g) < 0.04).float() * 0.3
    streaks = streaks + streaks.roll(1, dims=-2) + streaks.roll(2, dims=-2)
    veil = 0.05 * torch.rand(n, t, 1, h // 8, w // 8, generator=g).repeat_interleave(
        8, -2
    ).repeat_interleave(8, -1)
    beta = torch.linspace(0.7, 0.95, h).view(1, 1, 1, h, 1).expand(n, t, 1, h, w).contiguous()
    light = 0.8 + 0.02 * torch.rand(n, t, 3, 1, 1, generator=g)
    alpha = (torch.rand(n, t, 1, h, w, generator=g) < 0.01).float()
    intensity = torch.full((n, t, 3, 1, 1), 0.8)
    observed = beta * clean + (1 - beta) * light + veil + streaks  # Eq. 3
    rain = ((1 - alpha) * observed + alpha * intensity).clamp(0, 1)  # Eq. 4
    flow = torch.zeros(n, t - 1, 2, h, w)
    flow[:, :, 0] = 1.0
    return {"clean": clean, "rain": rain, "S": streaks, "U": veil, "beta": beta, "A": light, "alpha": alpha,
            "M": intensity, "flow": flow}  # fmt: skip


def perfect_outputs(batch: dict[str, torch.Tensor], stages=("S", "M")) -> dict[str, torch.Tensor]:
    """What a perfect model returns: every output equal to its ground truth."""
    targets = layer_targets(batch)
    out = {f"{k}_{s}": v.clone().requires_grad_() for s in stages for k, v in targets.items()}
    out["B"] = batch["clean"].clone().requires_grad_()
    if "S" in stages:
        out["B_S"] = batch["clean"].clone().requires_grad_()
    n, t, _, h, w = batch["clean"].shape
    out["flow"] = torch.cat([torch.zeros(n, 1, 2, h, w), batch["flow"]], dim=1).requires_grad_()
    return out


def only(term: str, weight: float = 1.0) -> LossConfig:
    return LossConfig(**{k: (weight if k == term else 0.0) for k in TERMS})


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model()


@pytest.mark.parametrize("stages", [("S", "M"), ("M",)], ids=["two-stage", "v1"])
@pytest.mark.parametrize("term", TERMS)
def test_each_term_zero_at_ground_truth_and_positive_off_it(term, stages, model):
    batch = make_batch()
    out = perfect_outputs(batch, stages)
    total, log = derain_loss(out, batch, only(term), model)
    assert set(log) == {term, "total"}
    assert total.item() == 0.0 and log[term] == 0.0
    total.backward()  # differentiable at the ground truth: finite, zero gradients
    assert all(
        v.grad is None or (torch.isfinite(v.grad).all() and not v.grad.any()) for v in out.values()
    )

    wrong = {k: v.detach() for k, v in perfect_outputs(batch, stages).items()}
    g = torch.Generator().manual_seed(1)
    for k in wrong:
        wrong[k] = (wrong[k] + 0.05 * torch.randn(wrong[k].shape, generator=g)).requires_grad_()
    total, log = derain_loss(wrong, batch, only(term, 2.0), model)
    assert log[term] > 0 and total.item() == pytest.approx(2.0 * log[term], rel=1e-6)
    total.backward()
    grads = [v.grad for v in wrong.values() if v.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and any(g.any() for g in grads)


def test_full_loss_logs_each_weighted_term(model):
    batch = make_batch()
    out = model(batch["rain"])
    config = LossConfig(flow_sup=0.5, streak_free=1.0)
    total, log = derain_loss(out, batch, config, model)
    assert set(log) == set(TERMS) | {"total"}
    assert total.item() == pytest.approx(sum(getattr(config, k) * log[k] for k in TERMS), rel=1e-5)
    _, log = derain_loss(out, {k: v for k, v in batch.items() if k != "flow"}, config, model)
    assert "flow_sup" not in log  # no ground-truth flow in the batch: skipped


def test_streak_free_sees_only_the_pixels_without_streaks(model):
    batch = make_batch()
    out = perfect_outputs(batch)
    streaky = batch["S"] > 0
    out["S_M"] = (out["S_M"] + 0.5 * streaky).detach()  # wrong where there are streaks: unseen
    _, log = derain_loss(out, batch, only("streak_free"), model)
    assert log["streak_free"] == 0.0
    out["S_S"] = (out["S_S"] + 0.5 * ~streaky).detach()  # taken texture: all of it counts
    _, log = derain_loss(out, batch, only("streak_free"), model)
    assert log["streak_free"] == pytest.approx(math.sqrt(0.25 + 1e-6) - 1e-3, rel=1e-5)


def test_flow_sup_averages_over_the_samples_that_have_flow_only(model):
    batch = make_batch(n=2)
    out = perfect_outputs(batch)
    out["flow"] = out["flow"].detach().clone()
    out["flow"][1] += 3.0  # sample 1 is wrong, but its flow is unknown
    config = only("flow_sup")
    _, log = derain_loss(out, {**batch, "flow_valid": torch.tensor([True, False])}, config, model)
    assert log["flow_sup"] == 0.0
    _, log = derain_loss(out, {**batch, "flow_valid": torch.tensor([False, True])}, config, model)
    _, everyone = derain_loss(out, batch, config, model)
    assert (
        log["flow_sup"] == pytest.approx(2 * everyone["flow_sup"], rel=1e-5)
        and log["flow_sup"] > 2.9
    )


def test_flow_sup_skipped_without_alignment_and_opt_reg_needs_the_model():
    batch = make_batch()
    v4 = build_model(ModelConfig.ablation("v4"))
    out = v4(batch["rain"])
    _, log = derain_loss(out, batch, LossConfig(flow_sup=1.0), v4)
    assert "flow_sup" not in log and "opt_reg" in log
    with pytest.raises(ValueError, match="model"):
        derain_loss(out, batch, LossConfig())


def test_opt_reg_trains_the_outputs_not_the_flow_net(model):
    batch = make_batch()
    clean_out = (batch["clean"] + 0.05 * torch.randn_like(batch["clean"])).requires_grad_()
    out = dict(perfect_outputs(batch), B=clean_out)
    model.zero_grad()
    total, _ = derain_loss(out, batch, only("opt_reg"), model)
    total.backward()
    assert clean_out.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.flownet.parameters())


def test_var_target_for_r_absorbs_occlusion():
    batch = make_batch()
    assert batch["alpha"].sum() > 0
    R = layer_targets(batch)["R"]
    occluded = batch["alpha"].expand_as(R) > 0
    assert R[occluded].abs().mean() > 10 * R[~occluded].abs().mean()


def test_missing_layers_and_shape_mismatch_are_clear_errors(model):
    batch = make_batch()
    out = perfect_outputs(batch)
    with pytest.raises(ValueError, match="beta"):
        derain_loss(out, {k: v for k, v in batch.items() if k != "beta"}, only("var"))
    with pytest.raises(ValueError, match="shapes differ"):
        derain_loss(dict(out, B=out["B"][..., :16]), batch, only("rect"))


def test_spatiotemporal_gradients():
    clip = torch.rand(2, 4, 3, 5, 6)
    dx, dy, dt = spatiotemporal_gradients(clip)
    assert (
        dx.shape == (2, 4, 3, 5, 5) and dy.shape == (2, 4, 3, 4, 6) and dt.shape == (2, 3, 3, 5, 6)
    )
    torch.testing.assert_close(dt[:, 1], clip[:, 2] - clip[:, 1])
    assert len(spatiotemporal_gradients(clip[:, :1])) == 2  # one frame: no dB/dt


def test_flow_losses():
    g = torch.Generator().manual_seed(0)
    prev = torch.rand(2, 3, 16, 20, generator=g)
    nxt = torch.roll(prev, shifts=(1, -2), dims=(-2, -1))  # next(x, y) = prev(x + 2, y - 1)
    flow = torch.zeros(2, 2, 16, 20)
    flow[:, 0], flow[:, 1] = 2.0, -1.0
    assert flow_loss_supervised(flow, flow).item() == 0.0
    assert flow_loss_supervised(flow + 0.5, flow).item() > 0.4
    # exact flow (up to float rounding in the sampling grid); rolled-in borders are masked
    assert flow_loss_photometric(flow, prev, nxt).item() == pytest.approx(0.0, abs=1e-8)
    assert flow_loss_photometric(torch.zeros_like(flow), prev, nxt).item() > 0.1
    assert flow_smoothness(flow).item() == 0.0
    bumpy = flow.clone().requires_grad_()
    loss = flow_loss_photometric(bumpy + 0.3 * torch.randn(bumpy.shape, generator=g), prev, nxt)
    assert flow_smoothness(bumpy + torch.randn(bumpy.shape, generator=g)).item() > 0
    loss.backward()
    assert torch.isfinite(bumpy.grad).all() and bumpy.grad.abs().sum() > 0


def test_loss_config_validation_and_round_trip():
    config = LossConfig(opt_reg=0.0, flow_sup=0.2)
    assert LossConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="rect"):
        LossConfig(rect=-1.0)
    with pytest.raises(ValueError, match="opt_reg"):
        LossConfig(opt_reg=float("nan"))
    with pytest.raises(ValueError, match="smooth"):
        LossConfig.from_dict({"smooth": 1.0})


def test_thirty_adam_iterations_lower_the_loss():
    torch.manual_seed(0)
    model = build_model()
    batch = make_batch()
    config = LossConfig(flow_sup=0.1)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(30):
        total, log = derain_loss(model(batch["rain"]), batch, config, model)
        optimizer.zero_grad()
        total.backward()
        optimizer.step()
        losses.append(log["total"])
    with torch.no_grad():
        final, _ = derain_loss(model(batch["rain"]), batch, config, model)
    assert final.item() < 0.7 * losses[0], losses


def test_loss_is_the_same_for_a_wrapped_model(model):
    batch = make_batch()
    out = model(batch["rain"])
    wrapped = dataclasses.make_dataclass("Wrapper", [("module", object)])(model)
    assert (
        derain_loss(out, batch, LossConfig(), wrapped)[1]
        == derain_loss(out, batch, LossConfig(), model)[1]
    )
