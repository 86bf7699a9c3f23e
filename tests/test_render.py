"""Physics and contracts of the rain model: Eqns. (3), (4), (6), continuity, direction, presets."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest
import skimage.data
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rainsynth
from rainsynth.accumulation import CHANNELS, ConstantDepth, DepthMaps, HorizonDepth
from rainsynth.accumulation_flow import veil_velocity
from rainsynth.composite import LAYERS
from rainsynth.dataset import to_uint8
from rainsynth.errors import ParamError
from rainsynth.params import SECTIONS, RainParams
from rainsynth.presets import Preset, load_preset


def photo_clip(num_frames: int = 5, height: int = 96, width: int = 160) -> np.ndarray:
    """A static clip of a real photo: (T, H, W, 3) uint8."""
    frame = cv2.resize(skimage.data.coffee(), (width, height), interpolation=cv2.INTER_AREA)
    return np.repeat(frame[None], num_frames, axis=0)


def rendered(preset: str, seed: int = 0, clip: int = 0, clean: np.ndarray | None = None):
    clean = photo_clip() if clean is None else clean
    params = rainsynth.sample_params(preset, seed=seed, shape=clean.shape[:3], clip=clip)
    return clean, rainsynth.render(clean, params)


def recompose(clean: np.ndarray, layers: dict[str, np.ndarray]) -> np.ndarray:
    """Eqns. (3) and (4) written out in numpy."""
    b = clean.astype(np.float64) / 255.0
    s, u, beta, a, alpha, m = (layers[k].astype(np.float64) for k in LAYERS)
    o = beta * b + (1.0 - beta) * a + u + s  # (3)
    return (1.0 - alpha) * o + alpha * m  # (4)


@pytest.mark.parametrize("preset", ["light", "heavy", "streaks"])
def test_layers_recompose_the_rain_by_eqns_3_and_4(preset):
    clean, clip = rendered(preset, seed=4)
    expected = np.clip(recompose(clean, clip.layers), 0.0, 1.0)
    np.testing.assert_allclose(clip.rain, expected, atol=2e-6)


def test_dry_preset_renders_no_rain():
    clean, clip = rendered("dry", seed=3)
    np.testing.assert_array_equal(np.round(clip.rain * 255.0), clean)
    assert not clip.layers["S"].any() and not clip.layers["U"].any()
    assert not clip.layers["alpha"].any() and (clip.layers["beta"] == 1.0).all()


def test_eq6_with_true_layers_recovers_the_clean_frame_outside_occlusion():
    clean, clip = rendered("heavy", seed=2)
    unclipped = recompose(clean, clip.layers)
    visible = (clip.layers["alpha"][..., 0] == 0) & (unclipped.max(-1) <= 1.0)
    assert visible.mean() > 0.5
    recovered = rainsynth.invert(clip.rain, clip.layers)
    error = np.abs(recovered - clean / 255.0)[visible]
    assert error.max() < 1e-4


def test_eq6_fails_without_the_layers():
    """The inverse is not trivially the rain: a wrong beta gives a wrong clean frame."""
    clean, clip = rendered("heavy", seed=2)
    wrong = dict(clip.layers, beta=np.ones_like(clip.layers["beta"]))
    recovered = rainsynth.invert(clip.rain, wrong)
    assert np.abs(recovered - clean / 255.0).mean() > 0.05


def test_shapes_dtypes_and_ranges():
    clean, clip = rendered("heavy")
    t, h, w = clean.shape[:3]
    assert clip.rain.shape == (t, h, w, 3) and clip.rain.dtype == np.float32
    expected = {"S": (t, h, w, 1), "U": (t, h, w, 1), "beta": (t, h, w, 1),
                "A": (t, 1, 1, 3), "alpha": (t, h, w, 1), "M": (t, 1, 1, 3)}  # fmt: skip
    assert {k: v.shape for k, v in clip.layers.items()} == expected
    for name, layer in clip.layers.items():
        assert layer.dtype == np.float32, name
        assert 0.0 <= layer.min() and layer.max() <= 1.0, name
    assert clip.layers["beta"].min() > 0.0
    assert 0.0 <= clip.rain.min() and clip.rain.max() <= 1.0


def test_uint8_and_float_input_give_the_same_rain():
    clean, clip = rendered("heavy", seed=5)
    again = rainsynth.render(clean.astype(np.float32) / np.float32(255.0), clip.params)
    np.testing.assert_allclose(again.rain, clip.rain, atol=2e-6)


def test_streaks_are_independent_across_frames_and_the_veil_is_continuous():
    clean, clip = rendered("heavy", seed=1, clean=photo_clip(6, 128, 192))
    s = clip.layers["S"][..., 0]
    corr = [np.corrcoef(s[t].ravel(), s[t + 1].ravel())[0, 1] for t in range(len(s) - 1)]
    assert max(abs(c) for c in corr) < 0.1

    u = clip.layers["U"][..., 0]
    vx, vy = veil_velocity(clip.params)
    assert np.hypot(vx, vy) > 0.5
    for t in range(1, len(u)):
        moved = cv2.warpAffine(u[t - 1], np.float32([[1, 0, vx], [0, 1, vy]]), u.shape[:0:-1],
                               flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)  # fmt: skip
        inner = (slice(8, -8), slice(8, -8))
        advected_error = np.abs(moved - u[t])[inner].mean()
        static_error = np.abs(u[t - 1] - u[t])[inner].mean()
        assert advected_error < 0.5 * static_error
        assert advected_error < 0.25 * u[t].std()


def test_transmission_is_identical_across_frames_of_a_static_clip():
    _, clip = rendered("heavy", seed=3)
    beta = clip.layers["beta"]
    assert np.array_equal(beta, np.broadcast_to(beta[:1], beta.shape))
    assert beta.std() > 0.01  # and it does vary over the frame (depth)


def test_transmission_follows_the_moving_camera():
    frames = photo_clip(4, 96, 200)
    panned = np.stack([np.roll(frames[0], 6 * t, axis=1) for t in range(4)])
    _, clip = rendered("heavy", seed=3, clean=panned)
    beta = clip.layers["beta"][..., 0]
    assert not np.array_equal(beta[0], beta[1])
    # away from the wrapped border, beta moves with the picture
    np.testing.assert_allclose(
        np.roll(beta[0], 6, axis=1)[:, 30:-30], beta[1][:, 30:-30], atol=0.02
    )


def dominant_orientation(layer: np.ndarray) -> float:
    """Angle of the dominant line direction from vertical, degrees (+ = right), by structure tensor.

    The layer is Gaussian-smoothed first: finite differences on thin lines are biased towards the
    grid axes by several degrees otherwise.
    """
    gy, gx = np.gradient(cv2.GaussianBlur(layer.astype(np.float64), (0, 0), 2.0))
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    gradient_angle = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # dominant gradient direction, from +x
    # lines run perpendicular to their gradient; x right, y down: angle from vertical = -gradient
    return float(np.degrees(-gradient_angle))


@pytest.mark.parametrize("angle", [-30.0, -12.0, 0.0, 8.0, 25.0])
def test_measured_streak_orientation_matches_the_sampled_angle(angle):
    params = rainsynth.sample_params("heavy", seed=0, shape=(2, 256, 256))
    streaks = params.streaks.__class__(**{**params.streaks.__dict__, "angle": angle, "drift": 0.0})
    params = RainParams(**{**params.__dict__, "streaks": streaks})
    clip = rainsynth.render(photo_clip(2, 256, 256), params)
    for t in range(2):
        assert dominant_orientation(clip.layers["S"][t, ..., 0]) == pytest.approx(angle, abs=3.0)


def test_direction_drifts_with_the_drift_parameter():
    params = rainsynth.sample_params("heavy", seed=0, shape=(9, 256, 256))
    streaks = params.streaks.__class__(**{**params.streaks.__dict__, "angle": -10.0, "drift": 2.0})
    params = RainParams(**{**params.__dict__, "streaks": streaks})
    clip = rainsynth.render(photo_clip(9, 256, 256), params)
    first = dominant_orientation(clip.layers["S"][0, ..., 0])
    last = dominant_orientation(clip.layers["S"][8, ..., 0])
    assert last - first == pytest.approx(16.0, abs=4.0)


def test_heavy_is_heavier_than_light():
    clean = photo_clip(4, 128, 192)
    stats = {}
    for preset in ("light", "heavy"):
        rows = []
        for clip_index in range(6):
            _, clip = rendered(preset, seed=9, clip=clip_index, clean=clean)
            rows.append([(clip.layers["S"] > 0.05).mean(), clip.layers["beta"].mean(),
                         clip.layers["alpha"].mean()])  # fmt: skip
        stats[preset] = np.mean(rows, axis=0)
    coverage, beta, occlusion = stats["heavy"] - stats["light"]
    assert coverage > 0 and beta < 0 and occlusion > 0


def test_streaks_preset_has_only_streaks():
    clean, clip = rendered("streaks", seed=6)
    assert np.all(clip.layers["beta"] == 1.0)
    assert np.all(clip.layers["U"] == 0.0)
    assert np.all(clip.layers["alpha"] == 0.0)
    assert clip.layers["S"].max() > 0.1
    np.testing.assert_allclose(
        clip.rain, np.clip(clean / 255.0 + clip.layers["S"], 0, 1), atol=2e-6
    )


def test_depth_providers():
    clean = photo_clip(3, 64, 96)
    params = rainsynth.sample_params("heavy", seed=0, shape=clean.shape[:3])
    k = params.accumulation.k
    constant = rainsynth.render(clean, params, depth=0.5).layers["beta"]
    np.testing.assert_allclose(constant, np.exp(-k * 0.5), rtol=1e-6)
    ramp = np.linspace(0.0, 1.0, 96, dtype=np.float32)[None, :].repeat(64, 0)
    beta = rainsynth.render(clean, params, depth=ramp).layers["beta"][..., 0]
    np.testing.assert_allclose(beta, np.broadcast_to(np.exp(-k * ramp), beta.shape), rtol=1e-6)
    custom = rainsynth.render(clean, params, depth=ConstantDepth(1.0)).layers["beta"]
    np.testing.assert_allclose(custom, np.exp(-k), rtol=1e-6)
    with pytest.raises(ParamError, match="depth maps have shape"):
        rainsynth.render(clean, params, depth=DepthMaps(np.zeros((5, 5))))
    with pytest.raises(ParamError, match=r"\[0, 1\]"):
        rainsynth.render(clean, params, depth=ramp * 2)
    with pytest.raises(ParamError, match=r"returned shape \(1, 2, 3\); expected"):
        rainsynth.render(clean, params, depth=lambda c, p: np.zeros((1, 2, 3), np.float32))
    with pytest.raises(ParamError, match="finite floats in"):
        rainsynth.render(clean, params, depth=lambda c, p: np.full(c.shape[:3], np.nan))


def test_default_depth_is_far_at_the_top_and_near_at_the_bottom():
    _, clip = rendered("heavy", seed=0, clean=photo_clip(1, 128, 128))
    beta = clip.layers["beta"][0, ..., 0]
    assert beta[:16].mean() < beta[-16:].mean() - 0.1


def test_the_default_depth_of_a_long_clip_is_the_same_frame_by_frame():
    """More frames than one cv2 call takes (accumulation.CHANNELS): the horizon prior runs in
    batches, each frame's depth as if it were alone."""
    clean = photo_clip(CHANNELS + 3, 32, 48)
    params = rainsynth.sample_params("heavy", seed=0, shape=clean.shape[:3])
    depth = HorizonDepth()(clean, params)
    assert depth.shape == clean.shape[:3]
    for t in (0, CHANNELS, CHANNELS + 2):
        np.testing.assert_array_equal(depth[t], HorizonDepth()(clean[t : t + 1], params)[0])


def test_bad_clean_input_raises_clear_errors():
    params = rainsynth.sample_params("light", seed=0, shape=(2, 8, 8))
    with pytest.raises(ParamError, match=r"\(T, H, W, 3\)"):
        rainsynth.render(np.zeros((2, 8, 8)), params)
    with pytest.raises(ParamError, match="sampled for"):
        rainsynth.render(np.zeros((2, 8, 9, 3), np.uint8), params)
    with pytest.raises(ParamError, match=r"\[0, 1\]"):
        rainsynth.render(np.full((2, 8, 8, 3), 2.0, np.float32), params)
    with pytest.raises(ParamError, match="dtype"):
        rainsynth.render(np.zeros((2, 8, 8, 3), np.int32), params)
    with pytest.raises(ParamError, match="rain dtype must be numpy.float32 or numpy.uint8"):
        rainsynth.render(np.zeros((2, 8, 8, 3), np.uint8), params, dtype=np.float64)


def test_output_is_bit_identical_across_runs_processes_and_thread_counts(tmp_path):
    script = textwrap.dedent(
        """
        import hashlib, sys, numpy as np, rainsynth
        clean = (np.arange(3 * 40 * 56 * 3) % 251).astype(np.uint8).reshape(3, 40, 56, 3)
        clip = rainsynth.render(clean, rainsynth.sample_params("heavy", seed=11, shape=(3, 40, 56), clip=4))
        digest = hashlib.sha256(clip.rain.tobytes())
        for name in sorted(clip.layers):
            digest.update(clip.layers[name].tobytes())
        print(digest.hexdigest())
        """
    )
    digests = set()
    for threads in ("1", "2", "1"):
        env = dict(os.environ, NUMBA_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout.strip())
    assert len(digests) == 1


def test_rendering_order_does_not_matter():
    clean = photo_clip(2, 48, 64)
    params = [rainsynth.sample_params("heavy", seed=1, shape=(2, 48, 64), clip=c) for c in range(3)]
    first = [rainsynth.render(clean, p).rain for p in params]
    second = [rainsynth.render(clean, p).rain for p in reversed(params)][::-1]
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], first[1])


def random_params(draw, preset: Preset, shape) -> RainParams:
    """Parameters drawn by hypothesis anywhere inside a preset's ranges."""
    sections = {}
    for name, kind in SECTIONS.items():
        values = {}
        for key, (lo, hi) in preset.ranges[name].items():
            if isinstance(lo, int) and isinstance(hi, int):
                values[key] = draw(st.integers(lo, hi))
            else:
                values[key] = draw(st.floats(float(lo), float(hi)))
        sections[name] = kind(**values)
    return RainParams(preset=preset.name, seed=draw(st.integers(0, 2**31)), clip=0,
                      shape=shape, **sections)  # fmt: skip


@st.composite
def clips(draw):
    shape = draw(
        st.sampled_from([(1, 1, 1), (1, 5, 7), (2, 7, 5), (3, 1, 9), (2, 33, 17), (1, 720, 1280)])
    )
    preset = load_preset(draw(st.sampled_from(["light", "heavy", "streaks"])))
    params = random_params(draw, preset, shape)
    seed = draw(st.integers(0, 255))
    clean = np.random.default_rng(seed).integers(0, 256, shape + (3,), dtype=np.uint8)
    return clean, params


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clips())
def test_any_parameters_inside_the_presets_and_odd_shapes_give_finite_values_in_range(case):
    clean, params = case
    clip = rainsynth.render(clean, params)
    # 8-bit rain rounded as it is composed: to_uint8 of the float32 rain, to the bit
    np.testing.assert_array_equal(
        rainsynth.render(clean, params, dtype=np.uint8).rain, to_uint8(clip.rain)
    )
    assert clip.rain.shape == clean.shape
    assert np.isfinite(clip.rain).all()
    assert 0.0 <= clip.rain.min() and clip.rain.max() <= 1.0
    for name, layer in clip.layers.items():
        assert np.isfinite(layer).all() and 0.0 <= layer.min() and layer.max() <= 1.0, name
        assert np.broadcast_shapes(layer.shape, clean.shape) == clean.shape, name


@settings(max_examples=30, deadline=None)
@given(
    section=st.sampled_from(list(SECTIONS)),
    data=st.data(),
)
def test_out_of_range_parameters_raise(section, data):
    params = rainsynth.sample_params("heavy", seed=0, shape=(1, 4, 4))
    kind = SECTIONS[section]
    field = data.draw(st.sampled_from(list(kind.__dataclass_fields__.values())))
    lo, hi = field.metadata["range"]
    bad = data.draw(st.one_of(st.floats(hi + 1e-3, hi + 1e6), st.floats(lo - 1e6, lo - 1e-3),
                              st.just(float("nan"))))  # fmt: skip
    values = {**getattr(params, section).__dict__, field.name: bad}
    with pytest.raises(ParamError, match=field.name):
        kind(**values)


def test_render_leaves_torch_thread_count_alone():
    """Rendering inside a training loop must not start numba's OpenMP pool (it resets torch's)."""
    pytest.importorskip("torch")
    code = (
        "import numpy as np, torch, rainsynth; torch.set_num_threads(1); "
        "p = rainsynth.sample_params('heavy', seed=0, shape=(2, 16, 16)); "
        "rainsynth.render(np.zeros((2, 16, 16, 3), np.uint8), p); print(torch.get_num_threads())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


def test_set_num_threads_checks_its_argument_and_keeps_results():
    clean, clip = rendered("heavy", seed=8)
    before = rainsynth.get_num_threads()
    try:
        rainsynth.set_num_threads(3)
        assert np.array_equal(rainsynth.render(clean, clip.params).rain, clip.rain)
        with pytest.raises(ValueError, match="thread count"):
            rainsynth.set_num_threads(0)
    finally:
        rainsynth.set_num_threads(before)
