"""What a crop or tile is told about the whole frame it was cut from.

Training sees crops and inference may see tiles, but some rain variables depend on the whole frame:

- ``frame_context`` (ModelConfig.frame_context): A and the veil scale k are properties of the whole
  frame (derain.heads), and a 64x64 crop of light rain's thin veil looks much like one of
  streaks-only rain, which has none, so k learnt from the crop alone lands anywhere between the
  two. The network therefore also reads the frame the crop was cut from, averaged down to
  CONTEXT_SIZE x CONTEXT_SIZE cells: the training data cuts it from the full frame before cropping
  (derain.data), inference from the whole frame before tiling (derain.inference), and
  ``ContextNet`` turns it into a vector that the heads' per-frame part reads next to their pooled
  features.
- ``row_positions`` (ModelConfig.row_position): the veil beta = exp(-k d) thickens with the
  distance d, which in a view from the ground grows from the bottom of the frame towards the
  horizon (the renderer's depth prior, rainsynth.accumulation.HorizonDepth). A crop does not say
  where it sits in the frame, so the network reads each pixel's row position in the whole frame as
  an input channel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from derain.blocks import activation, conv3x3

CONTEXT_SIZE = 64  # cells per side of the averaged-down frame


def frame_context(frames: torch.Tensor) -> torch.Tensor:
    """Whole frames (..., 3, H, W) -> cell means (..., 3, CONTEXT_SIZE, CONTEXT_SIZE), float32.

    Each output cell is the mean of the input pixels it covers (adaptive average pooling); frames
    smaller than CONTEXT_SIZE repeat pixels instead.
    """
    lead = frames.shape[:-3]
    flat = frames.reshape(-1, *frames.shape[-3:]).float()
    pooled = F.adaptive_avg_pool2d(flat, CONTEXT_SIZE)
    return pooled.reshape(*lead, *pooled.shape[-3:])


class ContextNet(nn.Module):
    """frame_context (N,3,64,64) -> context vector (N, channels[-1]): strided convs, then the mean.

    Args:
        channels: channels of its stages, each halving the size (e.g. the U-Net's (16, 32, 64)).
    """

    def __init__(self, channels: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for c_in, c_out in zip((3, *channels[:-1]), channels, strict=True):
            layers += [conv3x3(c_in, c_out, stride=2), activation()]
        self.body = nn.Sequential(*layers)
        self.channels = channels[-1]

    def forward(self, context: torch.Tensor) -> torch.Tensor:
        return self.body(context).mean(dim=(2, 3))


def row_positions(first: int, rows: int, frame_height: int) -> torch.Tensor:
    """Positions of rows first .. first + rows - 1 of a frame frame_height rows high: (rows,)
    float32, 0 at the top row and 1 at the bottom one. Rows outside the frame (the padding of a
    tile) take the position of the nearest row inside, as replicate padding takes its pixels."""
    index = torch.arange(first, first + rows, dtype=torch.float32).clamp(0, frame_height - 1)
    return index / max(frame_height - 1, 1)
