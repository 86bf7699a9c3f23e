"""Heads for the layer variables of the inverse rain model (Eq. 6).

A head predicts *raw* variables; ``layers_from_raw`` maps them to the physical ones:

    S  streaks               (N,1,H,W)  raw, unbounded
    U  accumulation flow     (N,1,H,W)  raw, unbounded
    beta transmission        (N,1,H,W)  sigmoid(raw)            in (0, 1)
    R  residual              (N,3,H,W)  raw, unbounded (absorbs what Eq. 6 leaves out: occlusion)
    A  atmospheric light     (N,3,1,1)  sigmoid(g + TINT tanh(t)), grey level g and tint t (raw (N,4,1,1))
    B  (only when Eq. 6 is skipped, ablation v3) a residual on the rain frame, B = O + raw (N,3,H,W)

Working in raw space lets MF-DerainNet's residual update v^M = v^S + delta (Sec. 4) keep beta and
A in range. All raw variables are float32, also under autocast.
"""

from __future__ import annotations

import math

import torch
from torch import nn

TINT = (
    0.5  # the largest per-channel departure of A from grey, in logits (about +-0.08 near A = 0.8)
)
PRIOR_BETA, PRIOR_LIGHT = 0.9, 0.8  # a light veil: where the heads start, and v1's stage-1 stand-in
PIXEL_CHANNELS = {"S": 1, "U": 1, "beta": 1, "R": 3}


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


class LayerHead(nn.Module):
    """Raw layer variables from full-resolution features and pooled coarse features.

    Args:
        channels: channels of the full-resolution features (N, channels, H, W).
        pooled_channels: channels of the coarse features pooled for the global light A.
        direct: also predict B directly (ablation v3, no inverse recovery).
        prior: start near the prior veil (SF-DerainNet); else near zero (MF-DerainNet's deltas).
    """

    def __init__(self, channels: int, pooled_channels: int, direct: bool, prior: bool):
        super().__init__()
        self.names = dict(PIXEL_CHANNELS, **({"B": 3} if direct else {}))
        self.pixel = nn.Conv2d(channels, sum(self.names.values()), 3, padding=1)
        self.light = nn.Linear(pooled_channels, 4)
        with torch.no_grad():  # start close to the prior veil (or, for deltas, to zero)
            for layer in (self.pixel, self.light):
                layer.weight.mul_(0.1)
                layer.bias.zero_()
            if prior:
                names = list(self.names)
                beta = sum(self.names[k] for k in names[: names.index("beta")])  # its channel
                self.pixel.bias[beta] = _logit(PRIOR_BETA)
                self.light.bias[0] = _logit(PRIOR_LIGHT)

    def forward(self, features: torch.Tensor, coarse: torch.Tensor) -> dict[str, torch.Tensor]:
        """features (N,C,H,W), coarse (N,C',h,w) -> raw variables (shapes in the module docstring)."""
        pixel = self.pixel(features).float()
        raw = dict(zip(self.names, pixel.split(list(self.names.values()), dim=1), strict=True))
        raw["A"] = self.light(coarse.mean(dim=(2, 3))).float()[:, :, None, None]
        return raw


def prior_raw(rain: torch.Tensor, direct: bool) -> dict[str, torch.Tensor]:
    """Raw variables of the prior veil for (N,3,H,W) rain: no streaks, beta 0.9, grey light 0.8.

    Ablation v1 (no SF-DerainNet) uses it as the stage-1 estimate that MF-DerainNet corrects.
    """
    n, _, h, w = rain.shape
    raw = {k: rain.new_zeros(n, c, h, w, dtype=torch.float32) for k, c in PIXEL_CHANNELS.items()}
    raw["beta"] = raw["beta"] + _logit(PRIOR_BETA)
    raw["A"] = rain.new_zeros(n, 4, 1, 1, dtype=torch.float32)
    raw["A"][:, 0] = _logit(PRIOR_LIGHT)
    if direct:
        raw["B"] = rain.new_zeros(n, 3, h, w, dtype=torch.float32)
    return raw


def layers_from_raw(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Raw variables -> physical layer variables (S, U, beta, R, A and, for v3, B's residual)."""
    layers = dict(raw)
    layers["beta"] = torch.sigmoid(raw["beta"])
    grey, tint = raw["A"][:, :1], raw["A"][:, 1:]
    layers["A"] = torch.sigmoid(grey + TINT * torch.tanh(tint))
    return layers
