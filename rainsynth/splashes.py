"""Splashes of a physical preset (a term the physical presets add to Eq. 3): drops bursting on the
ground.

Drops land on a ground plane below the horizon of the depth prior (the camera ``height`` m above
it, the horizon row the image of its far end) at the rain's number flux, the integral of
N(D) v(D) dD (Marshall & Palmer sizes, Atlas et al.'s speeds), so the density of splashes follows
the rain rate. A splash lasts ``physics.SPLASH_TIME``; its crown grows as the square root of its
age (Yarin & Weiss 1995) to scatter as much light as a drop ``physics.SPRAY`` times the size of
the one that made it, and it is drawn as a blurred blob (``physics.streak_shape`` with no path),
for the part of the exposure it lasts, lit like the streaks (``rainsynth.photometry``).

Landings are events in time, drawn once per clip over the exposures of its frames, keyed by
(seed, clip): a splash is seen in consecutive frames when frames come faster than it lasts. The
camera's own motion is left out (a splash lasts a few milliseconds).
"""

from __future__ import annotations

import numpy as np

from rainsynth._jit import jit, run_parallel
from rainsynth.params import RainParams
from rainsynth.physics import (
    D_MAX,
    SPLASH_TIME,
    SPRAY,
    VISIBLE,
    Optics,
    check_count,
    number_density,
    sample_diameters,
    streak_shape,
    terminal_velocity,
    visible_diameter,
)
from rainsynth.rng import CLIP_LEVEL, stream
from rainsynth.streaks import splat_streaks

GROUND_SLICES = 16
"""Distance slices of the visible ground, geometric from the bottom row out to FARTHEST_SPLASH.
Each draws only the diameters whose splash can be seen somewhere in it (``visible_diameter``):
16 rather than 8 draws a quarter fewer landings that no frame shows, for the same visible ones."""
FARTHEST_SPLASH = 100.0
"""m: the farthest ground searched for visible splashes."""


def render_splashes(params: RainParams, out: np.ndarray | None = None) -> np.ndarray:
    """Coverage of every pixel by splashes, (T, H, W) float32 in [0, 1].

    out: a (T, H, W) float32 array to overwrite (default: a new array); returned.
    """
    out = np.empty(params.shape, np.float32) if out is None else out
    offsets, columns = splash_streaks(params)
    run_parallel(splat_streaks, params.shape[0], out, offsets, *columns)
    return out


def splash_streaks(params: RainParams) -> tuple[np.ndarray, np.ndarray]:
    """The splashes seen in each frame as ``splat_streaks`` draws them: offsets (T + 1,) int64
    (frame t's are columns offsets[t]:offsets[t + 1]) and the columns, (7, N) float64
    (``_splash_columns``)."""
    num_frames = params.shape[0]
    optics = Optics.of(params.physics.camera, params.shape)
    windows = _windows(num_frames, optics)
    landings, bounds = _landings(params, optics, windows)
    first, last = _sightings(num_frames, optics, windows, bounds)
    scene = params.physics.scene
    return _splash_columns(
        first, last, *landings, optics, scene.horizon * optics.height, scene.height
    )


def ground_distances(params: RainParams, optics: Optics) -> np.ndarray:
    """Edges (GROUND_SLICES + 1,) of the ground slices, m along the optical axis: from the ground
    seen at the bottom row to FARTHEST_SPLASH; empty when the horizon is at or below the bottom."""
    horizon_row = params.physics.scene.horizon * optics.height
    below = optics.height - 0.5 - horizon_row
    if below <= 0.0:
        return np.empty(0)
    nearest = optics.focal * params.physics.scene.height / below
    if nearest >= FARTHEST_SPLASH:
        return np.empty(0)
    return np.geomspace(nearest, FARTHEST_SPLASH, GROUND_SLICES + 1)


def _landings(
    params: RainParams, optics: Optics, windows: list[tuple[float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Drops landing on the visible ground during the ``windows`` (``_windows``).

    A Poisson process on the ground (time, distance, lateral position) with intensity
    N(D) v(D), drawn by thinning (Lewis & Shedler 1979) one with intensity N(D) v(D_MAX): per
    piece of a window (``_pieces``) and ground slice, drops of the diameters whose splash is
    visible there then.
    Returns a float64 (4, N) array: landing time (s), distance along the optical axis (m),
    lateral position (m, + = right) and diameter (mm) of each landing; and the bounds
    (len(windows) + 1,) of each window's landings in it.
    """
    rate = params.physics.rain.rate
    edges = ground_distances(params, optics)
    near, far = edges[:-1], edges[1:]
    start, stop, window, young = _pieces(windows, optics)
    sizes = (SPRAY, SPRAY * np.sqrt(0.5 * min(SPLASH_TIME, optics.exposure) / SPLASH_TIME))
    d_min = np.array([visible_diameter(near, far, optics, splash=size) for size in sizes])
    v_max = float(terminal_velocity(D_MAX))
    # the ground seen between near and far is W z / f wide at distance z: W (far^2 - near^2) / 2f
    area = optics.width * (far * far - near * near) / (2.0 * optics.focal)
    density = np.array([[number_density(rate, d, D_MAX) for d in row] for row in d_min])
    means = (stop - start)[:, None] * (density * v_max * area)[young.astype(np.int64)]
    check_count("splashes", means.sum())
    rng = stream(params.seed, params.clip, CLIP_LEVEL, "splashes")
    counts = rng.poisson(means)  # (piece, slice)
    piece = np.repeat(np.arange(len(start)), counts.sum(axis=1))
    index = np.repeat(np.tile(np.arange(len(near)), len(start)), counts.ravel())
    u = rng.random((4, index.size))
    diameter = sample_diameters(rng, rate, index.size, d_min[young[piece].astype(np.int64), index])
    speed = terminal_velocity(diameter)
    kept, landings = _thinned(
        piece, index, u, diameter, speed, v_max, start, stop, near, far, optics
    )
    return landings, np.searchsorted(window[kept], np.arange(len(windows) + 1))


def _pieces(
    windows: list[tuple[float, float]], optics: Optics
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ``windows`` cut where the last exposure in each opens: start and stop (s), window
    (int64) and whether the splashes are seen young (bool), arrays (P,), in time order.

    A drop landing while the last exposure of its window is open is seen by that exposure only
    (the earlier ones have closed when frames last no longer than a frame period; the next
    window opens SPLASH_TIME after this one closes), at an age of at most
    min(SPLASH_TIME, exposure) / 2 in the middle of the part it lasts (``_splash_columns``):
    young, its splash at most sqrt(min(SPLASH_TIME, exposure) / (2 SPLASH_TIME)) of its full
    size (square-root growth, Yarin & Weiss 1995). Landings earlier in a window may be seen
    full grown."""
    pieces = []
    for w, (start, stop) in enumerate(windows):
        last_open = stop - optics.exposure
        if optics.exposure <= 1.0 / optics.fps:
            pieces += [(start, last_open, w, False), (last_open, stop, w, True)]
        else:
            pieces.append((start, stop, w, False))
    start, stop, window, young = zip(*pieces, strict=True)
    return np.array(start), np.array(stop), np.array(window, np.int64), np.array(young)


@jit
def _thinned(
    window, index, u, diameter, speed, v_max, start, stop, near, far, optics
):  # pragma: no cover
    """The candidate landings (N,) of ``_landings`` that thinning keeps (those with
    u3 v(D_MAX) < v(D)): in piece ``window`` (times ``start``, ``stop`` s), ground slice
    ``index`` (``near``, ``far`` m), uniforms ``u`` (4, N), diameter (mm) and speed (m/s).
    Returns the kept ones' pieces (N',) int64 and (4, N') float64 landing time (s), distance
    (m, density ~ z between near and far), lateral position (m, + = right: uniform across the
    ground the ``optics`` see at that distance) and diameter."""
    kept = np.empty(window.size, np.int64)
    out = np.empty((4, window.size))
    count = 0
    for i in range(window.size):  # branch-free: a random third is dropped
        w, z0, z1 = window[i], near[index[i]], far[index[i]]
        distance = np.sqrt(z0 * z0 + u[1, i] * (z1 * z1 - z0 * z0))
        kept[count] = w
        out[0, count] = start[w] + (stop[w] - start[w]) * u[0, i]
        out[1, count] = distance
        out[2, count] = (u[2, i] - 0.5) * optics.width * distance / optics.focal
        out[3, count] = diameter[i]
        count += u[3, i] * v_max < speed[i]
    return kept[:count], out[:, :count]


def _windows(num_frames: int, optics: Optics) -> list[tuple[float, float]]:
    """The times (s) when a splash can be seen in some exposure, as disjoint intervals: the
    union over frames t of [t / fps - SPLASH_TIME, t / fps + exposure]."""
    windows: list[tuple[float, float]] = []
    for t in range(num_frames):
        start, stop = t / optics.fps - SPLASH_TIME, t / optics.fps + optics.exposure
        if windows and start <= windows[-1][1]:
            windows[-1] = (windows[-1][0], stop)
        else:
            windows.append((start, stop))
    return windows


def _sightings(
    num_frames: int, optics: Optics, windows: list[tuple[float, float]], bounds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Which landings each frame may see: those of the window its exposure opens in
    (``_landings``' bounds). Returns the first and the last + 1 of each frame's, int64 (T,)."""
    window = [
        next(i for i, (a, b) in enumerate(windows) if a <= t / optics.fps <= b)
        for t in range(num_frames)
    ]
    return bounds[window], bounds[np.add(window, 1)]


@jit
def _splash_columns(
    first, last, birth, distance, lateral, diameter, optics, horizon_row, camera_height
):  # pragma: no cover
    """The splashes seen in each frame t, of the landings first[t]:last[t] (float64 (N,) landing
    time s, distance m, lateral position m and diameter mm): a splash alive for a part ``o`` of
    the exposure counts o / exposure of its peak, at the size of its age in the middle of that
    part; those of peak VISIBLE or more as ``splat_streaks`` columns (cx, cy, dx, dy,
    half_length, radius, peak), float64 (7, N'), with the offsets (T + 1,) int64 of each frame's.
    ``horizon_row``: px; ``camera_height``: m above the ground."""
    num_frames = first.size
    columns = np.empty((7, max((last - first).sum(), 0)))
    offsets = np.zeros(num_frames + 1, np.int64)
    count = 0
    for t in range(num_frames):
        opens = t / optics.fps
        closes = opens + optics.exposure
        for i in range(first[t], last[t]):
            start = max(birth[i], opens)
            stop = min(birth[i] + SPLASH_TIME, closes)
            if not stop > start:
                continue
            age = 0.5 * (start + stop) - birth[i]
            grown = SPRAY * diameter[i] * np.sqrt(age / SPLASH_TIME)
            half_length, radius, peak = streak_shape(grown, distance[i], 0.0, optics)
            peak = peak * (stop - start) / optics.exposure
            if peak >= VISIBLE:
                scale = optics.focal / distance[i]
                columns[0, count] = 0.5 * (optics.width - 1) + lateral[i] * scale
                columns[1, count] = horizon_row - 0.5 + camera_height * scale
                columns[2, count], columns[3, count] = 1.0, 0.0
                columns[4, count], columns[5, count], columns[6, count] = half_length, radius, peak
                count += 1
        offsets[t + 1] = count
    return offsets, columns[:, :count]
