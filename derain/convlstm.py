"""ConvLSTM cell (Shi et al. 2015), MF-DerainNet's memory across frames.

    i, f, g, o = split(conv([x_t, h_{t-1}]))
    c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
    h_t = sigmoid(o) * tanh(c_t)

The gate convolution may run in bf16 under autocast; the state (h, c) is kept in float32.
"""

from __future__ import annotations

import torch
from torch import nn

LSTMState = tuple[torch.Tensor, torch.Tensor]


class ConvLSTMCell(nn.Module):
    """(N, in_channels, h, w) and state ((N, hidden, h, w), (N, hidden, h, w)) -> h_t, state."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel: int = 3):
        super().__init__()
        self.hidden_channels = hidden_channels
        self.gates = nn.Conv2d(
            in_channels + hidden_channels, 4 * hidden_channels, kernel, padding=kernel // 2
        )
        with torch.no_grad():  # forget gate starts open: remember by default
            self.gates.bias[hidden_channels : 2 * hidden_channels] = 1.0

    def init_state(self, x: torch.Tensor) -> LSTMState:
        """Zero state sized like the input x (N, in_channels, h, w)."""
        n, _, h, w = x.shape
        zeros = x.new_zeros(n, self.hidden_channels, h, w, dtype=torch.float32)
        return zeros, zeros.clone()

    def forward(self, x: torch.Tensor, state: LSTMState) -> tuple[torch.Tensor, LSTMState]:
        h, c = state
        gates = self.gates(torch.cat([x, h.to(x.dtype)], dim=1)).float()
        i, f, g, o = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)
