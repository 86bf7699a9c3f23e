"""The rain gate (ModelConfig.rain_gate, not in the paper): whether a frame has rain at all.

Eq. 6 changes a frame through five estimated variables (S, U, beta, A, R), and a rain-free frame
comes back unchanged only if all of them land exactly on "no rain" at once: S = U = R = 0, beta = 1.
A small network that has to tell a leaf's highlight from a streak gets each of them a little wrong,
and rain-free footage comes out a little changed everywhere. The gate is one number per frame:

    g_t = clamp(raw g_t, 0, 1)         (N,1,1,1), from the frame's own features pooled over all of
                                        it and the whole-frame context vector (derain.context)
    B^_t = O~_t + g_t (B^Eq.6_t - O~_t) both stages' clean estimates

g = 0 gives the input back exactly; g = 1 leaves Eq. 6 as it is. Its target is whether the frame
carries any rain (``rain_present``); the clamp passes the gradient that points back into [0, 1]
(derain.heads.veil_scale's rule), so a frame that was switched off can be switched on again.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from derain.blocks import activation, conv3x3
from derain.heads import inward_clamp
from derain.metrics import NO_RAIN


class RainGate(nn.Module):
    """A frame (N,3,H,W) in [0,1] and its context vector (N,C') -> g (N,1,1,1) in [0, 1].

    Args:
        channels: channels of its strided conv stages, each halving the size (the U-Net's).
        context_channels: channels of the whole-frame context vector it also reads (0: none).
    """

    def __init__(self, channels: Sequence[int], context_channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip((3, *channels[:-1]), channels, strict=True):
            layers += [conv3x3(c_in, c_out, stride=2), activation()]
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(channels[-1] + context_channels, 1)
        with torch.no_grad():  # start open: g = 1, Eq. 6 as it is
            self.out.weight.mul_(0.1)
            self.out.bias.fill_(1.0)

    def forward(self, rain: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        pooled = self.body(rain).mean(dim=(2, 3))
        raw = self.out(torch.cat([pooled, context.to(pooled.dtype)], dim=1)).float()
        return inward_clamp(raw[:, :, None, None], 0.0, 1.0)


def gated(rain: torch.Tensor, clean: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """O~ + g (B^ - O~): rain (N,3,H,W), clean (N,3,H,W) float32, gate (N,1,1,1) -> (N,3,H,W)."""
    return rain.float() + gate * (clean - rain.float())


def rain_present(rain: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """The gate's target: 1 where a frame's rain differs from its clean frame by more than NO_RAIN
    anywhere, else 0. rain, clean (N,T,3,H,W) -> (N,T,1,1,1) float32."""
    differs = (rain.float() - clean.float()).abs().amax(dim=(2, 3, 4), keepdim=True) > NO_RAIN
    return differs.float()
