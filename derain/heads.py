"""Heads for the layer variables of the inverse rain model (Eq. 6).

A head predicts *raw* variables; ``layers_from_raw`` maps them to the physical ones:

    S  streaks               (N,1,H,W)  raw, unbounded; >= 0 with ModelConfig.additive_rain
    U  accumulation flow     (N,1,H,W)  raw, unbounded; >= 0 with ModelConfig.additive_rain
    beta transmission        (N,1,H,W)  exp(-k d), the rain model's beta = exp(-k d) (Sec. 3):
                                        optical depth d = softplus(raw "d") (N,1,H,W) per pixel,
                                        scaled by k = clamp(raw "k", 0, 1) (N,1,1,1) per frame,
                                        whose gradient can reopen the gate (``veil_scale``)
    R  residual              (N,3,H,W)  raw, unbounded (absorbs what Eq. 6 leaves out: occlusion)
    A  atmospheric light     (N,3,1,1)  sigmoid(g + TINT tanh(t)), grey level g and tint t (raw (N,4,1,1))
    B  (only when Eq. 6 is skipped, ablation v3) a residual on the rain frame, B = O + raw (N,3,H,W)

How thick the veil is varies over the frame with depth, so d is estimated per pixel from its
neighbourhood. Whether the frame is veiled at all is a property of the whole frame, so k, like A,
comes from features pooled over all of it (and, with ModelConfig.frame_context, from a vector of
the whole frame, derain.context: a training crop alone hardly tells a thin veil from none): k = 1
keeps the pixels' veil, k = 0 removes it and gives beta exactly 1 (streaks-only rain: no haze to
remove), which a per-pixel sigmoid reaches only with an unbounded logit.
Working in raw space lets MF-DerainNet's residual update v^M = v^S + delta (Sec. 4) keep beta and
A in range. All raw variables are float32, also under autocast.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

TINT = (
    0.5  # the largest per-channel departure of A from grey, in logits (about +-0.08 near A = 0.8)
)
PRIOR_BETA, PRIOR_LIGHT = 0.9, 0.8  # a light veil: where the heads start, and v1's stage-1 stand-in
PIXEL_CHANNELS = {"S": 1, "U": 1, "d": 1, "R": 3}
DIRECT_CHANNELS = {"B": 3}  # ablation v3 only: B as a residual on the rain frame
GLOBAL_CHANNELS = {"A": 4, "k": 1}  # raw grey level and tint of A; raw veil scale k


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _softplus_inverse(y: float) -> float:
    return math.log(math.expm1(y))


def raw_channels(direct: bool) -> int:
    """Channels of ``stack_raw``'s output: the pixel, (for v3) B and the per-frame variables."""
    pixel = dict(PIXEL_CHANNELS, **(DIRECT_CHANNELS if direct else {}))
    return sum(pixel.values()) + sum(GLOBAL_CHANNELS.values())


def stack_raw(raw: dict[str, torch.Tensor]) -> torch.Tensor:
    """Raw variables as one (N,C,H,W) map, C = raw_channels: S, U, d, R, (B), then A and k
    broadcast over the frame. MF-DerainNet reads v^S this way to know what its deltas correct."""
    pixel = [raw[k] for k in (*PIXEL_CHANNELS, *DIRECT_CHANNELS) if k in raw]
    n, _, h, w = pixel[0].shape
    per_frame = [raw[k].expand(n, -1, h, w) for k in GLOBAL_CHANNELS]
    return torch.cat(pixel + per_frame, dim=1)


def _prior_globals() -> list[float]:
    """Raw A (grey PRIOR_LIGHT, no tint) and raw k (1: veil kept), in GLOBAL_CHANNELS order."""
    return [_logit(PRIOR_LIGHT), 0.0, 0.0, 0.0, 1.0]


def _prior_depth() -> float:
    """Raw d of the prior veil: beta = exp(-d) = PRIOR_BETA at k = 1."""
    return _softplus_inverse(-math.log(PRIOR_BETA))


def _split_globals(pooled: torch.Tensor) -> dict[str, torch.Tensor]:
    """(N,5,1,1) per-frame raw variables -> {"A": (N,4,1,1), "k": (N,1,1,1)}."""
    parts = pooled.split(list(GLOBAL_CHANNELS.values()), dim=1)
    return dict(zip(GLOBAL_CHANNELS, parts, strict=True))


class LayerHead(nn.Module):
    """Raw layer variables from full-resolution features and pooled coarse features.

    Args:
        channels: channels of the full-resolution features (N, channels, H, W).
        pooled_channels: channels of the coarse features pooled for the per-frame A and k.
        context_channels: channels of the whole-frame context vector they also read (0: none).
        direct: also predict B directly (ablation v3, no inverse recovery).
        prior: start near the prior veil (SF-DerainNet); else near zero (MF-DerainNet's deltas).
    """

    def __init__(
        self, channels: int, pooled_channels: int, context_channels: int, direct: bool, prior: bool
    ):
        super().__init__()
        self.names = dict(PIXEL_CHANNELS, **(DIRECT_CHANNELS if direct else {}))
        self.pixel = nn.Conv2d(channels, sum(self.names.values()), 3, padding=1)
        self.globals = nn.Linear(pooled_channels + context_channels, sum(GLOBAL_CHANNELS.values()))
        with torch.no_grad():  # start close to the prior veil (or, for deltas, to zero)
            for layer in (self.pixel, self.globals):
                layer.weight.mul_(0.1)
                layer.bias.zero_()
            if prior:
                names = list(self.names)
                depth = sum(self.names[k] for k in names[: names.index("d")])  # its channel
                self.pixel.bias[depth] = _prior_depth()
                self.globals.bias.copy_(torch.tensor(_prior_globals()))

    def forward(
        self, features: torch.Tensor, coarse: torch.Tensor, context: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """features (N,C,H,W), coarse (N,C',h,w), the context vector (N,C'') -> raw variables
        (shapes in the module docstring)."""
        pixel = self.pixel(features).float()
        raw = dict(zip(self.names, pixel.split(list(self.names.values()), dim=1), strict=True))
        per_frame = torch.cat([coarse.mean(dim=(2, 3)), context.to(coarse.dtype)], dim=1)
        pooled = self.globals(per_frame).float()[:, :, None, None]
        return raw | _split_globals(pooled)


def prior_raw(rain: torch.Tensor, direct: bool) -> dict[str, torch.Tensor]:
    """Raw variables of the prior veil for (N,3,H,W) rain: no streaks, beta 0.9, grey light 0.8.

    Ablation v1 (no SF-DerainNet) uses it as the stage-1 estimate that MF-DerainNet corrects.
    """
    n, _, h, w = rain.shape
    raw = {k: rain.new_zeros(n, c, h, w, dtype=torch.float32) for k, c in PIXEL_CHANNELS.items()}
    raw["d"] = raw["d"] + _prior_depth()
    pooled = torch.tensor(_prior_globals(), dtype=torch.float32, device=rain.device)
    pooled = pooled.view(1, -1, 1, 1).expand(n, -1, 1, 1)
    raw.update(_split_globals(pooled))
    if direct:
        raw["B"] = rain.new_zeros(n, DIRECT_CHANNELS["B"], h, w, dtype=torch.float32)
    return raw


class _InwardClamp(torch.autograd.Function):
    """clamp(raw, lo, hi) whose gradient also passes the clamp when it points back into range."""

    @staticmethod
    def forward(ctx, raw: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        ctx.save_for_backward(raw)
        ctx.bounds = (lo, hi)
        return raw.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (raw,) = ctx.saved_tensors
        lo, hi = ctx.bounds
        inward = ((raw >= lo) & (raw <= hi)) | ((raw < lo) & (grad < 0)) | ((raw > hi) & (grad > 0))
        return grad * inward, None, None


def inward_clamp(raw: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """clamp(raw, lo, hi) whose gradient also passes the clamp when it points back into range."""
    return _InwardClamp.apply(raw, lo, hi)


def veil_scale(raw_k: torch.Tensor) -> torch.Tensor:
    """k = clamp(raw_k, 0, 1), (N,1,1,1), with a gradient that can bring k back into [0, 1].

    A plain clamp has no gradient outside [0, 1]: a frame whose raw k falls below 0 gets no signal
    to raise it again, even when L_Var's beta target says it is veiled, so light rain's faint veil
    can stay switched off for good. Here the gradient passes the clamp only when descent would move
    raw k back towards [0, 1]; passed outward too, it would push raw k, and the shared features
    with it, ever further for no change in the output. Beta still reaches exactly 1 at k = 0.
    """
    return inward_clamp(raw_k, 0.0, 1.0)


def layers_from_raw(
    raw: dict[str, torch.Tensor], additive: bool = False
) -> dict[str, torch.Tensor]:
    """Raw variables -> physical layer variables (S, U, beta, R, A and, for v3, B's residual).

    additive (ModelConfig.additive_rain): S and U are clamped at 0, as rain only adds light in
    Eq. 3, with the gradient that can bring them back (``veil_scale``'s rule): where there is no
    rain they can be exactly 0, so Eq. 6 leaves those pixels alone.
    """
    layers = {k: v for k, v in raw.items() if k not in ("d", "k")}
    if additive:
        for name in ("S", "U"):
            layers[name] = inward_clamp(raw[name], 0.0, math.inf)
    layers["beta"] = torch.exp(-veil_scale(raw["k"]) * F.softplus(raw["d"]))  # exp(-k d)
    grey, tint = raw["A"][:, :1], raw["A"][:, 1:]
    layers["A"] = torch.sigmoid(grey + TINT * torch.tanh(tint))
    return layers


def streak_bound(rain_t: torch.Tensor, rain_prev: torch.Tensor, window: int = 1) -> torch.Tensor:
    """The most light a streak can add to each pixel of frame t (ModelConfig.streak_bound).

    rain_t O~_t and rain_prev O~^F_{t-1}, the previous rain frame aligned to t, both (N,3,H,W);
    window w (odd, pixels) -> (N,1,H,W) >= 0. A streak adds the same light to every channel
    (Eq. 3: O~ = ... + S) and, drawn afresh each frame, is rarely at the same place in two frames,
    so S_t <= O~_t - O~^F_{t-1} in every channel wherever frame t-1 has none there; this is the
    temporal photometric constraint of rain (Garg and Nayar, "Detection and Removal of Rain from
    Videos", CVPR 2004: a rain pixel is brighter than the same pixel in the neighbouring frames).
    Against the brightest O~^F_{t-1} in the w x w window around each pixel, texture the flow
    misplaces by up to w // 2 pixels cannot pass for a streak either.
    """
    if window > 1:
        rain_prev = F.max_pool2d(rain_prev, window, stride=1, padding=window // 2)
    return (rain_t - rain_prev).amin(dim=1, keepdim=True).clamp(min=0.0)
