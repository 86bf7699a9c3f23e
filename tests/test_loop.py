"""derain.loop: a killed run resumes bit-exactly, run folders are checked, bad gradients stop it."""

from __future__ import annotations

import csv
import signal
import time
from pathlib import Path

import pytest
import torch
from derain_helpers import tiny_config, train_process, write_toml

from derain.checkpoint import CheckpointError, latest_checkpoint, read_weights
from derain.config import ConfigError, TrainConfig
from derain.loop import TrainingError, clip_gradients
from derain.train import train

REPO = Path(__file__).resolve().parents[1]


def test_killed_and_resumed_run_ends_with_bitwise_the_same_weights(dataset, tmp_path):
    sections = {"optim": {"iterations": 24}, "run": {"checkpoint_every": 4, "keep_checkpoints": 2}}
    straight = write_toml(tmp_path / "a.toml", tiny_config(dataset, tmp_path / "a", **sections))
    killed = write_toml(tmp_path / "b.toml", tiny_config(dataset, tmp_path / "b", **sections))
    reference = train_process(straight)
    victim = train_process(killed)
    folder = tmp_path / "b" / "checkpoints"
    deadline = time.monotonic() + 120
    while latest_checkpoint(folder) is None and victim.poll() is None:
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    stopped_at = latest_checkpoint(folder)
    assert victim.returncode == -signal.SIGKILL
    assert stopped_at is not None and stopped_at < 24, "the run finished before it was killed"
    assert not (tmp_path / "b" / "model.safetensors").exists()
    resumed = train_process(killed, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read().decode()
    assert reference.wait(timeout=300) == 0, reference.stdout.read().decode()
    a, _ = read_weights(tmp_path / "a" / "model.safetensors")
    b, _ = read_weights(tmp_path / "b" / "model.safetensors")
    assert set(a) == set(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    with open(tmp_path / "b" / "log.csv", newline="") as handle:
        iterations = [int(r["iteration"]) for r in csv.DictReader(handle)]
    assert iterations == list(range(1, 25))  # rows of the killed tail were not duplicated


def test_resume_checks_and_refusals(dataset, tmp_path):
    config = TrainConfig.from_dict(tiny_config(dataset, tmp_path / "run", optim={"iterations": 3}))
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        train(config, resume=True, progress=False)
    train(config, progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        train(config, progress=False)
    other = config.replace(model={"base_channels": 8}, optim={"iterations": 6})
    with pytest.raises(CheckpointError, match="base_channels: file 4, expected 8"):
        train(other, resume=True, progress=False)


def test_gradients_clipped_and_non_finite_ones_stop_training():
    layer = torch.nn.Linear(2, 1)
    layer(torch.tensor([[30.0, -40.0]])).sum().backward()
    clip_gradients(layer, 1.0)
    assert torch.cat([p.grad.flatten() for p in layer.parameters()]).norm() <= 1.0 + 1e-6
    layer.zero_grad()
    layer(torch.tensor([[1.0, float("nan")]])).sum().backward()
    for max_norm in (1.0, 0.0):  # also without clipping
        with pytest.raises(TrainingError, match="gradient norm is nan"):
            clip_gradients(layer, max_norm)
