"""derain.config: errors name the file, section and key; the shipped configs load; variants apply."""

from __future__ import annotations

from pathlib import Path

import pytest
from derain_helpers import tiny_config, write_toml

from derain.config import ConfigError, TrainConfig
from derain.model import ABLATIONS, ModelConfig

REPO = Path(__file__).resolve().parents[1]


def test_config_errors_name_the_file_and_key(tmp_path, dataset):
    path = write_toml(tmp_path / "c.toml", tiny_config(dataset, tmp_path / "run"))
    path.write_text(path.read_text() + "\n[extra]\nx = 1\n")
    with pytest.raises(ConfigError, match=r"c\.toml: unknown section \[extra\]"):
        TrainConfig.load(path)
    path = write_toml(tmp_path / "d.toml", tiny_config(dataset, tmp_path / "run"))
    path.write_text(path.read_text().replace("[optim]\n", "[optim]\nlearning_rate = 1.0\n"))
    with pytest.raises(ConfigError, match=r"d\.toml: unknown key 'learning_rate' in \[optim\]"):
        TrainConfig.load(path)
    with pytest.raises(ConfigError, match=r"\[data\] frames must be an integer, got 2.5"):
        TrainConfig.load(
            write_toml(tmp_path / "e.toml", tiny_config(dataset, tmp_path)),
            ["data.frames=2.5"],
        )
    with pytest.raises(ConfigError, match="does not exist"):
        TrainConfig.load(tmp_path / "absent.toml")
    (tmp_path / "bad.toml").write_text("[model\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        TrainConfig.load(tmp_path / "bad.toml")


def test_shipped_configs_load_and_variants_apply():
    for name in ("small", "paper", "bundled"):
        config = TrainConfig.load(REPO / "derain" / "configs" / f"{name}.toml")
        assert config.model.size == ("paper" if name == "paper" else "small")
        assert config.model.row_position and config.model.frame_context
    v4 = TrainConfig.load(REPO / "derain" / "configs" / "small.toml", ["model.variant=v4"])
    assert v4.model.use_align is False and v4.model.use_lstm is True


@pytest.mark.parametrize("name", ABLATIONS)
def test_every_variant_is_its_ablation_and_survives_the_round_trip(name, tmp_path):
    config = TrainConfig.from_dict({"model": {"variant": name}, "data": {"datasets": ["d"]}})
    assert config.model == ModelConfig.ablation(name)
    path = tmp_path / "c.toml"
    path.write_text(config.to_toml())
    assert TrainConfig.load(path).to_dict() == config.to_dict()
