"""derain.flow_pretrain: pretraining lowers the flow error and initialises a training run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from derain_helpers import tiny_config

from derain.checkpoint import CheckpointError, read_weights
from derain.config import TrainConfig
from derain.data import SampleKey, collate
from derain.flow_pretrain import FlowRecipe, flow_terms, pretrain_flow
from derain.model import build_flownet, build_model
from derain.train import load_flow_init, train

REPO = Path(__file__).resolve().parents[1]


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
