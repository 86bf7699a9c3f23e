"""``rainsynth train``: the deraining network's recipe for the training loop (derain.loop).

Multi-GPU / multi-process: ``torchrun --nproc_per_node=K -m derain.train --config FILE`` (or
``torchrun ... $(which rainsynth) train --config FILE``). RANK, LOCAL_RANK and WORLD_SIZE come
from the environment; the backend is NCCL on CUDA and gloo on CPU; each rank takes its own slice
of every keyed global batch of K * batch_size clips.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import click
import torch

from derain.checkpoint import (
    FLOW_FORMAT,
    CheckpointError,
    load_state_dict,
    model_config_of,
    read_weights,
)
from derain.config import ConfigError, TrainConfig
from derain.data import KeyedClips, PairedClips, training_dataset
from derain.evaluate import score_dataset
from derain.inference import FrameDerainer
from derain.loop import Recipe, run_training
from derain.losses import derain_loss
from derain.model import VideoDerainer, build_model
from derain.runtime import Distributed, config_options, progress_options
from rainsynth.cli import Command


def load_flow_init(model: VideoDerainer, path: str | Path) -> None:
    """Load ``rainsynth pretrain-flow`` weights into the model's flow net (sizes must match)."""
    tensors, metadata = read_weights(path, kind=FLOW_FORMAT)
    stored = model_config_of(metadata, path)
    if stored.size != model.config.size:
        raise CheckpointError(
            f"flow weights {path} are for size {stored.size!r}, the model is {model.config.size!r}"
        )
    load_state_dict(model.flownet, tensors, path)


class DerainRecipe(Recipe):
    """The whole network (its flow net from ``[run] flow_init`` when set) on the rain/clean clips
    of ``[data]``, with derain_loss weighted by ``[loss]``."""

    def __init__(self, config: TrainConfig):
        terms = ["total", *(k for k, v in config.loss.to_dict().items() if v)]
        super().__init__(config, terms, {"train_config": config.to_dict()})

    def network(self) -> VideoDerainer:
        self.net = build_model(self.config.model)
        if self.config.run.flow_init:
            load_flow_init(self.net, self.config.run.flow_init)
        return self.net

    def dataset(self) -> KeyedClips:
        """ConfigError when a loss that needs the rain layers (L_Var, L_Streak-Free) meets clips
        without them (paired folders)."""
        model, loss = self.config.model, self.config.loss
        data = training_dataset(
            self.config.data, self.config.run.seed, model.frame_context, model.row_position
        )
        if isinstance(data, PairedClips) and (loss.var or loss.streak_free):
            bare = next((c for c in data.clips if not c.has_layers), None)
            if bare is not None:
                raise ConfigError(
                    f"[data] datasets: {bare.path} has no rain layers (a paired folder), which "
                    "loss.var and loss.streak_free need; set both to 0 to train on it"
                )
        return data

    def loss(self, model, batch):
        outputs = model(batch["rain"], batch.get("rain_context"), batch.get("rows"))
        return derain_loss(outputs, batch, self.config.loss, model=self.net)

    def evaluate(self, net: torch.nn.Module, done: int, device: torch.device) -> str | None:
        """Mean Y PSNR/SSIM on ``[data] eval_clips`` clips of ``eval_dataset`` (spread over its
        presets) every ``[run] eval_every`` iterations; appended to eval.csv."""
        data, run = self.config.data, self.config.run
        if not (run.eval_every and data.eval_dataset and done % run.eval_every == 0):
            return None
        report = score_dataset(
            data.eval_dataset,
            split=data.eval_split,
            method="model",
            derainer=FrameDerainer(net.eval(), device),
            max_clips=data.eval_clips,
            consistency=False,
            progress=False,
        )
        psnr, ssim = report["mean"]["psnr"], report["mean"]["ssim"]
        path = Path(run.out) / "eval.csv"
        new = not path.exists()
        with open(path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(["iteration", "psnr", "ssim"])
            writer.writerow([done, f"{psnr:.4f}", f"{ssim:.6f}"])
        return f"iteration {done}: eval PSNR {psnr:.2f} dB, SSIM {ssim:.4f}"

    def final_extra(self, seconds: float, device: torch.device) -> dict:
        return {**self.extra, "seconds": f"{seconds:.1f}", "device": str(device)}


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train as ``config`` says; returns the path of the final model.safetensors."""
    return run_training(DerainRecipe(config), config.run.out, resume=resume, progress=progress)


_EPILOG = """\b
Examples:
  rainsynth build --out data/rain                         # a dataset to train from
  rainsynth train --config derain/configs/small.toml      # CPU-trainable size
  rainsynth train --config derain/configs/small.toml --resume
  rainsynth train --config derain/configs/small.toml --set model.variant=v2 --out runs/v2
  torchrun --nproc_per_node=4 -m derain.train --config derain/configs/paper.toml
"""


@click.command("train", cls=Command, epilog=_EPILOG)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="TOML config: [model], [loss], [data], [optim], [run] (see derain/configs/).",
)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue from the newest checkpoint of the run folder. A changed config is recorded "
    "as config.NNNNNNNN.toml (config.toml stays).",
)
@click.option(
    "-o",
    "--out",
    type=click.Path(),
    help="Run folder, new or empty unless --resume (overrides [run] out).",
)
@config_options(
    "Total iterations (overrides [optim]).",
    "Override any config entry, TOML syntax (repeatable), e.g. --set optim.lr=1e-4.",
)
@progress_options()
def train_command(config_path, resume, out, iterations, device, overrides, progress, quiet) -> None:
    """Train the deraining network from a TOML config.

    Uses CUDA when present (bf16 autocast), else the CPU. Writes checkpoints every
    [run] checkpoint_every iterations, a CSV log, and the final weights RUN/model.safetensors,
    which `rainsynth test --weights` and `rainsynth derain --weights` take.
    """
    given = {"run.out": out, "optim.iterations": iterations, "run.device": device}
    config = TrainConfig.load(config_path, overrides, given)
    final = train(config, resume=resume, progress=progress and not quiet)
    if Distributed.from_env().main and not quiet:
        click.echo(f"wrote {final}")


def main(argv: list[str] | None = None) -> Any:
    """Entry point of ``python -m derain.train`` (for torchrun), with the exit codes of
    ``rainsynth train``."""
    return train_command.main(
        args=argv, prog_name="derain.train", auto_envvar_prefix="RAINSYNTH_TRAIN"
    )


if __name__ == "__main__":
    main()
