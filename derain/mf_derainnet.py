"""MF-DerainNet (Sec. 4): refine the single-frame layers with the aligned previous frame.

Two encoder branches, one on the clean estimates [B^S_t, B^{M,F}_{t-1}] and one on the rain frames
[O~_t, O~^F_{t-1}], are fused before the coarsest scale. The clean-estimate branch also reads the
single-frame variables v^S themselves (derain.heads.stack_raw): the deltas correct them, and B^S_t
alone does not say what they are (Eq. 6 has more unknowns than B^S_t has channels). At the
coarsest scale a ConvLSTM carries memory across frames, added to the per-frame features through a
zero-initialised 1x1 projection:

    y_t = act(conv(x_t)) + P h_t,    h_t, c_t = ConvLSTM(x_t, h_{t-1}, c_{t-1}),    P = 0 at start

so the memory is a residual on top of the per-frame path: the full model starts as the v2
ablation (no ConvLSTM) from the same initial weights and learns what the memory adds. The decoder,
with skips from the clean-estimate branch, predicts residual variables: v^M_t = v^S_t + delta_t
for v in S, U, beta, R, A (added in raw space, derain.heads; the per-frame deltas also read the
whole-frame context vector, derain.context, when the model has one); the inverse recovery (Eq. 6)
then gives the final B^M_t. With ModelConfig.row_position the rain branch also reads each pixel's
row position in the whole frame (derain.context.row_positions).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from derain.blocks import Decoder, Encoder, activation, conv3x3, stage
from derain.convlstm import ConvLSTMCell, LSTMState
from derain.heads import LayerHead, raw_channels, stack_raw


class MFDerainNet(nn.Module):
    """Residual layer variables delta_t from the current and the aligned previous frame.

    Args:
        channels: (c_0, ..., c_{L-1}) channels per scale, L >= 2 scales.
        n_res: residual blocks per scale (L values).
        context_channels: channels of the whole-frame context vector (0: none).
        use_lstm: the ConvLSTM memory at the coarsest scale (False, ablation v2: the per-frame
            conv alone, so the only link between frames is the aligned previous frame).
        direct: also predict B directly (ablation v3).
        position_channels: channels of the position map the rain branch reads (0: none).
    """

    def __init__(
        self,
        channels: Sequence[int],
        n_res: Sequence[int],
        context_channels: int = 0,
        use_lstm: bool = True,
        direct: bool = False,
        position_channels: int = 0,
    ):
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"MFDerainNet needs at least 2 scales; got channels {tuple(channels)}")
        fine, coarsest = channels[:-1], channels[-1]
        self.clean_encoder = Encoder(6 + raw_channels(direct), fine, n_res[:-1])
        self.rain_encoder = Encoder(6 + position_channels, fine, n_res[:-1])
        self.fuse = nn.Sequential(conv3x3(2 * fine[-1], fine[-1]), activation())
        self.bottom = stage(fine[-1], coarsest, 2, n_res[-1])
        self.plain = nn.Sequential(conv3x3(coarsest, coarsest), activation())
        self.decoder = Decoder(channels, n_res)
        self.head = LayerHead(channels[0], coarsest, context_channels, direct=direct, prior=False)
        # Built last, so that every other weight draws the same initial values with or without it.
        self.lstm = self.memory = None
        if use_lstm:
            self.lstm = ConvLSTMCell(coarsest, coarsest)
            self.memory = nn.Conv2d(coarsest, coarsest, 1)
            nn.init.zeros_(self.memory.weight)
            nn.init.zeros_(self.memory.bias)

    def coarse_shape(self, rain: torch.Tensor) -> tuple[int, int]:
        n_down = len(self.decoder.ups)
        return rain.shape[-2] >> n_down, rain.shape[-1] >> n_down

    def init_state(self, rain: torch.Tensor) -> LSTMState | None:
        """Zero ConvLSTM state for frames like rain (N,3,H,W); None without the LSTM."""
        if self.lstm is None:
            return None
        n = rain.shape[0]
        return self.lstm.init_state(rain.new_zeros(n, 1, *self.coarse_shape(rain)))

    def forward(
        self,
        clean: torch.Tensor,
        clean_prev_aligned: torch.Tensor,
        raw_single: dict[str, torch.Tensor],
        rain: torch.Tensor,
        rain_prev_aligned: torch.Tensor,
        position: torch.Tensor,
        context: torch.Tensor,
        state: LSTMState | None,
    ) -> tuple[dict[str, torch.Tensor], LSTMState | None]:
        """B^S_t, B^{M,F}_{t-1} (N,3,H,W), the raw v^S_t (derain.heads), O~_t, O~^F_{t-1} (N,3,H,W),
        the position map (N,position_channels,H,W), the context vector (N,context_channels) and
        the LSTM state -> (raw deltas, shapes as derain.heads, new LSTM state)."""
        guide = torch.cat([clean, clean_prev_aligned, stack_raw(raw_single)], dim=1)
        clean_features = self.clean_encoder(guide)
        rain_features = self.rain_encoder(
            torch.cat([rain, rain_prev_aligned, position.to(rain.dtype)], dim=1)
        )
        x = self.fuse(torch.cat([clean_features[-1], rain_features[-1]], dim=1))
        x = self.bottom(x)
        y = self.plain(x)
        if self.lstm is not None:
            h, state = self.lstm(x, state)
            y = y + self.memory(h)
        return self.head(self.decoder(y, clean_features), y, context), state
