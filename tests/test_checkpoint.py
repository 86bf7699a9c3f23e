"""derain.checkpoint: safetensors weights with metadata, weights-only state, strict loading."""

from __future__ import annotations

import json
import random
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
from derain_helpers import (
    TINY_MODEL,
)
from safetensors.torch import save_file

from derain.checkpoint import (
    FLOW_FORMAT,
    CheckpointError,
    latest_checkpoint,
    load_model,
    load_state,
    prune_checkpoints,
    read_weights,
    resolve_weights,
    rng_state,
    save_checkpoint,
    save_state,
    save_weights,
    set_rng_state,
)
from derain.config import TrainConfig
from derain.model import ABLATIONS, ModelConfig, build_model
from rainsynth.errors import RainsynthError

REPO = Path(__file__).resolve().parents[1]


def _save(path, model, config=None):
    config = config or model.config
    return save_weights(path, model.state_dict(), config.to_dict(), iteration=7)


def test_round_trip_rebuilds_the_network_from_the_file_alone(tmp_path, tiny_model):
    path = _save(tmp_path / "w.safetensors", tiny_model)
    loaded, metadata = load_model(path)
    assert (
        metadata["iteration"] == "7" and json.loads(metadata["model_config"])["base_channels"] == 4
    )
    assert loaded.config == tiny_model.config and not loaded.training
    for key, value in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value)
    assert not list(tmp_path.glob(".*tmp"))  # nothing temporary left behind


@pytest.mark.parametrize(
    "content", [b"", b"not a safetensors file at all", b"\xff" * 64, b"\x08" + b"\x00" * 7 + b"{}"]
)
def test_malformed_files_raise_a_clear_error(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"{path}.*not a valid safetensors"):
        load_model(path)


def test_truncated_file_is_rejected(tmp_path, tiny_model):
    path = _save(tmp_path / "w.safetensors", tiny_model)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        read_weights(path)


def test_missing_file_and_missing_metadata(tmp_path, tiny_model):
    with pytest.raises(RainsynthError, match="does not exist"):  # bad input, not a bad file
        load_model(tmp_path / "absent.safetensors")
    plain = tmp_path / "plain.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_model.state_dict().items()}, str(plain))
    with pytest.raises(CheckpointError, match="format None.*expected 'rainsynth-derain'"):
        load_model(plain)


def test_missing_unexpected_and_misshapen_tensors_are_named(tmp_path, tiny_model):
    state = dict(tiny_model.state_dict())
    dropped = sorted(state)[0]
    del state[dropped]
    state["extra.weight"] = torch.zeros(2)
    resized = sorted(state)[3]
    state[resized] = torch.zeros(*[s + 1 for s in state[resized].shape])
    path = save_weights(tmp_path / "w.safetensors", state, tiny_model.config.to_dict())
    with pytest.raises(CheckpointError) as error:
        load_model(path)
    message = str(error.value)
    assert f"missing (1): {dropped}" in message
    assert "unexpected (1): extra.weight" in message
    assert f"{resized}: file" in message and "vs network" in message


def test_weights_of_another_config_do_not_load_into_this_network(tmp_path, tiny_model):
    bigger = build_model({**TINY_MODEL, "base_channels": 8})
    path = save_weights(
        tmp_path / "w.safetensors", bigger.state_dict(), tiny_model.config.to_dict()
    )
    with pytest.raises(CheckpointError, match="shape"):
        load_model(path)
    honest = _save(tmp_path / "h.safetensors", bigger)
    expected = ModelConfig(**TINY_MODEL)
    with pytest.raises(CheckpointError, match="base_channels: file 8, expected 4"):
        load_model(honest, expected_config=expected)
    with pytest.raises(CheckpointError, match="not usable"):
        broken = save_weights(tmp_path / "b.safetensors", {}, {"size": "huge"})
        load_model(broken)


def test_a_flow_file_is_not_taken_for_a_whole_network(tmp_path, tiny_model):
    path = save_weights(
        tmp_path / "f.safetensors",
        tiny_model.flownet.state_dict(),
        tiny_model.config.to_dict(),
        kind=FLOW_FORMAT,
    )
    with pytest.raises(CheckpointError, match="pretrained flow network"):
        load_model(path)
    tensors, _ = read_weights(path, kind=FLOW_FORMAT)
    assert set(tensors) == set(tiny_model.flownet.state_dict())


def test_training_state_round_trip_is_weights_only(tmp_path, tiny_model):
    optimizer = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    tiny_model(torch.rand(1, 2, 3, 32, 32))["B"].mean().backward()
    optimizer.step()
    random.seed(3)
    np.random.seed(3)  # noqa: NPY002 - the legacy global stream is what is saved
    torch.manual_seed(3)
    state = {
        "iteration": 5,
        "elapsed": 1.5,
        "optimizer": optimizer.state_dict(),
        "rng": rng_state(),
    }
    path = save_state(tmp_path / "s.pt", state)
    expected = (random.random(), np.random.random(), torch.rand(1))  # noqa: NPY002
    loaded = load_state(path)
    set_rng_state(loaded["rng"])
    assert (random.random(), np.random.random(), torch.rand(1)) == expected  # noqa: NPY002
    fresh = torch.optim.AdamW(tiny_model.parameters(), lr=1e-3)
    fresh.load_state_dict(loaded["optimizer"])
    for a, b in zip(fresh.state.values(), optimizer.state.values(), strict=True):
        assert torch.equal(a["exp_avg"], b["exp_avg"])


def test_state_files_with_arbitrary_pickles_are_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"iteration": 1, "payload": Fraction(1, 3)}, path)  # any non-allowed class
    with pytest.raises(CheckpointError, match="malformed or unsafe"):
        load_state(path)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(CheckpointError, match="malformed"):
        load_state(tmp_path / "junk.pt")


def test_latest_checkpoint_ignores_incomplete_pairs_and_prunes(tmp_path, tiny_model):
    optimizer = torch.optim.AdamW(tiny_model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0)
    for iteration in (2, 4, 6):
        save_checkpoint(
            tmp_path,
            iteration,
            tiny_model,
            tiny_model.config.to_dict(),
            optimizer,
            scheduler,
            elapsed=0.0,
            keep=2,
        )
    assert latest_checkpoint(tmp_path) == 6
    assert sorted(p.name for p in tmp_path.glob("*.safetensors")) == [
        "iter_00000004.safetensors",
        "iter_00000006.safetensors",
    ]
    (tmp_path / "iter_00000006.state.pt").unlink()  # killed between weights and state
    assert latest_checkpoint(tmp_path) == 4
    prune_checkpoints(tmp_path, 1)
    assert latest_checkpoint(tmp_path) == 4


def test_weights_resolution(tmp_path, tiny_model):
    path = _save(tmp_path / "w.safetensors", tiny_model)
    assert resolve_weights(path) == path
    with pytest.raises(RainsynthError, match="does not exist"):
        resolve_weights(tmp_path / "nope.safetensors")
    bundled = resolve_weights(None)
    assert bundled.name == "model.safetensors" and bundled.parent.name == "weights"


def test_bundled_weights_fit_the_network_and_run():
    """The shipped model is the network of the committed recipe, loads strictly into it and
    gives a finite clean clip."""
    model, metadata = load_model(resolve_weights(None))
    recipe = TrainConfig.load(REPO / "derain" / "configs" / "bundled.toml")
    assert model.config == recipe.model and metadata["format"]
    rain = torch.rand(1, 2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        clean = model(rain)["B"]
    assert clean.shape == rain.shape and torch.isfinite(clean).all()


@pytest.mark.parametrize("name", ABLATIONS)
def test_every_ablation_round_trips_through_a_weights_file(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(ModelConfig.ablation(name, **TINY_MODEL))
    loaded, _ = load_model(_save(tmp_path / "w.safetensors", model))
    assert loaded.config == model.config
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
