"""Building blocks shared by SF-DerainNet and MF-DerainNet: residual blocks and U-Net halves.

Plain 3x3 convolutions, LeakyReLU, no normalisation: autocast (bf16) and channels_last friendly.
Scale i of a U-Net with channels (c_0, ..., c_{L-1}) has c_i channels at 1/2^i of the input size.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)


def activation() -> nn.Module:
    return nn.LeakyReLU(0.2)


class ResBlock(nn.Module):
    """x + conv(act(conv(x))): (N,C,H,W) -> (N,C,H,W)."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            conv3x3(channels, channels), activation(), conv3x3(channels, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def stage(in_channels: int, out_channels: int, stride: int, n_res: int) -> nn.Sequential:
    """One encoder scale: a (strided) conv into the scale, then ``n_res`` residual blocks."""
    blocks = [ResBlock(out_channels) for _ in range(n_res)]
    return nn.Sequential(conv3x3(in_channels, out_channels, stride), activation(), *blocks)


class Encoder(nn.Module):
    """U-Net encoder: stride-2 convs down, residual blocks within each scale.

    n_res[i] residual blocks at scale i.
    (N, in_channels, H, W) -> [(N, c_0, H, W), (N, c_1, H/2, W/2), ..., (N, c_{L-1}, H/2^{L-1}, .)]
    """

    def __init__(self, in_channels: int, channels: Sequence[int], n_res: Sequence[int]):
        super().__init__()
        ins = [in_channels, *channels[:-1]]
        self.stages = nn.ModuleList(
            stage(cin, cout, 1 if i == 0 else 2, n)
            for i, (cin, cout, n) in enumerate(zip(ins, channels, n_res, strict=True))
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for s in self.stages:
            x = s(x)
            features.append(x)
        return features


class Decoder(nn.Module):
    """U-Net decoder: transposed convs up, encoder skips added, residual blocks within each scale.

    n_res[i] residual blocks at scale i < L-1 (the coarsest scale belongs to the encoder).
    x (N, c_{L-1}, H/2^{L-1}, W/2^{L-1}) and skips [(N, c_0, H, W), ..., (N, c_{L-2}, ...)]
    -> (N, c_0, H, W).
    """

    def __init__(self, channels: Sequence[int], n_res: Sequence[int]):
        super().__init__()
        # (c_i, c_{i-1}, n_res[i-1]) for i = L-1 .. 1, coarse to fine
        steps = list(zip(channels[:0:-1], channels[-2::-1], n_res[-2::-1], strict=True))
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(ci, co, 4, stride=2, padding=1) for ci, co, _ in steps
        )
        self.act = activation()
        self.blocks = nn.ModuleList(
            nn.Sequential(*[ResBlock(co) for _ in range(n)]) for _, co, n in steps
        )

    def forward(self, x: torch.Tensor, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        for up, block, skip in zip(self.ups, self.blocks, reversed(skips), strict=True):
            x = block(self.act(up(x)) + skip)
        return x
