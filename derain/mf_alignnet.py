"""MF-AlignNet (Sec. 4): align the previous frame's estimates to the current frame.

    F_t        = FlowNet(B^M_{t-1}, B^S_t)          backward flow, (N,2,H,W) pixels
    B^{M,F}_{t-1} = warp(B^M_{t-1}, F_t)            the previous final estimate, aligned to t
    O~^F_{t-1}    = warp(O~_{t-1}, F_t)             the previous rain frame, aligned to t

The flow is estimated between clean estimates, where rain does not disturb it.
"""

from __future__ import annotations

import torch
from torch import nn

from derain.flownet import PyramidFlowNet
from derain.warp import warp


class MFAlignNet(nn.Module):
    def __init__(self, flownet: PyramidFlowNet):
        super().__init__()
        self.flownet = flownet

    def forward(
        self, clean_prev: torch.Tensor, clean_cur: torch.Tensor, rain_prev: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """clean_prev B^M_{t-1}, clean_cur B^S_t, rain_prev O~_{t-1}, all (N,3,H,W)
        -> (flow (N,2,H,W), B^{M,F}_{t-1} (N,3,H,W), O~^F_{t-1} (N,3,H,W)), float32."""
        flow = self.flownet(clean_prev, clean_cur)
        return flow, warp(clean_prev, flow), warp(rain_prev, flow)
