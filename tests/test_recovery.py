"""derain.recovery: Eq. 6 inverts rainsynth's composition; its residual target makes it exact."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from derain.heads import layers_from_raw, prior_raw
from derain.recovery import InverseRecovery, recover, residual_target


def _render(preset: str, **occlusion):
    rainsynth = pytest.importorskip("rainsynth")
    if not hasattr(rainsynth, "render"):
        pytest.skip("rainsynth.render is not available")
    t, h, w = 3, 48, 64
    params = rainsynth.sample_params(preset, seed=3, shape=(t, h, w))
    if occlusion:
        params = dataclasses.replace(
            params, occlusion=dataclasses.replace(params.occlusion, **occlusion)
        )
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.1, 0.6, (t, h, w, 3)).astype(np.float32)
    clip = rainsynth.render(clean, params)
    to_torch = {
        k: torch.from_numpy(np.ascontiguousarray(v)).permute(0, 3, 1, 2)
        for k, v in clip.layers.items()
    }
    return (
        torch.from_numpy(clean).permute(0, 3, 1, 2),
        torch.from_numpy(clip.rain).permute(0, 3, 1, 2),
        to_torch,
    )


def test_eq6_inverts_rainsynth_composition_without_occlusion():
    clean, rain, layers = _render("light", density=0.0)
    assert float(layers["alpha"].abs().max()) == 0.0
    assert float(layers["S"].max()) > 0.0 and float(layers["beta"].min()) < 1.0  # rain is there
    estimate = recover(rain, layers["S"], layers["U"], layers["beta"], layers["A"], R=0.0)
    unclipped = (rain > 0) & (rain < 1)  # the renderer clips O~ to [0, 1]
    assert unclipped.float().mean() > 0.9
    torch.testing.assert_close(estimate[unclipped], clean[unclipped], rtol=0, atol=2e-5)
    assert (estimate - rain).abs().max() > 0.05  # and the inversion did something


def test_residual_target_makes_eq6_exact_with_occlusion():
    clean, rain, layers = _render("heavy")
    parts = [layers[k] for k in ("S", "U", "beta", "A")]
    R = residual_target(clean, rain, *parts)
    torch.testing.assert_close(recover(rain, *parts, R=R), clean, rtol=0, atol=1e-5)


def test_recovery_switch_predicts_b_directly():
    rain = torch.rand(2, 3, 8, 8)
    raw = prior_raw(rain, direct=True)
    raw["B"] = torch.rand(2, 3, 8, 8)
    layers = layers_from_raw(raw)
    torch.testing.assert_close(InverseRecovery(False)(rain, layers), rain + raw["B"])
    expected = (rain - (1 - 0.9) * 0.8) / 0.9  # the prior veil: beta 0.9, grey light 0.8
    torch.testing.assert_close(InverseRecovery(True)(rain, layers), expected)
