"""InputPadder: pad frames to a size the network accepts, and crop its output back.

The networks halve the resolution several times, so H and W must be multiples of
``VideoDerainer.size_multiple``. Pad first, run, then unpad::

    padder = InputPadder(rain.shape, multiple=model.size_multiple)
    clean = padder.unpad(model(padder.pad(rain))["B"])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

MODES = ("replicate", "reflect")


class InputPadder:
    """Pads the last two dims (H, W) up to multiples of ``multiple``, split evenly on both sides.

    Args:
        shape: shape of the tensors to pad, (..., C, H, W) (e.g. (N,3,H,W) or (N,T,3,H,W)).
        multiple: H and W are padded up to a multiple of this.
        mode: "replicate" (repeat the border pixel) or "reflect" (mirror; needs pad < size).
    """

    def __init__(
        self, shape: tuple[int, ...] | torch.Size, multiple: int = 16, mode: str = "replicate"
    ):
        if len(shape) < 3:
            raise ValueError(f"InputPadder needs a shape (..., C, H, W); got {tuple(shape)}")
        if multiple < 1:
            raise ValueError(f"InputPadder multiple must be >= 1; got {multiple}")
        if mode not in MODES:
            raise ValueError(f"InputPadder mode must be one of {MODES}; got {mode!r}")
        self.shape = tuple(shape)
        h, w = self.shape[-2:]
        pad_h, pad_w = (-h) % multiple, (-w) % multiple
        if mode == "reflect" and (pad_h >= h or pad_w >= w):
            raise ValueError(
                f"reflect padding of a {h}x{w} frame to a multiple of {multiple} needs pads "
                f"({pad_h}, {pad_w}) smaller than the frame; use mode='replicate'"
            )
        self.mode = mode
        # (left, right, top, bottom), as F.pad takes it.
        self.pads = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C, H, W) -> (..., C, H + pad_h, W + pad_w)."""
        if tuple(x.shape[-3:]) != self.shape[-3:]:
            raise ValueError(
                f"InputPadder was made for (..., C, H, W) = {self.shape[-3:]}; got {tuple(x.shape)}"
            )
        if not any(self.pads):
            return x
        lead = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:])
        out = F.pad(flat, self.pads, mode=self.mode)
        return out.reshape(*lead, *out.shape[-3:])

    def unpad(self, x: torch.Tensor) -> torch.Tensor:
        """(..., C', H + pad_h, W + pad_w) -> (..., C', H, W); any channel count (e.g. flow)."""
        left, right, top, bottom = self.pads
        h, w = x.shape[-2:]
        return x[..., top : h - bottom, left : w - right]
