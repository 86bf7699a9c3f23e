"""derain.convlstm: one state update of the ConvLSTM cell."""

from __future__ import annotations

import torch

from derain.convlstm import ConvLSTMCell


def test_convlstm_state_update():
    cell = ConvLSTMCell(4, 5)
    x = torch.rand(2, 4, 6, 7)
    h, (h2, c) = cell(x, cell.init_state(x))
    assert h.shape == c.shape == (2, 5, 6, 7) and h is h2
    assert h.abs().max() < 1 and c.abs().sum() > 0
