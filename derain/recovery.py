"""Inverse recovery module (Eq. 6): the clean frame from the rain frame and its layers.

    B^ = (O~ - U - S - (1 - beta) A) / max(beta, 0.1) + R                        (6)

Eq. 6 inverts Eq. 3; occlusion (Eq. 4: alpha, M) is not in it, so the residual R absorbs it. Its
ground truth is therefore R = B - (O~ - U - S - (1 - beta) A) / max(beta, 0.1)  (``residual_target``),
which makes Eq. 6 exact for any rain frame, occluded or not.
"""

from __future__ import annotations

import torch
from torch import nn

EPSILON = 0.1  # the lower bound on beta in Eq. 6


def invert_rain(
    rain: torch.Tensor, S: torch.Tensor, U: torch.Tensor, beta: torch.Tensor, A: torch.Tensor
) -> torch.Tensor:
    """Eq. 6 without R: (O~ - U - S - (1 - beta) A) / max(beta, 0.1). Shapes broadcast to rain's."""
    return (rain - U - S - (1.0 - beta) * A) / beta.clamp(min=EPSILON)


def recover(
    rain: torch.Tensor,
    S: torch.Tensor,
    U: torch.Tensor,
    beta: torch.Tensor,
    A: torch.Tensor,
    R: torch.Tensor,
) -> torch.Tensor:
    """Eq. 6. rain (...,3,H,W); S, U, beta (...,1,H,W); A (...,3,1,1); R (...,3,H,W) -> B^ (...,3,H,W)."""
    return invert_rain(rain, S, U, beta, A) + R


def residual_target(
    clean: torch.Tensor,
    rain: torch.Tensor,
    S: torch.Tensor,
    U: torch.Tensor,
    beta: torch.Tensor,
    A: torch.Tensor,
) -> torch.Tensor:
    """Ground-truth R: the R that makes Eq. 6 return ``clean`` exactly (occlusion included)."""
    return clean - invert_rain(rain, S, U, beta, A)


class InverseRecovery(nn.Module):
    """Eq. 6 as a module, with the ablation switch.

    enabled=True: B^ = Eq. 6 of the layers. enabled=False (ablation v3, no inverse recovery): the
    network predicts B directly, as a residual on the rain frame: B^ = O~ + layers["B"].
    """

    def __init__(self, enabled: bool = True):
        super().__init__()
        self.enabled = enabled

    def forward(self, rain: torch.Tensor, layers: dict[str, torch.Tensor]) -> torch.Tensor:
        """rain (N,3,H,W), layers from ``heads.layers_from_raw`` -> B^ (N,3,H,W) float32, unclamped."""
        if not self.enabled:
            return rain.float() + layers["B"]
        return recover(
            rain.float(), layers["S"], layers["U"], layers["beta"], layers["A"], layers["R"]
        )

    def extra_repr(self) -> str:
        return f"enabled={self.enabled}"
