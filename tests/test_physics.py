"""The physics of the physical presets: drop sizes, speeds and numbers, the camera's streaks,
persistence at high frame rates, splashes, drops on the lens, lit streaks, parameters."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rainsynth
from rainsynth import physics
from rainsynth.composite import PHYSICAL_LAYERS
from rainsynth.drops import Drops, draw_drops, render_drops, streak_columns
from rainsynth.errors import ParamError
from rainsynth.params import PHYSICAL_SECTIONS
from rainsynth.physics import Optics, VisibleRain
from rainsynth.presets import PHYSICAL_PRESETS, Preset, load_preset
from rainsynth.rng import stream
from rainsynth.streaks import splat_streaks

SHAPE = (3, 96, 160)


def physical_params(
    preset: str = "downpour", *, seed: int = 0, shape=SHAPE, clip: int = 0, **fixed: float
) -> rainsynth.RainParams:
    """sample_params of a physical preset with some values fixed: section__key=value."""
    ranges = {name: dict(values) for name, values in load_preset(preset).ranges.items()}
    for name, value in fixed.items():
        section, key = name.split("__")
        ranges[section][key] = (value, value)
    return rainsynth.sample_params(Preset(preset, "", ranges), seed=seed, shape=shape, clip=clip)


def grey_clip(shape=SHAPE, level: int = 60) -> np.ndarray:
    """A uniform dark-grey clip (T, H, W, 3) uint8 under a bright sky (the top rows)."""
    clip = np.full(shape + (3,), level, np.uint8)
    clip[:, : shape[1] // 8] = 230
    return clip


# --- drop sizes, speeds and numbers (Marshall & Palmer 1948, Atlas et al. 1973) ---------------


@pytest.mark.parametrize("rate", [1.0, 10.0, 50.0])
def test_mean_drop_size_follows_the_distributions_moments(rate):
    rng = np.random.default_rng(0)
    d = physics.sample_diameters(rng, rate, 400_000, 0.0, math.inf)
    lam = physics.slope(rate)
    assert d.mean() == pytest.approx(physics.diameter_moment(rate, 1), rel=0.01)
    assert d.mean() == pytest.approx(1.0 / lam, rel=0.01)
    assert (d * d).mean() == pytest.approx(physics.diameter_moment(rate, 2), rel=0.02)
    # above a threshold the exponential is memoryless: mean = threshold + 1 / Lambda
    above = physics.sample_diameters(rng, rate, 400_000, 1.5, math.inf)
    assert above.min() >= 1.5 and above.mean() == pytest.approx(1.5 + 1.0 / lam, rel=0.01)


def test_number_density_and_extinction_are_the_distributions_integrals():
    diameters = np.linspace(0.0, 20.0, 200_001)
    for rate in (0.5, 5.0, 100.0):
        n = physics.MP_N0 * np.exp(-physics.slope(rate) * diameters)
        assert physics.number_density(rate) == pytest.approx(np.trapezoid(n, diameters), rel=1e-6)
        above = diameters >= 2.0
        assert physics.number_density(rate, 2.0) == pytest.approx(
            np.trapezoid(n[above], diameters[above]), rel=1e-5
        )
        area = 2.0 * np.pi * diameters**2 / 4.0 * 1e-6  # Q = 2, mm^2 -> m^2
        assert physics.extinction(rate) == pytest.approx(np.trapezoid(area * n, diameters), 1e-6)
        speed = physics.terminal_velocity(diameters)
        assert physics.number_flux(rate, 1.0) == pytest.approx(
            np.trapezoid((n * speed)[diameters >= 1.0], diameters[diameters >= 1.0]), rel=1e-4
        )
    # heavier rain: fewer small drops per mm of size, but more drops in all and a thicker veil
    assert physics.number_density(50.0) > physics.number_density(1.0)
    assert physics.extinction(50.0) / physics.extinction(1.0) == pytest.approx(50**0.63, rel=1e-9)


def test_terminal_velocity_matches_gunn_and_kinzer():
    """Atlas et al.'s fit against Gunn & Kinzer's (1949) measured speeds, m/s."""
    measured = {0.5: 2.06, 1.0: 4.03, 2.0: 6.49, 3.0: 8.06, 4.0: 8.83, 5.0: 9.09}
    for diameter, speed in measured.items():
        assert physics.terminal_velocity(diameter) == pytest.approx(speed, rel=0.04)
    assert np.all(np.diff(physics.terminal_velocity(np.linspace(0.1, 6, 50))) > 0)


@pytest.mark.parametrize("rates", [(2.0, 20.0), (10.0, 100.0)])
def test_drop_count_scales_with_the_rain_rate_as_the_distribution_says(rates):
    counts = []
    for rate in rates:
        params = physical_params("moderate", rain__rate=rate, camera__exposure=0.001,
                                 shape=(1, 128, 192))  # fmt: skip
        visible = VisibleRain.of(params.physics, params.shape)
        drawn = [draw_drops(stream(s, 0, 0, "drops"), params, visible).x.size for s in range(40)]
        expected = visible.slices.expected.sum()  # Poisson: the mean of 40 draws within 4 sigma
        assert abs(np.mean(drawn) - expected) < 4.0 * math.sqrt(expected / 40)
        counts.append(visible.slices)
    # the camera, not the rain, sets the smallest visible drop of each slice ...
    low, high = counts
    np.testing.assert_array_equal(low.d_min, high.d_min)
    # ... so the count ratio is the Marshall-Palmer one, slice by slice
    for i in np.flatnonzero(low.expected > 0):
        d_min = low.d_min[i]
        ratio = physics.number_density(rates[1], d_min, physics.D_MAX) / physics.number_density(
            rates[0], d_min, physics.D_MAX
        )
        assert high.expected[i] / low.expected[i] == pytest.approx(ratio, rel=1e-9)


# --- the camera: streak length, width and brightness ------------------------------------------


def one_drop(z: float, *, diameter: float = 2.5) -> Drops:
    """A single drop straight ahead at depth z, falling in still air."""
    values = {name: np.zeros(1) for name in Drops.__dataclass_fields__}
    values.update(z=np.array([z]), diameter=np.array([diameter]), near=np.array([0.01]),
                  far=np.array([1e3]), half_width=np.array([1e3]), half_height=np.array([1e3]),
                  vy=np.array([float(physics.terminal_velocity(diameter))]))  # fmt: skip
    return Drops(**values)


def drawn(params, drop: Drops) -> np.ndarray:
    """Coverage (H, W) of one drop in frame 0."""
    optics = Optics.of(params.physics.camera, params.shape)
    columns = streak_columns(drop, params, optics, 0, moved=False)
    out = np.zeros((1,) + params.shape[1:], np.float32)
    splat_streaks(0, 1, out, np.array([0, 1]), *columns)
    return out[0]


def extent(coverage: np.ndarray) -> tuple[float, float, float]:
    """(length along y, width along x, total) of a vertical streak: sqrt(12 var) of its profile
    along, 2 sqrt(var) across (px), and its integral (px^2)."""
    total = coverage.sum()
    ys, xs = np.indices(coverage.shape)
    my, mx = (coverage * ys).sum() / total, (coverage * xs).sum() / total
    var_y = (coverage * (ys - my) ** 2).sum() / total
    var_x = (coverage * (xs - mx) ** 2).sum() / total
    return math.sqrt(12 * var_y), 2 * math.sqrt(var_x), float(total)


def test_streak_length_is_proportional_to_exposure_and_inverse_to_distance():
    shape = (1, 400, 200)
    camera = {"camera__focal": 50.0, "camera__focus": 3.0, "camera__f_number": 16.0}
    lengths = {}
    for exposure in (0.004, 0.008):
        for z in (2.0, 4.0):
            params = physical_params(camera__exposure=exposure, shape=shape, **camera)
            lengths[exposure, z] = extent(drawn(params, one_drop(z)))[0]
    assert lengths[0.008, 2.0] / lengths[0.004, 2.0] == pytest.approx(2.0, rel=0.05)
    assert lengths[0.004, 2.0] / lengths[0.004, 4.0] == pytest.approx(2.0, rel=0.05)
    params = physical_params(camera__exposure=0.004, shape=shape, **camera)
    optics = Optics.of(params.physics.camera, shape)
    speed = float(physics.terminal_velocity(2.5))
    expected = physics.streak_length(speed, 0.004, optics.focal, 2.0)  # v T f / z
    assert lengths[0.004, 2.0] == pytest.approx(expected, rel=0.15)  # plus the drop and blur


def test_defocused_streaks_are_wider_and_dimmer_but_carry_the_same_light():
    params = physical_params(camera__focal=50.0, camera__focus=3.0, camera__f_number=1.8,
                             camera__exposure=0.002, shape=(1, 200, 200))  # fmt: skip
    optics = Optics.of(params.physics.camera, params.shape)
    assert optics.blur(3.0) == 0.0
    assert optics.blur(0.6) > 4.0 * optics.blur(30.0) > 0.0
    in_focus, defocused = one_drop(3.0), one_drop(0.6, diameter=0.5)
    _, width_focused, total_focused = extent(drawn(params, in_focus))
    _, width_defocused, total_defocused = extent(drawn(params, defocused))
    assert width_defocused > 3.0 * width_focused
    # the streak's integral is the drop's image area, pi d^2 / 4, however blurred
    for drop, total in ((in_focus, total_focused), (defocused, total_defocused)):
        d = drop.diameter[0] / 1000.0 * optics.focal / drop.z[0]
        assert total == pytest.approx(math.pi * d * d / 4.0, rel=0.1)


def test_thin_lens_circle_of_confusion():
    """At infinity the blur disc tends to f^2 / (N (z_f - f)) (the hyperfocal formula)."""
    focal, f_number, focus = 50.0, 2.0, 5.0
    far = physics.circle_of_confusion(1e9, focus=focus, focal_mm=focal, f_number=f_number)
    assert far == pytest.approx(focal**2 / (f_number * (focus * 1000 - focal)), rel=1e-6)
    assert physics.circle_of_confusion(focus, focus=focus, focal_mm=focal, f_number=f_number) == 0


# --- persistence ---------------------------------------------------------------------------


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_drops_persist_at_high_frame_rates_and_are_iid_at_video_rates():
    video = physical_params("moderate", shape=(4, 128, 192))
    fast = physical_params("moderate", camera__fps=1000.0, camera__exposure=0.0005,
                           shape=(4, 128, 192))  # fmt: skip
    assert not VisibleRain.of(video.physics, video.shape).persistent(128, 192)
    assert VisibleRain.of(fast.physics, fast.shape).persistent(128, 192)
    slow_cov, fast_cov = render_drops(video), render_drops(fast)
    assert np.mean([abs(correlation(slow_cov[t], slow_cov[t + 1])) for t in range(3)]) < 0.05
    # 1 ms apart, a drop has moved about a px: the frames overlap
    assert min(correlation(fast_cov[t], fast_cov[t + 1]) for t in range(3)) > 0.15


def test_persistent_drops_move_on_at_their_projected_velocity():
    params = physical_params("moderate", camera__fps=1000.0, camera__exposure=0.0005,
                             rain__turbulence=0.0, rain__gust=0.0, rain__wind=0.0,
                             shape=(2, 128, 192))  # fmt: skip
    optics = Optics.of(params.physics.camera, params.shape)
    visible = VisibleRain.of(params.physics, params.shape)
    drops = draw_drops(stream(0, 0, 0, "drops"), params, visible)
    first, second = (streak_columns(drops, params, optics, t) for t in (0, 1))
    step = drops.vy / 1000.0 * optics.focal / drops.z  # px per frame, straight down
    stayed = np.abs(second[1] - first[1] - step) < 1e-6  # not wrapped round their box
    assert stayed.mean() > 0.9
    np.testing.assert_allclose(second[0][stayed], first[0][stayed], atol=1e-9)


# --- splashes and drops on the lens -----------------------------------------------------------


def test_splashes_lie_below_the_horizon_grow_with_the_rate_and_persist_when_fast():
    means = []
    for rate in (10.0, 50.0):
        params = physical_params(rain__rate=rate, scene__horizon=0.4, shape=(3, 128, 192))
        splash = rainsynth.render(grey_clip(params.shape), params).layers["splash"]
        assert splash.shape == (3, 128, 192, 3) and splash.dtype == np.float32
        assert 0.0 <= splash.min() and splash.max() <= 1.0
        assert not splash[:, : int(0.4 * 128)].any()
        means.append(splash.mean())
    assert means[1] > 2.0 * means[0] > 0.0
    video = physical_params(scene__horizon=0.3, shape=(4, 128, 192))
    fast = physical_params(scene__horizon=0.3, camera__fps=2000.0, camera__exposure=0.0004,
                           shape=(4, 128, 192))  # fmt: skip
    slow_layer, fast_layer = (rainsynth.render(grey_clip(p.shape), p).layers["splash"][..., 0]
                              for p in (video, fast))  # fmt: skip
    assert max(abs(correlation(slow_layer[t], slow_layer[t + 1])) for t in range(3)) < 0.1
    assert min(correlation(fast_layer[t], fast_layer[t + 1]) for t in range(3)) > 0.5


def test_no_ground_no_splashes():
    params = physical_params(scene__horizon=1.0)
    assert not rainsynth.render(grey_clip(), params).layers["splash"].any()


def test_drops_on_the_lens_stay_and_slide_and_show_the_scene_upside_down():
    params = physical_params("storm", camera__wetting=0.3, shape=(6, 128, 192))
    rows = np.arange(128, dtype=np.uint8)[None, :, None, None]
    clean = np.broadcast_to(2 * rows, params.shape + (3,))  # brighter downwards
    clip = rainsynth.render(clean, params)
    alpha, lens = clip.layers["lens_alpha"][..., 0], clip.layers["lens"]
    assert alpha.shape == (6, 128, 192) and lens.shape == (6, 128, 192, 3)
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0 and 0.0 <= lens.min() and lens.max() <= 1.0
    assert alpha.mean() > 0.02
    assert not lens[alpha == 0.0].any()
    for t in range(5):  # drops stay where they landed, or slide a little: a continuous matte
        assert np.abs(alpha[t + 1] - alpha[t]).mean() < 0.3 * alpha[t].mean()
    assert (alpha[5][alpha[0] > 0.3] > 0.1).mean() > 0.8  # and stay on
    # upside down: inside a drop, the view gets darker downwards
    inside = (alpha[:, 1:] > 0.5) & (alpha[:, :-1] > 0.5)
    assert inside.sum() > 100
    assert (lens[:, 1:, :, 0] - lens[:, :-1, :, 0])[inside].mean() < 0.0
    dry = physical_params("storm", camera__wetting=0.0, camera__motion_z=0.0)
    layers = rainsynth.render(grey_clip(), dry).layers
    assert not layers["lens_alpha"].any() and not layers["lens"].any()


def test_running_into_the_rain_wets_the_lens():
    still = physical_params("moderate", camera__wetting=0.0)
    driving = physical_params("moderate", camera__wetting=0.0, camera__motion_z=15.0)
    assert not rainsynth.render(grey_clip(), still).layers["lens_alpha"].any()
    assert rainsynth.render(grey_clip(), driving).layers["lens_alpha"].any()


# --- light ----------------------------------------------------------------------------------


def test_streaks_take_the_colour_and_brightness_of_the_light_around_them():
    """At night, streaks near an orange lamp are bright and orange; far from it, dim."""
    shape = (2, 128, 256)
    night = np.full(shape + (3,), 8, np.uint8)
    night[:, 20:40, 20:40] = (255, 160, 40)  # a sodium lamp, top left
    params = physical_params("downpour", rain__rate=50.0, camera__exposure=0.002,
                             camera__wetting=0.0, shape=shape)  # fmt: skip
    clip = rainsynth.render(night, params)
    streaks = clip.layers["S"]
    coverage = render_drops(params)
    near, far = np.zeros(shape, bool), np.zeros(shape, bool)
    near[:, 45:90, :80], far[:, 45:90, 176:] = True, True
    near &= coverage > 0.05
    far &= coverage > 0.05
    brightness_near = streaks[near].sum(-1).mean() / coverage[near].mean()
    brightness_far = streaks[far].sum(-1).mean() / coverage[far].mean()
    assert brightness_near > 2.0 * brightness_far
    red, _, blue = streaks[near].mean(axis=0)
    assert red > 2.0 * blue
    assert clip.layers["A"][0, 0, 0, 0] < 0.5  # the veil's light is the night's, not daylight


def test_layers_recompose_the_rain():
    params = physical_params("storm", camera__wetting=0.2, scene__horizon=0.3)
    clean = grey_clip(level=90)
    clip = rainsynth.render(clean, params)
    layers = {k: v.astype(np.float64) for k, v in clip.layers.items()}
    b = clean / 255.0
    o = layers["beta"] * b + (1 - layers["beta"]) * layers["A"] + layers["U"] + layers["S"]
    o = (1 - layers["alpha"]) * (o + layers["splash"]) + layers["alpha"] * layers["M"]
    rain = (1 - layers["lens_alpha"]) * np.clip(o, 0, 1) + layers["lens_alpha"] * layers["lens"]
    assert layers["lens_alpha"].any() and layers["splash"].any() and layers["S"].any()
    np.testing.assert_allclose(clip.rain, rain, atol=3e-6)
    assert set(PHYSICAL_LAYERS) <= set(clip.layers) and clip.layers["S"].shape[-1] == 3


# --- parameters -----------------------------------------------------------------------------


@pytest.mark.parametrize("preset", PHYSICAL_PRESETS)
def test_physical_params_round_trip_and_record_the_pixel_values_they_imply(preset):
    params = rainsynth.sample_params(preset, seed=5, shape=(7, 256, 448), clip=3)
    text = json.dumps(params.to_dict())
    again = rainsynth.RainParams.from_dict(json.loads(text))
    assert again == params and json.dumps(again.to_dict()) == text
    assert set(params.to_dict()["physics"]) == set(PHYSICAL_SECTIONS)
    camera, rain = params.physics.camera, params.physics.rain
    assert params.accumulation.k == pytest.approx(
        min(physics.extinction(rain.rate) * params.physics.scene.distance, 4.0)
    )
    speed = physics.terminal_velocity(1.0)
    assert abs(params.streaks.angle) <= math.degrees(math.atan(abs(rain.wind) / speed)) + 1e-9
    assert params.flow.opacity == 0.0 and params.occlusion.density == 0.0
    assert camera.exposure <= 1.0 / camera.fps


def test_pixel_params_json_has_no_physics_and_old_files_read_back():
    params = rainsynth.sample_params("heavy", seed=0, shape=SHAPE)
    d = params.to_dict()
    assert "physics" not in d and params.physics is None
    assert rainsynth.RainParams.from_dict(d) == params


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("camera__exposure", 0.05, r"exposure = 0.05 s is longer than a frame at fps = 30.0"),
        ("camera__focus", 0.15, r"focus = 0.15 m must be more than twice the focal length"),
        ("rain__rate", 0.0, r"rate = 0.0 is not allowed: it must be a number in \[0.01, 300.0\]"),
    ],
)
def test_bad_physical_values_name_the_value_and_what_is_allowed(key, value, message):
    section, name = key.split("__")
    d = rainsynth.sample_params("moderate", seed=0, shape=SHAPE).to_dict()
    d["physics"]["camera"]["focal"] = 100.0
    d["physics"][section][name] = value
    with pytest.raises(ParamError, match=message):
        rainsynth.RainParams.from_dict(d)


def test_a_preset_file_is_pixel_or_physical_not_both(tmp_path):
    from importlib import resources

    text = resources.files("rainsynth").joinpath("presets/moderate.toml").read_text()
    path = tmp_path / "mine.toml"
    path.write_text(text.replace("rate = [2.5, 10.0]", "rate = 20.0"))
    params = rainsynth.sample_params(path, seed=0, shape=SHAPE)
    assert params.preset == "mine" and params.physics.rain.rate == 20.0
    path.write_text(text + "\n[flow]\nopacity = 0.1\n")
    with pytest.raises(ParamError, match=r"unknown section\(s\) \['flow'\].*not both"):
        rainsynth.sample_params(path, seed=0, shape=SHAPE)


def test_absurd_cameras_are_refused_before_they_eat_the_machine():
    params = physical_params("storm", rain__rate=300.0, camera__exposure=1e-5,
                             camera__f_number=64.0, shape=(1, 720, 1280))  # fmt: skip
    with pytest.raises(ParamError, match="at most 2000000 are allowed"):
        rainsynth.render(np.zeros((1, 720, 1280, 3), np.uint8), params)


@st.composite
def physical_clips(draw):
    shape = draw(st.sampled_from([(1, 1, 1), (1, 5, 7), (2, 7, 5), (3, 1, 9), (2, 33, 17),
                                  (2, 64, 96)]))  # fmt: skip
    preset = load_preset(draw(st.sampled_from(PHYSICAL_PRESETS)))
    ranges = {section: dict(values) for section, values in preset.ranges.items()}
    for values in ranges.values():
        for key, (lo, hi) in values.items():
            value = draw(st.floats(float(lo), float(hi)))
            values[key] = (value, value)
    fps = ranges["camera"]["fps"][0]
    exposure = min(ranges["camera"]["exposure"][0], 1.0 / fps)
    ranges["camera"]["exposure"] = (exposure, exposure)
    seed = draw(st.integers(0, 2**31))
    params = rainsynth.sample_params(Preset(preset.name, "", ranges), seed=seed, shape=shape)
    clean = np.random.default_rng(seed).integers(0, 256, shape + (3,), dtype=np.uint8)
    return clean, params


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(physical_clips())
def test_any_physical_parameters_in_the_presets_give_finite_layers_in_range(case):
    clean, params = case
    clip = rainsynth.render(clean, params)
    assert clip.rain.shape == clean.shape and np.isfinite(clip.rain).all()
    assert 0.0 <= clip.rain.min() and clip.rain.max() <= 1.0
    for name, layer in clip.layers.items():
        assert np.isfinite(layer).all() and 0.0 <= layer.min() and layer.max() <= 1.0, name
        assert np.broadcast_shapes(layer.shape, clean.shape) == clean.shape, name
    assert rainsynth.RainParams.from_dict(params.to_dict()) == params


def test_physical_clips_are_bit_identical_whatever_the_thread_count_and_order():
    params = [physical_params("storm", clip=c, camera__wetting=0.2) for c in range(2)]
    before = rainsynth.get_num_threads()
    try:
        rainsynth.set_num_threads(1)
        one = [rainsynth.render(grey_clip(), p) for p in params]
        rainsynth.set_num_threads(3)
        three = [rainsynth.render(grey_clip(), p) for p in reversed(params)][::-1]
    finally:
        rainsynth.set_num_threads(before)
    for a, b in zip(one, three, strict=True):
        assert np.array_equal(a.rain, b.rain)
        assert all(np.array_equal(a.layers[k], b.layers[k]) for k in a.layers)
    assert not np.array_equal(one[0].rain, one[1].rain)
