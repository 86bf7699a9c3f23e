"""derain.context: the position of each row in the whole frame."""

from __future__ import annotations

import torch

from derain.context import row_positions


def test_row_positions_run_top_to_bottom_and_clamp_padding():
    torch.testing.assert_close(row_positions(0, 5, 5), torch.tensor([0, 0.25, 0.5, 0.75, 1]))
    torch.testing.assert_close(row_positions(-2, 4, 3), torch.tensor([0, 0, 0, 0.5]))
    torch.testing.assert_close(row_positions(2, 3, 4), torch.tensor([2 / 3, 1, 1]))
    assert row_positions(0, 2, 1).tolist() == [0, 0]  # a one-row frame
