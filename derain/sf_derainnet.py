"""SF-DerainNet (Sec. 4): single-frame estimate of the rain layers of O~_t.

A U-Net: stride-2 convs down, transposed convs up, residual blocks within encoder and decoder,
encoder -> decoder skips. Pixel heads give S, U, R and the depth d at full resolution; the global
light A and the per-frame scale k of beta = exp(-k d) come from the pooled coarsest features (and
the whole-frame context vector, derain.context, when the model has one). With
ModelConfig.row_position the input also carries each pixel's row position in the whole frame
(derain.context.row_positions). The inverse recovery (Eq. 6) then gives B^S_t.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from derain.blocks import Decoder, Encoder
from derain.heads import LayerHead


class SFDerainNet(nn.Module):
    """O~_t (N,3,H,W), its position channels and its context vector -> raw layer variables (see
    derain.heads), H, W multiples of 2^(L-1).

    Args:
        channels: (c_0, ..., c_{L-1}) channels per scale, L scales.
        n_res: residual blocks per scale (L values), in the encoder and in the decoder.
        context_channels: channels of the context vector (0: none).
        direct: also predict B directly (ablation v3).
        position_channels: channels of the position map read with the frame (0: none).
    """

    def __init__(
        self,
        channels: Sequence[int],
        n_res: Sequence[int],
        context_channels: int = 0,
        direct: bool = False,
        position_channels: int = 0,
    ):
        super().__init__()
        self.encoder = Encoder(3 + position_channels, channels, n_res)
        self.decoder = Decoder(channels, n_res)
        self.head = LayerHead(
            channels[0], channels[-1], context_channels, direct=direct, prior=True
        )

    def encode(self, rain: torch.Tensor, position: torch.Tensor) -> list[torch.Tensor]:
        """rain (N,3,H,W) and its position channels (N,position_channels,H,W) -> the encoder's
        features, finest scale first (the coarsest, last, is what A and k are pooled from)."""
        return self.encoder(torch.cat([rain, position.to(rain.dtype)], dim=1))

    def forward(
        self, rain: torch.Tensor, position: torch.Tensor, context: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """rain (N,3,H,W), position (N,position_channels,H,W), context (N,context_channels) from
        derain.context.ContextNet -> raw variables."""
        features = self.encode(rain, position)
        coarsest = features[-1]
        return self.head(self.decoder(coarsest, features[:-1]), coarsest, context)
