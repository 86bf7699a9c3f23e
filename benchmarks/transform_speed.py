"""Throughput of ``RandomVideoRain`` inside a torch DataLoader against calling ``render`` directly.

    python benchmarks/transform_speed.py [--clips 64] [--workers 2] [--repeats 5]

Over the same clips (7x256x448 uint8, built-in source) in the same run: one pass of a DataLoader
whose dataset applies ``RandomVideoRain(presets=("heavy",))`` to each clip (``--workers``
processes, one render thread each, batches of 4 uint8 TCHW tensors; the pass includes starting
the workers), against ``sample_params`` + ``render`` called in this process with as many
render threads as workers. The passes take turns; medians of ``--repeats``. Prints the ratio of their
throughputs (target >= 0.9) and checks that two passes with the same seeds and worker count give
the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

import rainsynth
from rainsynth.sources import open_source
from rainsynth.transforms import RandomVideoRain

SHAPE = (7, 256, 448)


class RainyClips(Dataset):
    """The clips as uint8 (T, C, H, W) tensors under new rain."""

    def __init__(self, clips: list[np.ndarray], seed: int) -> None:
        self.clips = clips
        self.rain = RandomVideoRain(presets=("heavy",), seed=seed)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.rain(torch.from_numpy(self.clips[index]).permute(0, 3, 1, 2))


def load_clips(count: int) -> list[np.ndarray]:
    """`count` clips of SHAPE: the built-in source's first 8, repeated."""
    source = open_source("builtin", size=SHAPE[1:], frames=SHAPE[0], count=8)
    clips = [source.read(ref).frames for ref in source.sequences()[:8]]
    return [clips[i % len(clips)] for i in range(count)]


def loader_pass(clips: list[np.ndarray], workers: int, seed: int) -> float:
    """Seconds for one DataLoader pass over the clips (torch seeded with `seed`)."""
    torch.manual_seed(seed)
    loader = DataLoader(RainyClips(clips, seed), batch_size=4, num_workers=workers)
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def loader_digest(clips: list[np.ndarray], workers: int, seed: int) -> str:
    """sha256 of every batch of one DataLoader pass (torch seeded with `seed`)."""
    torch.manual_seed(seed)
    digest = hashlib.sha256()
    for batch in DataLoader(RainyClips(clips, seed), batch_size=4, num_workers=workers):
        digest.update(batch.numpy().tobytes())
    return digest.hexdigest()


def direct_pass(clips: list[np.ndarray], seed: int) -> float:
    """Seconds for sample_params + render over the clips in this process."""
    start = time.perf_counter()
    for index, clip in enumerate(clips):
        rainsynth.render(clip, rainsynth.sample_params("heavy", seed=seed, shape=SHAPE, clip=index))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    clips = load_clips(args.clips)
    rainsynth.set_num_threads(args.workers)
    direct_pass(clips[:1], 0)  # compile (or load the numba cache) before the workers fork
    RainyClips(clips[:1], 0)[0]
    first, second, other = (loader_digest(clips, args.workers, seed) for seed in (0, 0, 1))

    times: dict[str, list[float]] = {"loader": [], "direct": []}
    load = os.getloadavg()[0]
    for repeat in range(args.repeats):
        times["loader"].append(loader_pass(clips, args.workers, seed=repeat))
        times["direct"].append(direct_pass(clips, seed=repeat))
    loader, direct = (statistics.median(times[k]) for k in ("loader", "direct"))
    n = len(clips)
    print(
        f"{n} clips of {'x'.join(map(str, SHAPE))} uint8, heavy preset, medians of "
        f"{args.repeats}; load average {load:.1f} before, {os.getloadavg()[0]:.1f} after, "
        f"on {os.cpu_count()} cores:"
    )
    print(
        f"  render directly, {args.workers} threads        {direct:6.2f} s  "
        f"({n / direct:5.1f} clips/s)"
    )
    print(
        f"  RandomVideoRain, DataLoader {args.workers} workers  {loader:6.2f} s  "
        f"({n / loader:5.1f} clips/s)"
    )
    print(f"  throughput ratio DataLoader / direct   {direct / loader:5.2f}   (target >= 0.9)")
    print(
        f"  same seeds, {args.workers} workers, twice: "
        f"{'identical' if first == second else 'DIFFERENT'} ({first[:16]}); "
        f"seed 1: {'different' if other != first else 'SAME'}"
    )


if __name__ == "__main__":
    main()
