"""Shared pieces of the derain tests: a tiny dataset and a tiny training config."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch

import rainsynth
from derain.config import TrainConfig
from rainsynth.dataset import write_clip
from rainsynth.sources import open_source

TINY_MODEL = {"size": "small", "base_channels": 4}
N, T, H, W = 1, 3, 32, 32
"""The shape of the clips of :func:`rain_clip`: (N,T,3,H,W)."""


def rain_clip(seed: int = 0, n: int = N, t: int = T, h: int = H, w: int = W) -> torch.Tensor:
    """A random clip (n,t,3,h,w) in [0, 1), drawn from its own seeded generator."""
    return torch.rand(n, t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def make_dataset(
    root: Path, *, frames: int = 4, size: tuple[int, int] = (48, 64), clips: int = 3
) -> Path:
    """Write a tiny dataset (train and test splits, presets heavy and light) from the builtin
    source with the dataset writer: `clips` clips per split and preset, exact flow stored."""
    source = open_source("builtin", frames=frames, size=size, seed=0, count=2 * clips)
    refs = source.sequences()
    index = 0
    for split in ("train", "test"):
        for preset in ("heavy", "light"):
            for _ in range(clips):
                sequence = source.read(refs[index])
                params = rainsynth.sample_params(
                    preset, seed=0, shape=sequence.frames.shape[:3], clip=index
                )
                rendered = rainsynth.render(sequence.frames, params)
                write_clip(
                    root / split / preset / f"clip{index:03d}",
                    rain=rendered.rain,
                    clean=sequence.frames,
                    layers=rendered.layers,
                    params=params,
                    flow=sequence.flow,
                    info={"shape": list(sequence.frames.shape[:3]), "source": sequence.ref.key},
                )
                index += 1
    return root


def tiny_config(dataset: Path, out: Path, **sections: dict) -> dict:
    """Config sections of a tiny, seconds-long CPU training run on ``dataset``."""
    config = {
        "model": dict(TINY_MODEL),
        "loss": {"rect": 1.0, "var": 0.1, "opt_fine": 0.1, "opt_reg": 0.01, "flow_sup": 0.1},
        "data": {"datasets": [str(dataset)], "frames": 3, "crop": [32, 32], "batch_size": 2},
        "optim": {"lr": 2e-3, "iterations": 6, "warmup": 2},
        "run": {"out": str(out), "checkpoint_every": 3, "log_every": 1, "device": "cpu"},
    }
    for name, values in sections.items():
        config[name] = {**config[name], **values}
    return config


def write_toml(path: Path, config: dict) -> Path:
    """Write a config dict of sections as TOML (through TrainConfig, which validates it)."""
    path.write_text(TrainConfig.from_dict(config).to_toml(), encoding="utf-8")
    return path


def write_video(path: Path, frames: np.ndarray, fps: float = 12.0) -> Path:
    """Write (T, H, W, 3) uint8 RGB frames as an H.264 video."""
    h, w = frames.shape[1:3]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, quality=9, macro_block_size=1)
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame).tobytes())
    writer.close()
    return path


def train_process(config: Path, *args: str) -> subprocess.Popen:
    """`python -m derain.train --config CONFIG ARGS` in a new process, one thread, output piped."""
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
        "OMP_NUM_THREADS": "1",
    }
    command = [sys.executable, "-m", "derain.train", "--config", str(config), "--no-progress"]
    return subprocess.Popen(
        [*command, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
