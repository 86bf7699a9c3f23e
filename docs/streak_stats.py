"""Streak statistics of real rain and of the physical presets, measured alike; the README's figure.

    python docs/streak_stats.py [--real DIR] [--clean DIR] [--clips 6] [--no-figure]

Real rain: the frames of NTURain's "ra1" (shared/data/nturain_real_ra1, 640x480, a moving camera).
Synthetic rain: each physical preset (drizzle, moderate, downpour, storm) rendered over rain-free
real frames of the same size (DAVIS-2016 from shared/data/clean_video_real, cropped to 640x480)
held still for five frames, so that the detector sees the rain and nothing else; ``--clips``
clips per preset.

Both go through one detector: each frame minus the median of its four neighbours (t-2 .. t+2),
warped onto it by DIS optical flow, so what is left is what changes from frame to frame; grey
levels above THRESHOLD in connected blobs of at least MIN_AREA px that are at least twice as long
as wide are streaks. Per streak: orientation (degrees from vertical, from the blob's second
moments), length and width (sqrt(12 var) along and across), contrast (its brightest residual,
grey levels). Printed per source: streaks per frame, orientation spread (1.4826 x the median
absolute deviation about the frame's median, the median over frames), median length, width and
contrast; and the closest preset's relative
differences from the real frames on orientation spread, median length and median contrast.

The figure (docs/physical.png), 320x240 crops at full resolution: one scene (DAVIS "tennis": a
dark wall, a fence) under the four presets, then a real rainy frame beside the closest preset.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

import rainsynth
from rainsynth.fileio import draw_label, write_png
from rainsynth.presets import PHYSICAL_PRESETS
from rainsynth.preview import LABEL_SCALE

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data"
SCENES = ("car-roundabout", "bus", "lucia")
"""DAVIS-2016 sequences the synthetic rain is rendered over (outdoor, some sky, some dark)."""
FIGURE_SCENE, FIGURE_CROP = "tennis", (slice(120, 360), slice(0, 320))
REAL_CROP = (slice(120, 360), slice(100, 420))
SIZE = (480, 640)
THRESHOLD = 8.0
MIN_AREA = 4
TARGETS = ("spread", "length", "contrast")


def read_frames(paths: list[Path], size: tuple[int, int] = SIZE) -> np.ndarray:
    """RGB uint8 frames (T, H, W, 3), centre-cropped to ``size``'s aspect ratio and resized."""
    frames = []
    for path in paths:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        h, w = image.shape[:2]
        crop_w = min(w, round(h * size[1] / size[0]))
        x0 = (w - crop_w) // 2
        image = cv2.resize(image[:, x0 : x0 + crop_w], size[::-1], interpolation=cv2.INTER_AREA)
        frames.append(image)
    return np.stack(frames)


def residual(frames: np.ndarray, t: int) -> np.ndarray:
    """Grey frame t minus the median of frames t-2, t-1, t+1, t+2 warped onto it, (H, W) float32."""
    grey = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames]
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    h, w = grey[t].shape
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    warped = []
    for s in (t - 2, t - 1, t + 1, t + 2):
        f = flow.calc(grey[t], grey[s], None)
        warped.append(cv2.remap(grey[s].astype(np.float32), gx + f[..., 0], gy + f[..., 1],
                                cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE))  # fmt: skip
    return grey[t].astype(np.float32) - np.median(np.stack(warped), axis=0)


def streaks(res: np.ndarray) -> np.ndarray:
    """(N, 4) orientation (deg), length, width (px) and contrast (grey levels) of each streak."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (res > THRESHOLD).astype(np.uint8), connectivity=8
    )
    rows = []
    for i in range(1, count):
        if stats[i, cv2.CC_STAT_AREA] < MIN_AREA:
            continue
        ys, xs = np.nonzero(labels == i)
        dx, dy = xs - xs.mean(), ys - ys.mean()
        cxx, cyy, cxy = (dx * dx).mean(), (dy * dy).mean(), (dx * dy).mean()
        small, large = np.linalg.eigvalsh([[cxx, cxy], [cxy, cyy]])
        length, width = np.sqrt(12 * large), np.sqrt(12 * max(small, 1 / 12))
        if length >= 2 * width:
            angle = 0.5 * np.degrees(np.arctan2(2 * cxy, cyy - cxx))
            rows.append((angle, length, width, res[ys, xs].max()))
    return np.array(rows).reshape(-1, 4)


def spread(angle: np.ndarray) -> float:
    """Robust standard deviation of angles (degrees): 1.4826 x their median absolute deviation."""
    return float(1.4826 * np.median(np.abs(angle - np.median(angle))))


def summary(found: list[np.ndarray]) -> dict[str, float]:
    """Statistics of the streaks of several frames (one array per frame); the orientation
    spread is each frame's own (about its own median: one wind), the median over frames."""
    rows = np.concatenate(found)
    return {
        "per frame": len(rows) / len(found),
        "spread": float(np.median([spread(f[:, 0]) for f in found if len(f)])),
        "length": np.median(rows[:, 1]),
        "width": np.median(rows[:, 2]),
        "contrast": np.median(rows[:, 3]),
    }


def real_statistics(folder: Path) -> tuple[dict[str, float], np.ndarray]:
    """Statistics of the real frames (every 4th frame with two neighbours each side) and one
    real frame for the figure."""
    frames = read_frames(sorted(folder.glob("*.jpg")))
    found = [streaks(residual(frames, t)) for t in range(2, len(frames) - 2, 4)]
    return summary(found), frames[len(frames) // 2]


def clean_clips(folder: Path, count: int) -> list[np.ndarray]:
    """``count`` still 5-frame rain-free clips (5, H, W, 3) uint8: frames of the SCENES in turn."""
    clips = []
    for i in range(count):
        paths = sorted((folder / "davis2016" / SCENES[i % len(SCENES)]).glob("*.jpg"))
        frame = read_frames([paths[5 * (i // len(SCENES))]])
        clips.append(np.repeat(frame, 5, axis=0))
    return clips


def preset_statistics(preset: str, clips: list[np.ndarray]) -> dict[str, float]:
    """Statistics of the middle frame of each clip under ``preset`` (clip i, seed 0)."""
    found = []
    for i, clean in enumerate(clips):
        params = rainsynth.sample_params(preset, seed=0, clip=i, shape=clean.shape[:3])
        rain = np.rint(rainsynth.render(clean, params).rain * 255).astype(np.uint8)
        found.append(streaks(residual(rain, 2)))
    return summary(found)


def figure(clean: np.ndarray, real: np.ndarray, closest: str, out: Path) -> None:
    """Row 1: the scene under each physical preset; row 2: the real frame and the closest
    preset; 320x240 crops at full resolution (thin streaks vanish when an image is shrunk)."""
    panels = {}
    for preset in PHYSICAL_PRESETS:
        params = rainsynth.sample_params(preset, seed=0, shape=clean.shape[:3])
        rain = rainsynth.render(clean, params).rain[2][FIGURE_CROP]
        panels[preset] = np.rint(rain * 255).astype(np.uint8)
    width = panels[closest].shape[1]
    row = np.concatenate([panels[p] for p in PHYSICAL_PRESETS], axis=1)
    pair = np.concatenate([real[REAL_CROP], panels[closest]], axis=1)
    for i, preset in enumerate(PHYSICAL_PRESETS):
        draw_label(row, preset, (i * width + 6, 18), LABEL_SCALE)
    draw_label(pair, "real rain (NTURain ra1)", (6, 18), LABEL_SCALE)
    draw_label(pair, f"rainsynth {closest}", (width + 6, 18), LABEL_SCALE)
    pad = np.full((pair.shape[0], row.shape[1] - pair.shape[1], 3), 255, np.uint8)
    write_png(out, np.concatenate([row, np.concatenate([pair, pad], axis=1)], axis=0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", type=Path, default=DATA / "nturain_real_ra1")
    parser.add_argument("--clean", type=Path, default=DATA / "clean_video_real")
    parser.add_argument("--clips", type=int, default=6, help="clips per preset")
    parser.add_argument("--no-figure", action="store_true")
    args = parser.parse_args()

    real, real_frame = real_statistics(args.real)
    clips = clean_clips(args.clean, args.clips)
    rows = {"real (ra1)": real}
    rows.update({preset: preset_statistics(preset, clips) for preset in PHYSICAL_PRESETS})
    keys = list(real)
    print(f"{'':12s}" + "".join(f"{k:>12s}" for k in keys))
    for name, stats in rows.items():
        print(f"{name:12s}" + "".join(f"{stats[k]:12.2f}" for k in keys))

    def distance(preset: str) -> float:
        return max(abs(rows[preset][k] / real[k] - 1.0) for k in TARGETS)

    closest = min(PHYSICAL_PRESETS, key=distance)
    print(f"closest preset: {closest}; relative difference from the real frames: "
          + ", ".join(f"{k} {rows[closest][k] / real[k] - 1:+.0%}" for k in TARGETS))  # fmt: skip
    if not args.no_figure:
        paths = sorted((args.clean / "davis2016" / FIGURE_SCENE).glob("*.jpg"))
        scene = np.repeat(read_frames(paths[:1]), 5, axis=0)
        figure(scene, real_frame, closest, HERE / "physical.png")


if __name__ == "__main__":
    main()
