"""Quality metrics on luminance, as the paper and BasicSR compute them (numpy, float64).

- :func:`rgb_to_y`: BT.601 luma as MATLAB's ``rgb2ycbcr`` on the [0, 255] scale.
- :func:`psnr_y`: PSNR of Y with peak 255.
- :func:`ssim_y`: SSIM of Y, 11x11 Gaussian window (sigma 1.5), population statistics, mean over
  the *valid* region (windows fully inside the image); agrees with
  ``skimage.metrics.structural_similarity(y1, y2, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)``, which averages the same region.
- :func:`temporal_consistency`: flow-warped change between consecutive outputs against the same
  change in the ground truth (definition in its docstring).
- :func:`rain_free_mask` and :func:`rain_free_change`: what a method does where there is no
  rain (e.g. between the streaks of the "streaks" preset, where beta = 1): the mean change of Y
  and the share of the clean frame's detail kept there.
"""

from __future__ import annotations

import cv2
import numpy as np

Y_WEIGHTS = np.array([65.481, 128.553, 24.966])
"""BT.601 luma weights for RGB in [0, 1] giving Y on the [0, 255] scale (plus 16)."""

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
_C1 = (0.01 * 255.0) ** 2
_C2 = (0.03 * 255.0) ** 2


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """Luma of RGB in [0, 1]: Y = 16 + 65.481 R + 128.553 G + 24.966 B, in [16, 235].

    image: (..., 3) float RGB in [0, 1] (or uint8, scaled by 1/255). Returns (...) float64.
    """
    image = np.asarray(image)
    if image.shape[-1:] != (3,):
        raise ValueError(f"rgb_to_y expects (..., 3) RGB, got shape {image.shape}")
    if image.dtype == np.uint8:
        image = image / 255.0
    return 16.0 + image.astype(np.float64) @ Y_WEIGHTS


def psnr_y(output: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of the Y channel, peak 255: 10 log10(255^2 / MSE); inf when identical.

    output, target: (H, W, 3) RGB in [0, 1] (or uint8).
    """
    _same_shape(output, target)
    mse = float(np.mean((rgb_to_y(output) - rgb_to_y(target)) ** 2))
    return float("inf") if mse == 0.0 else 10.0 * np.log10(255.0**2 / mse)


def ssim_y(output: np.ndarray, target: np.ndarray) -> float:
    """SSIM of the Y channel (Wang et al. 2004) over the valid region.

    output, target: (H, W, 3) RGB in [0, 1] (or uint8), H and W >= 11.
    Local statistics use an 11x11 Gaussian window, sigma 1.5, population (co)variances;
    C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2; the SSIM map is averaged over the
    (H - 10) x (W - 10) positions where the window lies inside the image.
    """
    _same_shape(output, target)
    if min(output.shape[:2]) < SSIM_WINDOW:
        raise ValueError(f"ssim_y needs frames of at least 11x11 pixels, got {output.shape[:2]}")
    x, y = rgb_to_y(output), rgb_to_y(target)
    mx, my = _gaussian_valid(x), _gaussian_valid(y)
    vx = _gaussian_valid(x * x) - mx * mx
    vy = _gaussian_valid(y * y) - my * my
    cxy = _gaussian_valid(x * y) - mx * my
    ssim_map = ((2 * mx * my + _C1) * (2 * cxy + _C2)) / ((mx**2 + my**2 + _C1) * (vx + vy + _C2))
    return float(ssim_map.mean(dtype=np.float64))


def _gaussian_window() -> np.ndarray:
    """(11,) normalised 1-D Gaussian, sigma 1.5 (the separable factor of the 2-D window)."""
    r = np.arange(SSIM_WINDOW, dtype=np.float64) - SSIM_WINDOW // 2
    g = np.exp(-0.5 * (r / SSIM_SIGMA) ** 2)
    return g / g.sum()


def _gaussian_valid(image: np.ndarray) -> np.ndarray:
    """Separable Gaussian filtering of (H, W) keeping only valid positions: (H - 10, W - 10)."""
    g = _gaussian_window()
    rows = np.lib.stride_tricks.sliding_window_view(image, SSIM_WINDOW, axis=0) @ g
    return np.lib.stride_tricks.sliding_window_view(rows, SSIM_WINDOW, axis=1) @ g


def estimate_flow(frames: np.ndarray) -> np.ndarray:
    """Backward flow between consecutive frames with OpenCV's DIS (medium preset).

    frames: (T, H, W, 3) RGB in [0, 1]. Returns (T-1, H, W, 2) float32 pixels (dx, dy) with
    frame_t(x, y) ~= frame_{t-1}(x + dx, y + dy) (the project convention).
    """
    gray = [np.clip(rgb_to_y(f) - 16.0, 0, 255).astype(np.uint8) for f in frames]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return np.stack([dis.calc(gray[t], gray[t - 1], None) for t in range(1, len(gray))])


def warp_backward(image: np.ndarray, flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Backward-warp ``image`` with ``flow``: out(x, y) = image(x + dx, y + dy), bilinear.

    image: (H, W) or (H, W, C); flow: (H, W, 2) pixels. Returns (warped, valid) where valid
    (H, W) bool marks positions whose source lies inside the image.
    """
    h, w = flow.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    map_x, map_y = grid_x + flow[..., 0], grid_y + flow[..., 1]
    warped = cv2.remap(
        image.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    valid = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
    return warped, valid


def temporal_consistency(
    output: np.ndarray, target: np.ndarray, flow: np.ndarray | None = None
) -> float:
    """Temporal-consistency error of a derained clip (lower is better; 0 for the ground truth).

    For t = 1..T-1, with W_t backward warping by the flow from frame t to frame t-1 and Y luma
    on the [0, 255] scale:

        e_t = mean over valid pixels of | (Y(out_t) - W_t Y(out_{t-1}))
                                          - (Y(gt_t) - W_t Y(gt_{t-1})) |

    and the figure is the mean of e_t over t. The warped difference removes the scene's motion,
    so what is left is flicker the output has and the ground truth has not (rain that changes
    from frame to frame, unstable restoration). Valid pixels are those whose flow points inside
    the frame.

    output, target: (T, H, W, 3) RGB in [0, 1]. flow: (T-1, H, W, 2) backward flow of the
    ground truth when the dataset knows it; None estimates it on the ground truth with
    :func:`estimate_flow`.
    """
    _same_shape(output, target)
    if output.ndim != 4 or len(output) < 2:
        raise ValueError(f"temporal_consistency expects (T>=2, H, W, 3) clips, got {output.shape}")
    if flow is None:
        flow = estimate_flow(target)
    if flow.shape != (len(output) - 1, *output.shape[1:3], 2):
        raise ValueError(f"flow shape {flow.shape} does not fit clips of shape {output.shape}")
    y_out, y_gt = rgb_to_y(output), rgb_to_y(target)
    errors = []
    for t in range(1, len(output)):
        warped_out, valid = warp_backward(y_out[t - 1], flow[t - 1])
        warped_gt, _ = warp_backward(y_gt[t - 1], flow[t - 1])
        diff = (y_out[t] - warped_out) - (y_gt[t] - warped_gt)
        errors.append(float(np.abs(diff[valid]).mean()) if valid.any() else 0.0)
    return float(np.mean(errors))


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"output shape {a.shape} differs from target shape {b.shape}")


NO_RAIN = 0.5 / 255
"""A layer value below half an 8-bit level counts as no rain (beta above 1 minus it)."""


def rain_free_mask(layers: dict[str, np.ndarray], margin: int = 2) -> np.ndarray:
    """Pixels without rain, (T,H,W) bool: S, U and alpha below NO_RAIN and beta above 1 - NO_RAIN,
    shrunk by ``margin`` px so the rims of streaks and drops are left out.

    layers: a dataset clip's layers, "S", "U", "beta", "alpha" (T,H,W,1).
    """
    dry = (layers["beta"][..., 0] >= 1.0 - NO_RAIN) & (layers["alpha"][..., 0] <= NO_RAIN)
    for name in ("S", "U"):
        dry &= layers[name][..., 0] <= NO_RAIN
    if margin:
        kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
        dry = np.stack([cv2.erode(m.astype(np.uint8), kernel) > 0 for m in dry])
    return dry


def rain_free_change(
    output: np.ndarray, clean: np.ndarray, mask: np.ndarray
) -> tuple[float, float]:
    """What a method did where there is no rain: (error, detail) over the mask.

    output, clean: (T,H,W,3) RGB in [0, 1]; mask: (T,H,W) bool (``rain_free_mask``).
    error: mean |Y_out - Y_clean| in 8-bit levels (0 = untouched).
    detail: sum |Laplacian(Y_out)| / sum |Laplacian(Y_clean)|, the share of fine detail kept
    (1 = all, < 1 = smoothed away, > 1 = added).
    Both are nan when the mask is empty.
    """
    _same_shape(output, clean)
    if not mask.any():
        return float("nan"), float("nan")
    y_out, y_clean = rgb_to_y(output), rgb_to_y(clean)
    error = float(np.abs(y_out - y_clean)[mask].mean())
    lap = [np.abs(np.stack([cv2.Laplacian(f, cv2.CV_64F) for f in y])) for y in (y_out, y_clean)]
    return error, float(lap[0][mask].sum() / max(lap[1][mask].sum(), 1e-12))
