"""Speed of the clip sources, per frame, against references timed in the same run (medians).

    python benchmarks/source_speed.py [--vimeo PATH] [--repeats 5]

- vimeo90k: Source.read of the Vimeo-90K sample's septuplets against the PNG floor, plain
  cv2.imread of the same files (the build benchmark's floor).
- builtin: rendering synthetic clips (frames + exact flow, 448x256) per motion kind, against the
  same PNG floor.
- videos: reading a real clip's windows in order against one ffmpeg pass over the whole file.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import cv2
import imageio_ffmpeg

from rainsynth.sources import open_source
from rainsynth.sources.builtin import _video_paths, clip_plan

DEFAULT_VIMEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "vimeo_septuplet_sample"


def median_time(work, repeats: int) -> float:
    """Median wall time of `work()` in seconds over `repeats` runs (after one warm-up)."""
    work()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vimeo", default=str(DEFAULT_VIMEO), help="Vimeo-90K septuplet folder")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    vimeo = open_source("vimeo90k", root=args.vimeo)
    refs = vimeo.sequences()
    files = [path for ref in refs for path in vimeo.read(ref).files]

    def floor():
        for path in files:
            cv2.imread(path, cv2.IMREAD_COLOR)

    def read_vimeo():
        for ref in refs:
            vimeo.read(ref)

    png = median_time(floor, args.repeats) / len(files)
    ours = median_time(read_vimeo, args.repeats) / len(files)
    print(f"PNG floor (cv2.imread, 448x256): {png * 1e3:.2f} ms/frame")
    print(f"vimeo90k read:                  {ours * 1e3:.2f} ms/frame  ({ours / png:.2f}x floor)")

    builtin = open_source("builtin", count=40, seed=0)
    synthetic = builtin.sequences()[:40]
    for kind in ("pan", "zoom", "rotate", "parallax"):
        chosen = [ref for i, ref in enumerate(synthetic) if clip_plan(i)[1] == kind]

        def render(chosen=chosen):
            for ref in chosen:
                builtin.read(ref)

        per_frame = median_time(render, args.repeats) / (7 * len(chosen))
        print(
            f"builtin {kind:<8} frames+flow:     {per_frame * 1e3:.2f} ms/frame  "
            f"({per_frame / png:.2f}x floor)"
        )

    path = _video_paths()["bikes.mp4"]
    video = open_source("videos", root=path)
    windows = video.sequences()

    def single_pass():
        for _ in imageio_ffmpeg.read_frames(path, output_params=["-fps_mode", "passthrough"]):
            pass

    def read_windows():
        video.clips.close()  # start cold, like a fresh worker
        for ref in windows:
            video.read(ref)

    count = video.clips.probe("bikes.mp4").frames
    one_pass = median_time(single_pass, args.repeats) / count
    ours = median_time(read_windows, args.repeats) / (7 * len(windows))
    print(f"bikes.mp4 one ffmpeg pass:      {one_pass * 1e3:.2f} ms/frame (640x272)")
    print(
        f"videos windows in order:        {ours * 1e3:.2f} ms/frame  ({ours / one_pass:.2f}x pass)"
    )


if __name__ == "__main__":
    main()
