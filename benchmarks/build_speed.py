"""Speed of `rainsynth build` against the I/O floor of the same dataset, measured in one run.

    python benchmarks/build_speed.py [--root VIMEO_SEPTUPLET_FOLDER] [--copies 4] [--repeats 3]

Builds the clips of a Vimeo-90K septuplet folder (default: the 16-septuplet sample next to the
checkout), each septuplet listed `--copies` times under new group numbers (symbolic links, so the
build amortises its fixed costs - planning, the dataset card, starting worker processes - over
a few hundred clips as a real build does), under light and heavy rain, and times, in the same
run (medians over the repeats):

- build, 1 worker: ``rainsynth.build.build(..., workers=1)`` end to end (plan, every clip, card,
  manifest) into a fresh folder;
- the I/O floor: reading the same source frames with ``cv2.imread`` and writing the same files with
  the same codec settings (every clean and rain frame as PNG at the same compression level, the
  same layers archive with the same deflate level, the two JSON files, one folder per clip);
- build, 2 workers: the same build on a two-process pool;
- build, 1 worker, without the dataset browser: the same build with the browser's previews and
  page (``rainsynth.browser.write_previews`` and ``write_page``) replaced by nothing.

It prints build / floor (target <= 1.3), the 1 -> 2 worker speed-up (target >= 1.7), the cost of
the browser as build / build without it (target <= 1.05), and, to document the PNG level the
format uses, encode time and size of the built frames at several OpenCV PNG settings.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from rainsynth import browser, dataset
from rainsynth.build import BuildOptions, build

SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "vimeo_septuplet_sample"


def replicated(root: Path, copies: int, scratch: Path) -> Path:
    """A Vimeo-90K layout listing every septuplet of root `copies` times (symlinked folders)."""
    out = scratch / "vimeo"
    for name in ("sep_trainlist.txt", "sep_testlist.txt"):
        entries = (root / name).read_text().split()
        lines = []
        for copy in range(copies):
            for entry in entries:
                group, clip = entry.split("/")
                new = f"{copy * 10000 + int(group):05d}"
                (out / "sequences" / new).mkdir(parents=True, exist_ok=True)
                (out / "sequences" / new / clip).symlink_to(root / "sequences" / entry)
                lines.append(f"{new}/{clip}")
        (out / name).write_text("\n".join(lines) + "\n")
    return out


def timed_build(options: BuildOptions, out: Path, workers: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its workers) of a build into `out`."""
    cpu = _cpu_seconds()
    start = time.perf_counter()
    build(options, out, workers=workers, progress=False, echo=lambda _: None)
    return time.perf_counter() - start, _cpu_seconds() - cpu


@contextlib.contextmanager
def without_browser():
    """Builds in this process write no browser previews and no page while this is open."""
    saved = browser.write_previews, browser.write_page
    browser.write_previews = browser.write_page = lambda *args, **kwargs: None
    try:
        yield
    finally:
        browser.write_previews, browser.write_page = saved


def _cpu_seconds() -> float:
    """User + system time of this process and its finished child processes."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def floor_inputs(built: Path) -> list[dict]:
    """What the floor writes for each clip, loaded from a finished build (not timed)."""
    manifest = json.loads((built / "manifest.json").read_text())
    clips = []
    for record in manifest["clips"]:
        folder = built / record["split"] / record["preset"] / record["name"]
        rain = sorted((folder / "rain").glob("*.png"))
        with np.load(folder / dataset.LAYERS_FILE) as archive:
            layers = {key: archive[key] for key in archive.files}
        clips.append(
            {
                "relative": folder.relative_to(built),
                "files": record["files"],
                "rain": [cv2.imread(str(path)) for path in rain],
                "layers": layers,
                "params": (folder / dataset.PARAMS_FILE).read_text(),
                "clip": (folder / dataset.CLIP_FILE).read_text(),
            }
        )
    return clips


def timed_floor(clips: list[dict], out: Path) -> float:
    """Seconds to read the source frames and write the same files as the build, nothing else."""
    png = [cv2.IMWRITE_PNG_COMPRESSION, dataset.PNG_COMPRESSION]
    start = time.perf_counter()
    for clip in clips:
        folder = out / clip["relative"]
        temp = folder.parent / f".tmp-{folder.name}"
        (temp / "clean").mkdir(parents=True)
        (temp / "rain").mkdir()
        for t, path in enumerate(clip["files"], 1):
            cv2.imwrite(str(temp / "clean" / f"{t:04d}.png"), cv2.imread(path), png)
        for t, frame in enumerate(clip["rain"], 1):
            cv2.imwrite(str(temp / "rain" / f"{t:04d}.png"), frame, png)
        dataset.write_npz(temp / dataset.LAYERS_FILE, clip["layers"])
        (temp / dataset.PARAMS_FILE).write_text(clip["params"])
        (temp / dataset.CLIP_FILE).write_text(clip["clip"])
        temp.rename(folder)
    return time.perf_counter() - start


def png_settings(built: Path, limit: int = 112) -> None:
    """Encode time and size of the built clean and rain frames at several PNG settings."""
    frames = [cv2.imread(str(p)) for p in sorted(built.glob("*/*/*/*/*.png"))[:limit]]
    settings = {
        "OpenCV default (level 1, RLE)": [],
        "level 1 (used)": [cv2.IMWRITE_PNG_COMPRESSION, 1],
        "level 3": [cv2.IMWRITE_PNG_COMPRESSION, 3],
        "level 6": [cv2.IMWRITE_PNG_COMPRESSION, 6],
    }
    print(f"\nPNG settings over {len(frames)} built frames (median of 3):")
    for name, params in settings.items():
        times = []
        for _ in range(3):
            start = time.perf_counter()
            sizes = [len(cv2.imencode(".png", frame, params)[1]) for frame in frames]
            times.append((time.perf_counter() - start) / len(frames))
        print(
            f"  {name:30s} {statistics.median(times) * 1e3:5.2f} ms/frame  "
            f"{np.mean(sizes) / 1e3:6.1f} KB/frame"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=SAMPLE, help="Vimeo-90K septuplet folder")
    parser.add_argument("--copies", type=int, default=4, help="times each septuplet is listed")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if not (args.root / "sequences").is_dir():
        raise SystemExit(f"no Vimeo-90K septuplet folder at {args.root}; pass --root")
    cv2.setNumThreads(1)  # the floor runs on one core, like one build worker
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        root = replicated(args.root.resolve(), args.copies, scratch)
        options = BuildOptions(source="vimeo90k", root=str(root), presets=("light", "heavy"))
        timed_build(options, scratch / "warm", 1)  # numba cache, page cache, imports
        clips = floor_inputs(scratch / "warm")
        load = os.getloadavg()[0]
        wall: dict[str, list[float]] = {"build1": [], "floor": [], "build2": [], "bare1": []}
        cpu: dict[str, list[float]] = {"build1": [], "build2": [], "bare1": []}
        for repeat in range(args.repeats):
            runs = [("build1", 1), ("build2", 2), ("bare1", 1)]
            for name, workers in runs if repeat % 2 == 0 else runs[::-1]:
                with without_browser() if name == "bare1" else contextlib.nullcontext():
                    seconds, cpu_seconds = timed_build(
                        options, scratch / f"{name}-{repeat}", workers
                    )
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
                shutil.rmtree(scratch / f"{name}-{repeat}")
            wall["floor"].append(timed_floor(clips, scratch / f"floor-{repeat}"))
            shutil.rmtree(scratch / f"floor-{repeat}")
        build1, floor, build2, bare1 = (
            statistics.median(wall[k]) for k in ("build1", "floor", "build2", "bare1")
        )
        cpu1, cpu2 = (statistics.median(cpu[k]) for k in ("build1", "build2"))
        n = len(clips)
        print(
            f"{n} clips ({args.copies} x {args.root.name}, 7 x 256 x 448, light + heavy), "
            f"medians of {args.repeats}; load average {load:.1f} before, "
            f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores:"
        )
        print(f"  I/O floor            {floor:6.2f} s  ({floor / n * 1e3:5.1f} ms/clip)")
        print(f"  build, 1 worker      {build1:6.2f} s  ({build1 / n * 1e3:5.1f} ms/clip)")
        print(f"  build, 2 workers     {build2:6.2f} s  ({build2 / n * 1e3:5.1f} ms/clip)")
        print(f"  build, 1 worker, no browser {bare1:6.2f} s  ({bare1 / n * 1e3:5.1f} ms/clip)")
        print(f"  build / floor (1 worker)      {build1 / floor:5.2f}   (target <= 1.3)")
        print(f"  speed-up 1 -> 2 workers       {build1 / build2:5.2f}x  (target >= 1.7)")
        print(
            f"  browser: build / build without {build1 / bare1:5.2f}   (target <= 1.05; "
            f"CPU {statistics.median(cpu['build1']) / statistics.median(cpu['bare1']):.2f})"
        )
        print(
            f"  CPU time, all processes: 1 worker {cpu1:.2f} s, 2 workers {cpu2:.2f} s "
            f"(x{cpu2 / cpu1:.2f}: worker start-up; on a busy machine the wall-time speed-up "
            "falls, the CPU time does not)"
        )
        png_settings(scratch / "warm")


if __name__ == "__main__":
    main()
