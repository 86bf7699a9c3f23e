"""derain.train: the loss falls, the data and losses fit the model, DDP splits batches, the CLI;
flow pretraining lowers the flow error and initialises a training run."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from derain_helpers import tiny_config, train_process, write_toml

import derain.train as train_module
from derain.checkpoint import CheckpointError, load_model, read_weights
from derain.config import ConfigError, TrainConfig
from derain.data import PairedClips, SampleKey, collate, training_dataset
from derain.losses import derain_loss
from derain.model import build_flownet, build_model
from derain.train import FlowRecipe, flow_terms, load_flow_init, pretrain_flow, train, train_command

REPO = Path(__file__).resolve().parents[1]


def _fixed_batch(data: Path) -> dict[str, torch.Tensor]:
    clips = PairedClips(data, frames=3)  # the first 3 frames of each clip, whole
    return collate([clips[i] for i in range(len(clips))])


def _loss(model, batch, config) -> float:
    with torch.no_grad():
        return derain_loss(model(batch["rain"][..., :32, :32]), _crop(batch), config.loss, model)[
            0
        ].item()


def _crop(batch):
    return {k: v if v.dim() < 3 or v.shape[-1] == 1 else v[..., :32, :32] for k, v in batch.items()}


def test_thirty_iterations_lower_the_loss(dataset, tmp_path):
    config = TrainConfig.from_dict(
        tiny_config(
            dataset,
            tmp_path / "run",
            data={"eval_dataset": str(dataset), "eval_clips": 2},
            optim={"iterations": 30, "schedule": "constant", "warmup": 0},
            run={"checkpoint_every": 30, "log_every": 5, "eval_every": 15},
        )
    )
    torch.manual_seed(config.run.seed)
    initial = build_model(config.model)
    final = train(config, progress=False)
    trained, metadata = load_model(final)
    batch = _fixed_batch(dataset)
    before, after = _loss(initial, batch, config), _loss(trained, batch, config)
    assert after < 0.9 * before, (before, after)
    assert metadata["iteration"] == "30"
    with open(tmp_path / "run" / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["iteration"]) for r in rows] == [5, 10, 15, 20, 25, 30]
    assert {"total", "rect", "var", "opt_fine", "opt_reg", "flow_sup", "lr", "seconds"} <= set(
        rows[0]
    )
    assert TrainConfig.load(tmp_path / "run" / "config.toml").to_dict() == config.to_dict()
    with open(tmp_path / "run" / "eval.csv", newline="") as handle:
        scores = list(csv.DictReader(handle))
    assert [int(r["iteration"]) for r in scores] == [15, 30]
    assert all(0 < float(r["ssim"]) <= 1 and float(r["psnr"]) > 5 for r in scores)


def test_online_rain_training_runs(dataset, tmp_path):
    online = {"online": True, "online_size": [48, 64], "online_clips": 2, "workers": 1}
    config = TrainConfig.from_dict(
        tiny_config(dataset, tmp_path / "run", data=online, optim={"iterations": 2})
    )
    assert read_weights(train(config, progress=False))[1]["iteration"] == "2"


def test_training_reads_a_paired_folder_with_the_losses_that_need_no_layers(tmp_path):
    rng = np.random.default_rng(0)
    for side in ("LQ", "GT"):
        (tmp_path / "paired" / side).mkdir(parents=True)
        for t in range(4):
            frame = rng.integers(0, 256, (40, 40, 3), np.uint8)
            cv2.imwrite(str(tmp_path / "paired" / side / f"{t:04d}.png"), frame)
    config = TrainConfig.from_dict(tiny_config(tmp_path / "paired", tmp_path / "run"))
    with pytest.raises(ConfigError, match=r"LQ has no rain layers .* set both to 0"):
        train(config, progress=False)
    bare = config.replace(
        loss={"var": 0.0, "flow_sup": 0.0},
        optim={"iterations": 1},
        run={"out": str(tmp_path / "bare")},
    )
    assert train(bare, progress=False).exists()


def test_a_model_trains_on_the_whole_frame_facts_it_reads(dataset, tmp_path, monkeypatch):

    seen = []

    def spy(data, seed, context=False, rows=False):
        clips = training_dataset(data, seed, context, rows)
        sample = clips[SampleKey(0, 0, 0, 0)]
        seen.append(("rain_context" in sample, "rows" in sample))
        return clips

    monkeypatch.setattr(train_module, "training_dataset", spy)
    for name in ("plain", "frame_context", "row_position"):
        config = tiny_config(
            dataset,
            tmp_path / name,
            model={} if name == "plain" else {name: True},
            optim={"iterations": 1},
        )
        train(TrainConfig.from_dict(config), progress=False)
    # the context and the rows are cut only for a model that reads them
    assert seen == [(False, False), (True, False), (False, True)]


def test_train_command_help_teaches_and_overrides_apply(dataset, tmp_path):
    runner = CliRunner()
    help_text = runner.invoke(train_command, ["--help"]).output
    assert "Examples:" in help_text and "--resume" in help_text and "torchrun" in help_text
    path = write_toml(tmp_path / "c.toml", tiny_config(dataset, tmp_path / "ignored"))
    result = runner.invoke(
        train_command,
        [
            "--config",
            str(path),
            "--out",
            str(tmp_path / "cli"),
            "--iterations",
            "2",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    assert read_weights(tmp_path / "cli" / "model.safetensors")[1]["iteration"] == "2"
    assert not (tmp_path / "ignored").exists()


def test_torchrun_two_cpu_processes_match_one_process_with_the_global_batch(dataset, tmp_path):
    sections = {"optim": {"iterations": 2, "grad_clip": 0.0}, "run": {"checkpoint_every": 2}}
    ddp = write_toml(tmp_path / "ddp.toml", tiny_config(dataset, tmp_path / "ddp", **sections))
    single = tiny_config(dataset, tmp_path / "one", **sections)
    single["data"]["batch_size"] *= 2
    one = write_toml(tmp_path / "one.toml", single)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "derain.train", "--config", str(ddp), "--no-progress"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    reference = train_process(one)
    assert reference.wait(timeout=300) == 0, reference.stdout.read().decode()
    a, _ = read_weights(tmp_path / "ddp" / "model.safetensors")
    b, _ = read_weights(tmp_path / "one" / "model.safetensors")
    # DDP averages the two ranks' gradients: the same update as one process on both halves
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    torch.manual_seed(0)
    initial = build_model(TrainConfig.load(one).model).state_dict()
    assert max((a[k] - initial[k]).abs().max().item() for k in a) > 1e-3  # the weights moved


def test_flow_pretraining_lowers_the_error_and_initialises_training(dataset, tmp_path):

    config = TrainConfig.from_dict(
        tiny_config(
            dataset,
            tmp_path / "unused",
            data={"online_size": [48, 64], "online_clips": 4, "crop": [32, 48]},
            optim={"iterations": 80, "lr": 1e-3, "schedule": "constant", "warmup": 0},
            run={"checkpoint_every": 40, "log_every": 10},
        )
    )
    dataset_ = FlowRecipe(config, "supervised", "source").dataset()
    batch = collate([dataset_[SampleKey(i, 0, i, 0)] for i in range(4)])
    torch.manual_seed(config.run.seed)
    before = flow_terms(build_flownet(config.model), batch, "supervised")[1]["epe"]
    path = pretrain_flow(config, tmp_path / "flow", mode="both", progress=False)
    tensors, metadata = read_weights(path, kind="rainsynth-flownet")
    flownet = build_flownet(config.model)
    flownet.load_state_dict(tensors)
    after = flow_terms(flownet, batch, "supervised")[1]["epe"]
    assert after < 0.9 * before, (before, after)
    run = config.replace(
        run={"out": str(tmp_path / "run"), "flow_init": str(path)}, optim={"iterations": 1}
    )
    model = build_model(run.model)
    load_flow_init(model, path)
    assert all(torch.equal(model.flownet.state_dict()[k], tensors[k]) for k in tensors)
    train(run, progress=False)  # a run starts from the pretrained flow net
    with pytest.raises(CheckpointError, match="expected 'rainsynth-flownet'"):
        load_flow_init(model, tmp_path / "run" / "model.safetensors")
