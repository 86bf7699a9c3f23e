"""Speed of ``rainsynth.render`` against albumentations' RandomRain, timed in the same run.

    python benchmarks/synth_speed.py [--repeats 50]

Prints the median ms per frame of rendering the heavy preset on a 7x256x448 built-in clip, with
one thread and with two (after the first, compiling call), next to albumentations' RandomRain
(heavy rain type, one thread) on the same frames, and the ratio; and, with one thread, the
physical preset ``downpour`` (heavy rain from a rain rate and a camera: lit streaks, splashes,
drops on the lens), against heavy, its clip drawn in turn from four seeds. The one-thread timings take
turns, a clip each per round, so a change in the machine's load shifts both alike. RandomRain
renders frozen streaks only and returns uint8; rainsynth renders all four factors and keeps
every layer in float32. Also: the first call in a fresh process with an empty numba cache
(import + compile) and with the cache filled.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import cv2

import rainsynth
from rainsynth.sources import open_source

SHAPE = (7, 256, 448)

FIRST_CALL = """
import time
t0 = time.perf_counter()
import numpy as np, rainsynth
clean = np.zeros((7, 256, 448, 3), np.uint8)
rainsynth.render(clean, rainsynth.sample_params("heavy", seed=0, shape=(7, 256, 448)))
print(time.perf_counter() - t0)
"""


def interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median wall time in milliseconds of each fn(), after one warm-up call each.

    The functions take turns, one call each per round, so a change in the machine's load
    during the run affects all of them alike.
    """
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def first_call_seconds(cache_dir: str) -> float:
    """Seconds from `import rainsynth` to the end of the first render, in a new process."""
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run(
        [sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    source = open_source("builtin", size=SHAPE[1:], frames=SHAPE[0], count=1)
    clean = source.read(source.sequences()[0]).frames
    params = rainsynth.sample_params("heavy", seed=0, shape=SHAPE)
    physical = [rainsynth.sample_params("downpour", seed=s, shape=SHAPE) for s in range(4)]
    frames = SHAPE[0]

    import albumentations as A

    rain = A.RandomRain(rain_type="heavy", p=1.0)

    def albumentations_clip() -> None:
        for frame in clean:
            rain(image=frame)

    def ours() -> None:
        rainsynth.render(clean, params)

    turn = iter(range(10**9))

    def downpour() -> None:
        rainsynth.render(clean, physical[next(turn) % len(physical)])

    cv2.setNumThreads(1)
    rainsynth.set_num_threads(1)
    medians = interleaved_medians(
        {"theirs": albumentations_clip, "ours": ours, "downpour": downpour}, args.repeats
    )
    theirs, ours_1 = medians["theirs"] / frames, medians["ours"] / frames
    physical_1 = medians["downpour"] / frames
    threads = 2
    cv2.setNumThreads(threads)  # changing cv2's pool is slow, so the two-thread run comes after
    rainsynth.set_num_threads(threads)
    ours_2 = interleaved_medians({"ours": ours}, args.repeats)["ours"] / frames

    with tempfile.TemporaryDirectory() as cache:
        cold = first_call_seconds(cache)
        warm = first_call_seconds(cache)

    print(
        f"rain rendering, heavy preset, {SHAPE[2]}x{SHAPE[1]}, median of {args.repeats} clips of {frames} frames"
    )
    print(f"  albumentations RandomRain (1 thread):  {theirs:7.3f} ms/frame  (streaks only, uint8)")
    print(
        f"  rainsynth.render (1 thread):           {ours_1:7.3f} ms/frame  (4 factors + layers, float32)"
    )
    print(f"  rainsynth.render ({threads} threads):          {ours_2:7.3f} ms/frame")
    print(f"  rainsynth.render, downpour (1 thread):  {physical_1:7.3f} ms/frame  "
          f"({physical_1 / ours_1:.2f}x heavy, target <= 1.5x)")  # fmt: skip
    print(f"  ratio rainsynth / albumentations, 1 thread: {ours_1 / theirs:5.2f}x  (target <= 2x)")
    print(f"  ratio rainsynth / albumentations, {threads} threads: {ours_2 / theirs:5.2f}x")
    print(f"first call in a new process (import + render): {cold:.2f} s with an empty numba cache "
          f"(target <= 3 s of compiling), {warm:.2f} s cached (target <= 1 s)")  # fmt: skip


if __name__ == "__main__":
    main()
