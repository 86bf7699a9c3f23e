"""A small SpyNet-like pyramid flow network, trained from scratch (no downloaded weights).

Both frames first become their local contrast, luma normalised by its mean and spread in a
CONTRAST_WINDOW x CONTRAST_WINDOW neighbourhood (``local_contrast``). Natural frames are mostly
smooth, low-contrast regions; on raw intensities a conv net trained from scratch takes about a
thousand iterations before it starts to match them, while local contrast makes every textured
region equally strong and the net learns within a few hundred.

Coarse to fine over a pyramid of that contrast image at 1/2, 1/4, ..., 1/2^levels of the input: at
each level the previous frame's contrast is backward-warped by the current flow estimate, and a
small conv stack predicts a residual flow from [C_t, warped C_{t-1}, flow] (I below is C):

    f_K = bound(G_K(I_t^K, I_{t-1}^K, 0))
    f_k = up(f_{k+1}) + bound(G_k(I_t^k, warp(I_{t-1}^k, up(f_{k+1})), up(f_{k+1})))    k = K-1 .. 1

where up() doubles size and flow, and bound(x) = MAX_STEP * tanh(x / MAX_STEP) keeps each level's
residual within MAX_STEP pixels of that level (as SpyNet's residuals are): trained jointly with
the deraining losses, an unbounded coarse level can otherwise run away to flows of hundreds of
pixels. The finest estimate (1/2) is upsampled to full size.
Output: BACKWARD flow in pixels (N,2,H,W), warp(frame_{t-1}, flow) ~= frame_t (see derain.warp).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from derain.blocks import activation
from derain.warp import warp

MAX_STEP = 4.0
"""Largest residual flow one pyramid level may add, in pixels of that level."""
CONTRAST_WINDOW = 9
"""Side of the square neighbourhood of ``local_contrast``, pixels."""
CONTRAST_FLOOR = 0.05
"""Added to the local standard deviation so flat regions stay flat instead of amplifying noise."""
VARIANCE_EPS = 1e-6
"""Added to the local variance under the square root: its gradient stays finite where it is 0."""
LUMA = (0.299, 0.587, 0.114)
"""ITU-R BT.601 weights of R, G, B in luma."""


def local_contrast(frame: torch.Tensor) -> torch.Tensor:
    """(N,3,H,W) in [0,1] -> (N,1,H,W) float32, about zero-mean and unit-spread:

        C = (Y - mean_w(Y)) / (std_w(Y) + CONTRAST_FLOOR)

    with Y the BT.601 luma, mean_w over the CONTRAST_WINDOW-sided square (reflected at the borders)
    and std_w = sqrt(mean_w(Y^2) - mean_w(Y)^2 + VARIANCE_EPS).
    """
    weights = frame.new_tensor(LUMA, dtype=torch.float32).view(1, 3, 1, 1)
    luma = (frame.float() * weights).sum(dim=1, keepdim=True)
    pad = CONTRAST_WINDOW // 2
    padded = F.pad(luma, (pad, pad, pad, pad), mode="reflect")
    mean = F.avg_pool2d(padded, CONTRAST_WINDOW, stride=1)
    mean_sq = F.avg_pool2d(padded * padded, CONTRAST_WINDOW, stride=1)
    std = ((mean_sq - mean * mean).clamp(min=0.0) + VARIANCE_EPS).sqrt()
    return (luma - mean) / (std + CONTRAST_FLOOR)


def upsample_flow(flow: torch.Tensor) -> torch.Tensor:
    """(N,2,h,w) -> (N,2,2h,2w), values doubled (pixels of the finer level)."""
    return 2.0 * F.interpolate(flow, scale_factor=2.0, mode="bilinear", align_corners=False)


class FlowLevel(nn.Module):
    """G_k: (N,4,h,w) [contrast_t, warped contrast_{t-1}, flow] -> (N,2,h,w) residual flow."""

    def __init__(self, channels: Sequence[int], kernel: int):
        super().__init__()
        layers: list[nn.Module] = []
        for cin, cout in zip([4, *channels[:-1]], channels, strict=True):
            layers += [nn.Conv2d(cin, cout, kernel, padding=kernel // 2), activation()]
        last = nn.Conv2d(channels[-1], 2, kernel, padding=kernel // 2)
        with torch.no_grad():  # start near zero flow: the identity warp
            last.weight.mul_(0.1)
            last.bias.zero_()
        self.body = nn.Sequential(*layers, last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class PyramidFlowNet(nn.Module):
    """Backward optical flow between two RGB frames.

    Args:
        levels: pyramid levels K; the coarsest works at 1/2^K, so H, W must be multiples of 2^K.
        channels: hidden channels of each level's conv stack.
        kernel: conv kernel size (SpyNet uses 7).
    """

    def __init__(self, levels: int = 4, channels: Sequence[int] = (16, 32, 16), kernel: int = 5):
        super().__init__()
        if levels < 1:
            raise ValueError(f"PyramidFlowNet needs levels >= 1; got {levels}")
        self.levels = levels
        self.size_multiple = 2**levels
        self.stages = nn.ModuleList(FlowLevel(channels, kernel) for _ in range(levels))  # G_K..G_1

    def forward(self, prev: torch.Tensor, cur: torch.Tensor) -> torch.Tensor:
        """prev = frame_{t-1}, cur = frame_t, (N,3,H,W) in [0,1] -> flow (N,2,H,W) float32, pixels."""
        h, w = cur.shape[-2:]
        if prev.shape != cur.shape or h % self.size_multiple or w % self.size_multiple:
            raise ValueError(
                f"PyramidFlowNet needs two frames of one shape with H, W multiples of "
                f"{self.size_multiple}; got {tuple(prev.shape)} and {tuple(cur.shape)}"
            )
        pyramid = [(F.avg_pool2d(local_contrast(prev), 2), F.avg_pool2d(local_contrast(cur), 2))]
        for _ in range(self.levels - 1):
            pyramid.append(tuple(F.avg_pool2d(x, 2) for x in pyramid[-1]))
        coarsest = pyramid[-1][1]
        flow = cur.new_zeros(coarsest.shape[0], 2, *coarsest.shape[-2:], dtype=torch.float32)
        for k, stage in enumerate(self.stages):
            p, c = pyramid[-1 - k]
            if k > 0:
                flow = upsample_flow(flow)
            warped = warp(p, flow) if k > 0 else p
            step = stage(torch.cat([c, warped.to(c.dtype), flow.to(c.dtype)], dim=1)).float()
            flow = flow + MAX_STEP * torch.tanh(step / MAX_STEP)
        return upsample_flow(flow)
