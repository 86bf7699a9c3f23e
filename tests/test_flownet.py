"""derain.flownet: the pyramid flow net's shapes, its local contrast input, learning a shift."""

from __future__ import annotations

import pytest
import torch

from derain import build_flownet
from derain.flownet import local_contrast


def test_flownet_shape_and_size_check():
    net = build_flownet(size="small")
    a, b = torch.rand(2, 3, 32, 48), torch.rand(2, 3, 32, 48)
    flow = net(a, b)
    assert flow.shape == (2, 2, 32, 48) and flow.dtype == torch.float32
    with pytest.raises(ValueError, match="multiples of 16"):
        net(torch.rand(1, 3, 24, 32), torch.rand(1, 3, 24, 32))


def test_local_contrast_normalises_luma():
    g = torch.Generator().manual_seed(3)
    frame = 0.2 + 0.5 * torch.rand(2, 3, 20, 24, generator=g)
    contrast = local_contrast(frame)
    assert contrast.shape == (2, 1, 20, 24) and contrast.dtype == torch.float32
    torch.testing.assert_close(local_contrast(frame + 0.1), contrast, atol=1e-4, rtol=0)
    assert local_contrast(torch.full((1, 3, 16, 16), 0.6)).abs().max() < 1e-5  # flat stays flat
    edge = torch.zeros(1, 3, 16, 16)
    edge[..., 8:] = 1.0  # a vertical step: dark left, bright right
    c = local_contrast(edge)[0, 0]
    assert (c[:, 6:8] < -0.5).all() and (c[:, 8:10] > 0.5).all() and c[:, :3].abs().max() < 1e-5
    faint = local_contrast(0.5 + 0.1 * (edge - 0.5))[0, 0]  # a tenth of the step, a fifth of C
    assert (faint[:, 8:10] > 0.2 * c[:, 8:10]).all() and (faint[:, 8:10] < c[:, 8:10]).all()
    edge.requires_grad_(True)  # flat regions (zero variance) must not make the gradient NaN
    local_contrast(edge * torch.rand(1, 3, 16, 16, generator=g)).square().sum().backward()
    assert torch.isfinite(edge.grad).all() and edge.grad.abs().sum() > 0


def test_flownet_learns_a_known_shift():
    torch.manual_seed(0)
    net = build_flownet()
    g = torch.Generator().manual_seed(0)
    scene = torch.nn.functional.interpolate(
        torch.rand(2, 3, 12, 14, generator=g), size=(48, 56), mode="bilinear"
    )
    prev, cur = scene[..., 4:36, 4:52], scene[..., 5:37, 2:50]  # cur(x, y) = prev(x - 2, y + 1)
    flow_gt = torch.tensor([-2.0, 1.0]).view(1, 2, 1, 1).expand(2, 2, 32, 48)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-3)
    errors = []
    for _ in range(30):
        error = (net(prev, cur) - flow_gt).norm(dim=1).mean()
        optimizer.zero_grad()
        error.backward()
        optimizer.step()
        errors.append(error.item())
    assert errors[-1] < 0.25 * errors[0], errors
