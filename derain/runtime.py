"""Where the network runs (the device, bf16 autocast, the torchrun process group), and the
command-line options that the network's commands share."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import click
import torch
import torch.distributed as dist

from derain.section import ConfigError

DEVICE_HELP = "'auto' (CUDA when present, else CPU) or a torch device: cpu, cuda, cuda:1, mps"


def is_device(name: object) -> bool:
    """Whether ``name`` is "auto" or a device string torch parses ("cpu", "cuda:1", "mps")."""
    if name == "auto":
        return True
    try:
        torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        return False
    return True


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """The torch device of ``name``: "auto" -> CUDA (this rank's GPU) when present, else CPU;
    "cuda" -> this rank's GPU; any other torch device string as it is. ConfigError when the
    string is not a device or torch cannot use that device here."""
    if not is_device(name):
        raise ConfigError(f"device must be {DEVICE_HELP}; got {name!r}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device("cuda", local_rank) if name == "cuda" else torch.device(name)
    backend = getattr(torch, device.type, None)
    found = backend.device_count() if hasattr(backend, "device_count") else 0
    if not (found and backend.is_available() and (device.index or 0) < found):
        raise ConfigError(
            f"device {name!r} was asked for, but torch sees {found} {device.type} device(s)"
        )
    return device


def _device_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not is_device(value):
        raise click.BadParameter(f"must be {DEVICE_HELP}; got {value!r}", ctx, param)
    return value


def device_option(default: str | None, help: str = "Overrides [run] device."):
    """The --device option of the commands that run the network: "auto" or a torch device."""
    return click.option(
        "--device",
        default=default,
        show_default=default is not None,
        callback=_device_value,
        metavar="DEVICE",
        help=f"{DEVICE_HELP}. {help}".strip(),
    )


def options(*decorators):
    """One decorator applying ``decorators`` in the order a command lists its options."""

    def decorate(command):
        for decorator in reversed(decorators):
            command = decorator(command)
        return command

    return decorate


def progress_options(quiet: str = "No progress bar or status lines."):
    """--progress/--no-progress and -q/--quiet (``quiet``: its help)."""
    return options(
        click.option("--progress/--no-progress", default=True, help="Show a progress bar."),
        click.option("-q", "--quiet", is_flag=True, help=quiet),
    )


WEIGHTS_OPTION = click.option(
    "--weights",
    type=click.Path(dir_okay=False),
    help="Network weights (.safetensors); default: the bundled model.",
)


def config_file_option(help: str):
    """The required --config FILE of the training commands."""
    return click.option(
        "--config", "config_path", required=True, type=click.Path(dir_okay=False), help=help
    )


def config_options(iterations: str, overrides: str):
    """--iterations, --device and --set of the training commands (their helps)."""
    return options(
        click.option("--iterations", type=click.IntRange(min=1), default=None, help=iterations),
        device_option(None),
        click.option(
            "--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE", help=overrides
        ),
    )


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (when enabled); a no-op context on CPU."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


@dataclasses.dataclass(frozen=True)
class Distributed:
    """This process's place in a torchrun job (rank 0 of 1 without torchrun)."""

    rank: int = 0
    local_rank: int = 0
    world: int = 1

    @classmethod
    def from_env(cls) -> Distributed:
        env = os.environ
        return cls(
            int(env.get("RANK", 0)), int(env.get("LOCAL_RANK", 0)), int(env.get("WORLD_SIZE", 1))
        )

    @property
    def main(self) -> bool:
        return self.rank == 0


@contextmanager
def process_group(device_name: str) -> Iterator[tuple[Distributed, torch.device]]:
    """This process's (Distributed, device) for a run on ``device_name``; under torchrun the
    process group (NCCL on CUDA, gloo on CPU) lives as long as the context."""
    ddp = Distributed.from_env()
    device = pick_device(device_name, ddp.local_rank)
    if ddp.world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield ddp, device
    finally:
        if ddp.world > 1:
            dist.destroy_process_group()
