"""Backward warping with optical flow (MF-AlignNet's warping, and the flow losses).

Convention (the project's): BACKWARD flow in pixels, (N, 2, H, W) with channels (dx, dy).
``flow`` at pixel (x, y) of frame t points to where that content is in frame t-1:
frame_t(x, y) ~= frame_{t-1}(x + dx, y + dy), so ``warp(frame_{t-1}, flow) ~= frame_t``.

Sampling is bilinear with ``grid_sample(align_corners=True)``: pixel index x maps to the
normalised coordinate 2 x / (W - 1) - 1, so pixel centres sit exactly on the grid and an
integer flow moves an image by exactly that many pixels. Outside the frame the border pixel
is repeated. Warping runs in float32, also under autocast, for sub-pixel accuracy.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sample_grid(flow: torch.Tensor) -> torch.Tensor:
    """Absolute sampling positions x + dx, y + dy in pixels: (N,2,H,W) -> (N,2,H,W) float32."""
    n, _, h, w = flow.shape
    ys = torch.arange(h, device=flow.device, dtype=torch.float32).view(1, h, 1).expand(1, h, w)
    xs = torch.arange(w, device=flow.device, dtype=torch.float32).view(1, 1, w).expand(1, h, w)
    return torch.cat([xs, ys], dim=0).unsqueeze(0) + flow.float()


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Backward-warp ``image`` (frame t-1) to frame t.

    Args:
        image: (N, C, H, W), any channel count.
        flow: (N, 2, H, W) backward flow in pixels (dx, dy).
    Returns:
        (N, C, H, W) float32: out(x, y) = image(x + dx, y + dy), bilinear.
    """
    if image.dim() != 4 or flow.dim() != 4 or flow.shape[1] != 2:
        raise ValueError(
            f"warp needs image (N,C,H,W) and flow (N,2,H,W); got {tuple(image.shape)} and "
            f"{tuple(flow.shape)}"
        )
    if image.shape[0] != flow.shape[0] or image.shape[-2:] != flow.shape[-2:]:
        raise ValueError(
            f"warp: image {tuple(image.shape)} and flow {tuple(flow.shape)} differ in N, H or W"
        )
    h, w = image.shape[-2:]
    pos = sample_grid(flow)
    scale = pos.new_tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)]).view(1, 2, 1, 1)
    grid = (pos * scale - 1.0).permute(0, 2, 3, 1)
    # float32 inputs: autocast leaves grid_sample in float32 (its fp32 list on CPU and CUDA).
    return F.grid_sample(
        image.float(), grid, mode="bilinear", padding_mode="border", align_corners=True
    )


def in_frame(flow: torch.Tensor) -> torch.Tensor:
    """(N,2,H,W) flow -> (N,1,H,W) float mask, 1 where x + dx, y + dy lies inside the frame."""
    h, w = flow.shape[-2:]
    pos = sample_grid(flow)
    x, y = pos[:, 0:1], pos[:, 1:2]
    return ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).float()
