"""Throughput of ``RandomVideoRain`` in a torch DataLoader against calling ``render`` directly.

    python benchmarks/transform_speed.py [--clips 64] [--workers 2] [--repeats 5]

Over the same clips (7x256x448 uint8, built-in source) in the same run, three ways of raining on
every clip once, taking turns, medians of ``--repeats``:

- ``transform``: a DataLoader (``--workers`` processes, batches of 4) whose dataset applies
  ``RandomVideoRain(presets=("heavy",))`` to each clip as a uint8 (T, C, H, W) tensor;
- ``render``: the same DataLoader whose dataset calls ``sample_params`` + ``render`` itself and
  returns ``render``'s float32 rain, one render thread per worker, as the transform uses;
- ``render here``: ``sample_params`` + ``render`` in this process, as many threads as workers.

A pass includes starting the workers. The target is transform / render >= 0.9: wrapping render
in the transform costs little. The CPU time of each pass (all processes) is printed too: unlike
wall time, it does not depend on how much of the machine other jobs leave free. Also checks that
two passes with the same seeds and worker count give the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
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
    """The clips as uint8 (T, C, H, W) tensors under RandomVideoRain's rain."""

    def __init__(self, clips: list[np.ndarray], seed: int) -> None:
        self.clips = clips
        self.rain = RandomVideoRain(presets=("heavy",), seed=seed)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.rain(torch.from_numpy(self.clips[index]).permute(0, 3, 1, 2))


class RenderedClips(RainyClips):
    """The clips' rain from render called directly: (T, H, W, 3) float32."""

    def __getitem__(self, index: int) -> np.ndarray:
        params = rainsynth.sample_params("heavy", seed=self.rain.seed, shape=SHAPE, clip=index)
        return rainsynth.render(self.clips[index], params).rain


def one_thread(worker: int) -> None:
    rainsynth.set_num_threads(1)


def load_clips(count: int) -> list[np.ndarray]:
    """`count` clips of SHAPE: the built-in source's first 8, repeated."""
    source = open_source("builtin", size=SHAPE[1:], frames=SHAPE[0], count=8)
    clips = [source.read(ref).frames for ref in source.sequences()[:8]]
    return [clips[i % len(clips)] for i in range(count)]


def loader(dataset: Dataset, workers: int, seed: int) -> DataLoader:
    torch.manual_seed(seed)
    return DataLoader(dataset, batch_size=4, num_workers=workers, worker_init_fn=one_thread)


def loader_pass(dataset: Dataset, workers: int, seed: int) -> tuple[float, float]:
    """(wall, CPU) seconds of one DataLoader pass over `dataset` (torch seeded with `seed`)."""
    batches = loader(dataset, workers, seed)
    cpu, start = cpu_seconds(), time.perf_counter()
    for _ in batches:
        pass  # at the end the workers exit and are joined, so their CPU time is counted
    return time.perf_counter() - start, cpu_seconds() - cpu


def loader_digest(clips: list[np.ndarray], workers: int, seed: int) -> str:
    """sha256 of every batch of one RandomVideoRain DataLoader pass."""
    digest = hashlib.sha256()
    for batch in loader(RainyClips(clips, seed), workers, seed):
        digest.update(batch.numpy().tobytes())
    return digest.hexdigest()


def direct_pass(clips: list[np.ndarray], seed: int) -> tuple[float, float]:
    """(wall, CPU) seconds of sample_params + render over the clips in this process."""
    cpu, start = cpu_seconds(), time.perf_counter()
    for index, clip in enumerate(clips):
        rainsynth.render(clip, rainsynth.sample_params("heavy", seed=seed, shape=SHAPE, clip=index))
    return time.perf_counter() - start, cpu_seconds() - cpu


def cpu_seconds() -> float:
    """User + system time of this process and its finished child processes."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    clips = load_clips(args.clips)
    rainsynth.set_num_threads(args.workers)
    RainyClips(clips[:1], 0)[0]  # compile (or load the numba cache) before the workers fork
    RenderedClips(clips[:1], 0)[0]
    first, second, other = (loader_digest(clips, args.workers, seed) for seed in (0, 0, 1))

    times: dict[str, list[tuple[float, float]]] = {"transform": [], "render": [], "render here": []}
    load = os.getloadavg()[0]
    for seed in range(args.repeats):
        times["transform"].append(loader_pass(RainyClips(clips, seed), args.workers, seed))
        times["render"].append(loader_pass(RenderedClips(clips, seed), args.workers, seed))
        times["render here"].append(direct_pass(clips, seed))
    wall = {name: statistics.median(t[0] for t in runs) for name, runs in times.items()}
    cpu = {name: statistics.median(t[1] for t in runs) for name, runs in times.items()}
    n = len(clips)
    print(
        f"{n} clips of {'x'.join(map(str, SHAPE))} uint8, heavy preset, {args.workers} workers, "
        f"medians of {args.repeats}; load average {load:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores:"
    )
    for name, label in (
        ("transform", "RandomVideoRain in a DataLoader"),
        ("render", "render in a DataLoader"),
        ("render here", f"render in this process, {args.workers} threads"),
    ):
        print(
            f"  {label:38s} {wall[name]:5.2f} s ({n / wall[name]:5.1f} clips/s), "
            f"CPU {cpu[name] / n * 1e3:5.1f} ms/clip"
        )
    ratios = (
        ("throughput transform / render (DataLoader)", wall["render"] / wall["transform"]),
        ("throughput transform / render in this process", wall["render here"] / wall["transform"]),
        ("CPU time render in this process / transform", cpu["render here"] / cpu["transform"]),
    )
    for label, ratio in ratios:
        print(
            f"  {label:46s} {ratio:5.2f}" + ("   (target >= 0.9)" if "DataLoader" in label else "")
        )
    print(
        f"  same seeds, {args.workers} workers, twice: "
        f"{'identical' if first == second else 'DIFFERENT'} ({first[:16]}); "
        f"seed 1: {'different' if other != first else 'SAME'}"
    )


if __name__ == "__main__":
    main()
