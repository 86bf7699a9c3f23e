"""derain.runtime: device strings are checked and picked, autocast is CUDA-only, torchrun's place."""

from __future__ import annotations

import click
import pytest
import torch
from click.testing import CliRunner

from derain.runtime import (
    Distributed,
    autocast,
    device_option,
    is_device,
    pick_device,
    process_group,
)
from derain.section import ConfigError


def test_device_strings_are_checked_and_picked():
    assert is_device("auto") and is_device("cpu") and is_device("cuda:1")
    assert not is_device("gpu") and not is_device(3)
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="device must be 'auto'.*got 'gpu'"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match=r"'cuda:1' was asked for, but torch sees 0 cuda"):
            pick_device("cuda:1")


def test_device_option_rejects_what_torch_cannot_parse():
    @click.command()
    @device_option("auto", "")
    def command(device):
        click.echo(device)

    assert CliRunner().invoke(command, ["--device", "cpu"]).output == "cpu\n"
    result = CliRunner().invoke(command, ["--device", "gpu"])
    assert result.exit_code == 2 and "must be 'auto'" in result.output


def test_autocast_is_a_no_op_on_cpu_and_one_process_is_rank_zero(monkeypatch):
    with autocast(torch.device("cpu")):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    with process_group("cpu") as (ddp, device):
        assert ddp == Distributed() and ddp.main and device == torch.device("cpu")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not Distributed.from_env().main and Distributed.from_env().world == 2
