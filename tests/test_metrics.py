"""derain.metrics: Y PSNR/SSIM agree with skimage and with hand values; temporal consistency."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from derain.metrics import (
    Y_WEIGHTS,
    estimate_flow,
    psnr_y,
    rain_free_change,
    rain_free_mask,
    rgb_to_y,
    ssim_y,
    temporal_consistency,
    warp_backward,
)


def _skimage_ssim_y(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(
        rgb_to_y(a),
        rgb_to_y(b),
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=255,
    )


def test_rgb_to_y_matches_matlab_rgb2ycbcr_values():
    # MATLAB: rgb2ycbcr([0 0 0]) -> Y 16/255, rgb2ycbcr([1 1 1]) -> Y 235/255, pure red -> 81.481.
    assert rgb_to_y(np.zeros(3)) == pytest.approx(16.0)
    assert rgb_to_y(np.ones(3)) == pytest.approx(235.0)
    assert rgb_to_y(np.array([1.0, 0.0, 0.0])) == pytest.approx(16.0 + 65.481)
    assert rgb_to_y(np.array([255, 0, 0], np.uint8)) == pytest.approx(16.0 + 65.481)
    with pytest.raises(ValueError, match="RGB"):
        rgb_to_y(np.zeros((4, 4)))


def test_psnr_hand_example():
    # Y differs by 128.553 * 0.1 everywhere when only G moves by 0.1: PSNR = 20 log10(255 / d).
    a = np.full((16, 16, 3), 0.5)
    b = a.copy()
    b[..., 1] += 0.1
    assert psnr_y(a, b) == pytest.approx(20 * np.log10(255 / (128.553 * 0.1)), abs=1e-9)
    assert psnr_y(a, a) == float("inf")


def test_ssim_hand_example_constant_frames():
    # Constant frames a, b: variances vanish, SSIM = (2 a b + C1) / (a^2 + b^2 + C1) on Y.
    a, b = np.full((20, 24, 3), 0.2), np.full((20, 24, 3), 0.6)
    ya, yb = 16 + 0.2 * 219.0, 16 + 0.6 * 219.0
    c1 = (0.01 * 255) ** 2
    assert ssim_y(a, b) == pytest.approx((2 * ya * yb + c1) / (ya**2 + yb**2 + c1), abs=1e-12)
    assert ssim_y(a, a) == pytest.approx(1.0)


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(11, 40),
    w=st.integers(11, 40),
    noise=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**16),
)
def test_psnr_ssim_agree_with_skimage(h, w, noise, seed):
    rng = np.random.default_rng(seed)
    a = rng.random((h, w, 3))
    b = np.clip(a + noise * rng.standard_normal(a.shape), 0, 1)
    assert ssim_y(a, b) == pytest.approx(_skimage_ssim_y(a, b), abs=1e-6)
    if np.isfinite(psnr_y(a, b)):  # skimage divides by zero on identical frames
        expected = peak_signal_noise_ratio(rgb_to_y(a), rgb_to_y(b), data_range=255)
        assert psnr_y(a, b) == pytest.approx(expected, abs=1e-6)


def test_ssim_agrees_with_skimage_on_a_real_sized_frame():
    rng = np.random.default_rng(1)
    clean = rng.random((256, 448, 3)).astype(np.float32)
    rain = np.clip(clean + 0.3 * (rng.random(clean.shape) > 0.95), 0, 1).astype(np.float32)
    assert abs(ssim_y(rain, clean) - _skimage_ssim_y(rain, clean)) < 1e-6


def test_metrics_reject_bad_shapes():
    with pytest.raises(ValueError, match="differs"):
        psnr_y(np.zeros((8, 8, 3)), np.zeros((8, 9, 3)))
    with pytest.raises(ValueError, match="11x11"):
        ssim_y(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))


def _moving_clip(
    rng: np.random.Generator, t: int = 4, shift: int = 2
) -> tuple[np.ndarray, np.ndarray]:
    """A smooth texture translated right by `shift` px per frame, and its exact backward flow."""
    base = rng.random((40, 80, 3))
    base = (base + np.roll(base, 1, 0) + np.roll(base, 1, 1) + np.roll(base, 1, (0, 1))) / 4
    frames = np.stack([np.roll(base, shift * i, axis=1) for i in range(t)])[:, :, 10:70]
    flow = np.zeros((t - 1, 40, 60, 2), np.float32)
    flow[..., 0] = -shift  # frame_t(x) = frame_{t-1}(x - shift)
    return frames, flow


def test_warp_backward_with_known_shift_reconstructs_next_frame():
    frames, flow = _moving_clip(np.random.default_rng(0))
    warped, valid = warp_backward(frames[0], flow[0])
    np.testing.assert_allclose(warped[:, 2:], frames[1][:, 2:], atol=1e-6)
    assert not valid[:, :2].any() and valid[:, 2:].all()


def test_temporal_consistency_zero_for_ground_truth_positive_for_flicker():
    rng = np.random.default_rng(0)
    frames, flow = _moving_clip(rng)
    assert temporal_consistency(frames, frames, flow) == 0.0
    flicker = np.clip(frames + 0.05 * rng.standard_normal(frames.shape), 0, 1)
    steady = np.clip(frames + 0.05, 0, 1)  # a constant offset does not flicker
    assert temporal_consistency(flicker, frames, flow) > 5 * temporal_consistency(
        steady, frames, flow
    )


def test_estimated_flow_follows_a_known_shift():
    frames, flow = _moving_clip(np.random.default_rng(3))
    estimate = estimate_flow(frames.astype(np.float32))
    assert estimate.shape == flow.shape
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert np.median(np.abs(estimate[inner] - flow[inner])) < 0.25
    noisy = np.clip(frames + 0.05 * np.random.default_rng(4).standard_normal(frames.shape), 0, 1)
    assert temporal_consistency(noisy, frames) > 1.0  # flow estimated on the ground truth


def test_rain_free_mask_keeps_only_pixels_without_any_rain_layer():
    t, h, w = 2, 24, 32
    layers = {k: np.zeros((t, h, w, 1), np.float32) for k in ("S", "U", "alpha")}
    layers["beta"] = np.ones((t, h, w, 1), np.float32)
    layers["S"][0, :, 10] = 0.3  # a vertical streak in frame 0
    layers["beta"][1, :12] = 0.8  # haze over the top half of frame 1
    dry = rain_free_mask(layers, margin=2)
    assert dry.shape == (t, h, w)
    assert not dry[0, :, 8:13].any() and dry[0, 5:-5, 14:-5].all()  # the streak and its rim
    assert not dry[1, :14].any() and dry[1, 16:-3, 3:-3].all()
    layers["beta"][:] = 0.9  # haze everywhere: no rain-free pixel
    assert not rain_free_mask(layers).any()


def test_rain_free_change_is_zero_and_one_when_untouched_and_measures_change():
    rng = np.random.default_rng(0)
    clean = rng.random((2, 32, 40, 3)).astype(np.float32) * 0.8
    dry = np.zeros((2, 32, 40), bool)
    dry[:, 4:-4, 4:-4] = True
    assert rain_free_change(clean, clean, dry) == (0.0, 1.0)
    brighter = clean + np.float32(2 / 255)
    error, detail = rain_free_change(brighter, clean, dry)
    assert error == pytest.approx(2 * Y_WEIGHTS.sum() / 255) and detail == pytest.approx(1.0)
    blurred = np.stack([cv2.GaussianBlur(f, (5, 5), 1.5) for f in clean])
    assert rain_free_change(blurred, clean, dry)[1] < 0.5  # detail smoothed away
    assert all(np.isnan(rain_free_change(clean, clean, np.zeros_like(dry))))
