"""Training losses (Sec. 4): L_Rect, L_Var, L_Opt-Fine, L_Opt-Reg, and flow-net losses.

    L = rect * L_Rect + var * L_Var + opt_fine * L_Opt-Fine + opt_reg * L_Opt-Reg + flow_sup * L_Flow
        + streak_free * L_Streak-Free + gate * L_Gate

Every distance is the Charbonnier penalty rho(x) = sqrt(x^2 + eps^2) - eps (eps = 1e-3), averaged:
robust like L1 (the choice of BasicSR's video restorers such as EDVR and BasicVSR, over the
paper's MSE), smooth at zero, and exactly zero at the ground truth. Flow errors use the same
penalty on the end-point distance |F - F_gt|.

- L_Rect: the clean estimates of both stages, B^S and B^M, against B.
- L_Var: the layer variables S, U, beta, A, R of both stages against the dataset's layers. Eq. 6
  has no occlusion term, so R's target is what makes Eq. 6 exact: R = B - (O~ - U - S - (1-beta) A)
  / max(beta, 0.1) (derain.recovery.residual_target).
- L_Gate (gate, not in the paper; only for a model with ModelConfig.rain_gate): the rain gate g
  against whether the frame has rain at all (derain.gate.rain_present). Without it the gate learns
  from L_Rect alone, where a gate left open on a rain-free frame costs little per pixel.
- L_Opt-Fine (fine-level flow): the brightness-constancy terms [dB/dx, dB/dy, dB/dt] of the output
  clip against the ground truth's (forward differences; dB/dt between consecutive frames).
- L_Opt-Reg (regularised flow): the flow net on consecutive outputs (B^M_{t-1}, B^M_t) against the
  flow net on the ground truth (B_{t-1}, B_t), as end-point error. The flow net is frozen here (its
  weights detached, the ground-truth side without gradients): the loss shapes the outputs, never the
  flow net, which could otherwise satisfy it by predicting nothing.
- L_Flow (flow_sup): MF-AlignNet's flow against the exact ground-truth flow, when the batch has it.
- L_Streak-Free (streak_free, not in the paper): the streak layer S of both stages on the pixels
  whose ground truth has no streak, averaged over those pixels only. L_Var already pulls S to 0
  there, but diluted over every pixel; this term keeps the streak layer from taking bright texture
  (leaves, highlights) for rain, which Eq. 6 would then subtract from the clean frame.

Batch keys (torch, (N,T,C,H,W), as derain.data gives them): "clean" B, "rain" O~, "S", "U",
"beta" (1 channel), "A" (N,T,3,1,1), optional "flow" (N,T-1,2,H,W) backward flow with "flow_valid" (N,) bool (which samples have it).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from derain.gate import rain_present
from derain.metrics import NO_RAIN
from derain.model import LAYER_NAMES, VideoDerainer
from derain.recovery import residual_target
from derain.section import Section
from derain.warp import in_frame, warp

EPS = 1e-3


@dataclass(frozen=True)
class LossConfig(Section):
    """Weights of the loss terms; a term with weight 0 is not computed."""

    rect: float = 1.0
    var: float = 0.1
    opt_fine: float = 0.1
    opt_reg: float = 0.01
    flow_sup: float = 0.0
    streak_free: float = 0.0
    gate: float = 0.0

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            ok = not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
            self.check(ok and v >= 0, f.name, "a finite number >= 0", v)


def _root(squared: torch.Tensor) -> torch.Tensor:
    """sqrt(squared + eps^2) - eps, exactly 0 where squared = 0."""
    e2 = torch.tensor(EPS * EPS, dtype=squared.dtype, device=squared.device)
    return torch.sqrt(squared + e2) - torch.sqrt(e2)


def charbonnier(x: torch.Tensor) -> torch.Tensor:
    """Elementwise sqrt(x^2 + eps^2) - eps, exactly 0 at x = 0."""
    return _root(x * x)


def _distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.shape != b.shape:
        raise ValueError(
            f"loss: shapes differ, output {tuple(a.shape)} vs ground truth {tuple(b.shape)}"
        )
    return charbonnier(a.float() - b.float()).mean()


def _end_point(
    flow: torch.Tensor, flow_gt: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Charbonnier end-point error, (...,2,H,W) -> mean over the rest.

    valid: bool over the leading dims of flow (e.g. (N,) of (N,T,2,H,W)); the mean then covers
    only the valid entries (0 when none is).
    """
    if flow.shape != flow_gt.shape or flow.shape[-3] != 2:
        raise ValueError(
            f"flow loss: need two (...,2,H,W) flows of one shape; got {tuple(flow.shape)} and {tuple(flow_gt.shape)}"
        )
    d = flow.float() - flow_gt.float()
    error = _root((d * d).sum(dim=-3))
    if valid is None:
        return error.mean()
    weight = valid.to(error.dtype)
    per_entry = error.flatten(start_dim=valid.dim()).mean(dim=-1)
    return (per_entry * weight).sum() / weight.sum().clamp(min=1.0)


def _stages(outputs: dict[str, torch.Tensor]) -> list[str]:
    """Stage suffixes present: "M" always, "S" unless the model has no SF-DerainNet (v1)."""
    return ["S", "M"] if "B_S" in outputs else ["M"]


def rect_loss(outputs: dict[str, torch.Tensor], clean: torch.Tensor) -> torch.Tensor:
    """L_Rect: B^M (and B^S) against the clean clip (N,T,3,H,W)."""
    loss = _distance(outputs["B"], clean)
    if "B_S" in outputs:
        loss = loss + _distance(outputs["B_S"], clean)
    return loss


def layer_targets(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Ground truth of the layer variables S, U, beta, A and R (Eq. 6's residual) of a batch."""
    missing = [k for k in ("clean", "rain", "S", "U", "beta", "A") if k not in batch]
    if missing:
        raise ValueError(f"L_Var needs the batch's ground-truth layers; missing {missing}")
    targets = {k: batch[k].float() for k in ("S", "U", "beta", "A")}
    targets["R"] = residual_target(
        batch["clean"].float(),
        batch["rain"].float(),
        *(targets[k] for k in ("S", "U", "beta", "A")),
    )
    return targets


def variable_loss(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """L_Var: each layer variable of each stage against its ground truth, summed."""
    targets = layer_targets(batch)
    return sum(
        _distance(outputs[f"{k}_{s}"], targets[k]) for s in _stages(outputs) for k in LAYER_NAMES
    )


def gate_loss(outputs: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """L_Gate: the rain gate g (N,T,1,1,1) against whether each frame has rain."""
    return _distance(outputs["g"], rain_present(batch["rain"], batch["clean"]))


def streak_free_loss(outputs: dict[str, torch.Tensor], streaks: torch.Tensor) -> torch.Tensor:
    """L_Streak-Free: Charbonnier of S^S and S^M where the ground truth S (N,T,1,H,W) is below
    NO_RAIN, averaged over those pixels (0 when there are none)."""
    free = (streaks.float() < NO_RAIN).float()
    count = free.sum().clamp(min=1.0)
    return sum((charbonnier(outputs[f"S_{s}"].float()) * free).sum() / count
               for s in _stages(outputs))  # fmt: skip


def spatiotemporal_gradients(clip: torch.Tensor) -> list[torch.Tensor]:
    """[dB/dx, dB/dy, dB/dt] of a clip (N,T,C,H,W) as forward differences (dB/dt only if T > 1)."""
    grads = [clip[..., :, 1:] - clip[..., :, :-1], clip[..., 1:, :] - clip[..., :-1, :]]
    if clip.shape[1] > 1:
        grads.append(clip[:, 1:] - clip[:, :-1])
    return grads


def opt_fine_loss(clean_out: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """L_Opt-Fine: spatio-temporal gradients of the output clip against the ground truth's."""
    if clean_out.shape != clean.shape:
        raise ValueError(
            f"L_Opt-Fine: output {tuple(clean_out.shape)} vs ground truth {tuple(clean.shape)}"
        )
    pairs = zip(
        spatiotemporal_gradients(clean_out.float()),
        spatiotemporal_gradients(clean.float()),
        strict=True,
    )
    return sum(_distance(a, b) for a, b in pairs)


def _pairs(clip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N,T,C,H,W) -> frames t-1 and t of every consecutive pair, each (N*(T-1),C,H,W)."""
    n, t, c, h, w = clip.shape
    return clip[:, :-1].reshape(n * (t - 1), c, h, w), clip[:, 1:].reshape(n * (t - 1), c, h, w)


def opt_reg_loss(clean_out: torch.Tensor, clean: torch.Tensor, flownet: nn.Module) -> torch.Tensor:
    """L_Opt-Reg: frozen flow net on consecutive outputs vs on consecutive ground-truth frames."""
    if clean_out.shape != clean.shape:
        raise ValueError(
            f"L_Opt-Reg: output {tuple(clean_out.shape)} vs ground truth {tuple(clean.shape)}"
        )
    if clean.shape[1] < 2:
        return clean_out.new_zeros((), dtype=torch.float32)
    frozen = {k: v.detach() for k, v in flownet.named_parameters()}
    with torch.no_grad():
        flow_gt = functional_call(flownet, frozen, _pairs(clean))
    return _end_point(functional_call(flownet, frozen, _pairs(clean_out)), flow_gt)


def flow_loss_supervised(
    flow: torch.Tensor, flow_gt: torch.Tensor, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """Charbonnier end-point error of a flow (...,2,H,W) against the exact flow, pixels.

    valid: bool over leading dims, which entries have a real flow_gt (see ``_end_point``).
    """
    return _end_point(flow, flow_gt, valid)


def flow_smoothness(
    flow: torch.Tensor, image: torch.Tensor | None = None, edge: float = 10.0
) -> torch.Tensor:
    """First-order smoothness of flow (N,2,H,W); edge-aware (weights exp(-edge |dI|)) given image (N,C,H,W)."""
    dx = charbonnier(flow[..., :, 1:] - flow[..., :, :-1]).mean(dim=1, keepdim=True)
    dy = charbonnier(flow[..., 1:, :] - flow[..., :-1, :]).mean(dim=1, keepdim=True)
    if image is not None:
        dx = dx * torch.exp(
            -edge * (image[..., :, 1:] - image[..., :, :-1]).abs().mean(dim=1, keepdim=True)
        )
        dy = dy * torch.exp(
            -edge * (image[..., 1:, :] - image[..., :-1, :]).abs().mean(dim=1, keepdim=True)
        )
    return dx.mean() + dy.mean()


def flow_loss_photometric(
    flow: torch.Tensor, img_prev: torch.Tensor, img_next: torch.Tensor, smoothness: float = 0.1
) -> torch.Tensor:
    """Self-supervised flow loss: photometric + smoothness * edge-aware smoothness.

    flow (N,2,H,W) backward flow of img_next (N,C,H,W) into img_prev: warp(img_prev, flow) should
    equal img_next wherever the flow stays inside the frame (the photometric term averages there).
    """
    if img_prev.shape != img_next.shape:
        raise ValueError(
            f"photometric flow loss: frames differ in shape, {tuple(img_prev.shape)} vs {tuple(img_next.shape)}"
        )
    mask = in_frame(flow)
    error = charbonnier(warp(img_prev, flow) - img_next.float()).mean(dim=1, keepdim=True)
    photometric = (error * mask).sum() / mask.sum().clamp(min=1.0)
    return photometric + smoothness * flow_smoothness(flow, img_next.float())


def _unwrap(model: nn.Module | None) -> VideoDerainer | None:
    """The VideoDerainer inside DistributedDataParallel or torch.compile wrappers."""
    for attr in ("module", "_orig_mod"):
        while model is not None and not isinstance(model, VideoDerainer) and hasattr(model, attr):
            model = getattr(model, attr)
    return model


def derain_loss(
    outputs: dict[str, torch.Tensor],
    batch: dict[str, torch.Tensor],
    config: LossConfig,
    model: nn.Module | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Total loss of a forward pass and each term's (unweighted) value, plus "total", for logging.

    outputs: VideoDerainer.forward's dict (N,T,...); batch: ground truth (module docstring).
    model: needed for L_Opt-Reg (its flow net); with it, L_Flow is skipped when the model does not
    align frames (v4). Each term is exactly zero when the outputs equal the ground truth.
    """
    clean = batch["clean"]
    net = _unwrap(model)
    terms: dict[str, torch.Tensor] = {}
    if config.rect:
        terms["rect"] = rect_loss(outputs, clean)
    if config.var:
        terms["var"] = variable_loss(outputs, batch)
    if config.gate and "g" in outputs:
        terms["gate"] = gate_loss(outputs, batch)
    if config.streak_free:
        terms["streak_free"] = streak_free_loss(outputs, batch["S"])
    if config.opt_fine:
        terms["opt_fine"] = opt_fine_loss(outputs["B"], clean)
    if config.opt_reg:
        if net is None:
            raise ValueError(
                "L_Opt-Reg (opt_reg > 0) needs the model, for its flow net: derain_loss(..., model=model)"
            )
        terms["opt_reg"] = opt_reg_loss(outputs["B"], clean, net.flownet)
    aligned = net is None or net.config.use_align
    if config.flow_sup and aligned and batch.get("flow") is not None and clean.shape[1] > 1:
        terms["flow_sup"] = flow_loss_supervised(
            outputs["flow"][:, 1:], batch["flow"], batch.get("flow_valid")
        )
    total = sum(
        (getattr(config, k) * v for k, v in terms.items()), clean.new_zeros((), dtype=torch.float32)
    )
    log = {k: float(v.detach()) for k, v in terms.items()}
    log["total"] = float(total.detach())
    return total, log
