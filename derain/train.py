"""The recipes for the training loop (derain.loop): ``rainsynth train``, the deraining network,
and ``rainsynth pretrain-flow``, MF-AlignNet's flow network alone on clean clips.

Multi-GPU / multi-process: ``torchrun --nproc_per_node=K -m derain.train --config FILE`` (or
``torchrun ... $(which rainsynth) train --config FILE``). RANK, LOCAL_RANK and WORLD_SIZE come
from the environment; the backend is NCCL on CUDA and gloo on CPU; each rank takes its own slice
of every keyed global batch of K * batch_size clips.

Flow pretraining: no flow weights can be downloaded, so the pyramid flow net (derain.flownet)
learns from scratch, on every consecutive pair (t-1, t) of each clip: "supervised" (end-point
error against the exact backward flow, derain.losses.flow_loss_supervised), "photometric"
(self-supervised: backward-warped frame t-1 against frame t plus edge-aware smoothness,
derain.losses.flow_loss_photometric) or "both" (their sum; samples without flow get the
photometric term only). ``--clips source``: [data] online_source's clips (builtin: a supervised
term uses only its synthetic clips, which have exact flow); ``--clips datasets``: the clean
frames of [data] datasets ("supervised" keeps the clips whose flow they store). Use ``datasets``
to keep the test split's scenes out of pretraining: the builtin source lists every photo,
held-out ones included. The config's [model] size, [data] frames / crop / batch_size / workers /
flips, [optim] and [run] seed and device apply. OUT/flow.safetensors initialises a training run:
``[run] flow_init``.
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
from derain.data import (
    Augment,
    KeyedClips,
    PairedClips,
    SourceClips,
    config_clips,
    training_dataset,
)
from derain.evaluate import score_dataset
from derain.inference import FrameDerainer
from derain.loop import Recipe, run_training
from derain.losses import derain_loss, flow_loss_photometric, flow_loss_supervised
from derain.model import VideoDerainer, build_flownet, build_model
from derain.runtime import Distributed, config_file_option, config_options, progress_options
from rainsynth.cli import Command

MODES = ("supervised", "photometric", "both")
CLIPS = ("source", "datasets")


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
@config_file_option("TOML config: [model], [loss], [data], [optim], [run] (see derain/configs/).")
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


def flow_terms(
    flownet: torch.nn.Module, batch: dict[str, torch.Tensor], mode: str
) -> tuple[torch.Tensor, dict[str, float]]:
    """Loss of one batch: clean clips "clean" (N,T,3,H,W), optional "flow" (N,T-1,2,H,W)."""
    clean = batch["clean"]
    n, t, c, h, w = clean.shape
    prev, cur = (frames.reshape(n * (t - 1), c, h, w) for frames in (clean[:, :-1], clean[:, 1:]))
    flow = flownet(prev, cur).float()
    terms: dict[str, torch.Tensor] = {}
    gt = batch.get("flow")
    if gt is not None:
        gt = gt.reshape(n * (t - 1), 2, h, w)
        valid = batch.get("flow_valid", torch.ones(n, dtype=torch.bool, device=gt.device))
        valid = valid.repeat_interleave(t - 1)
        epe = torch.linalg.vector_norm(flow.detach() - gt, dim=1).mean(dim=(1, 2))
        terms["epe"] = epe[valid].mean()
        if mode in ("supervised", "both"):
            terms["supervised"] = flow_loss_supervised(flow, gt, valid)
    elif mode == "supervised":
        raise ConfigError(
            "supervised flow pretraining needs clips with exact flow (the builtin source)"
        )
    if mode in ("photometric", "both"):
        terms["photometric"] = flow_loss_photometric(flow, prev, cur)
    total = sum(v for k, v in terms.items() if k != "epe")
    return total, {k: float(v.detach()) for k, v in {**terms, "total": total}.items()}


class FlowRecipe(Recipe):
    """MF-AlignNet's flow net alone on clean clips, with the flow losses of ``mode``."""

    weights = "flow.safetensors"
    kind = FLOW_FORMAT
    records_config = False

    def __init__(self, config: TrainConfig, mode: str, clips: str):
        terms = ["total", "epe", *(t for t in ("supervised", "photometric") if mode in (t, "both"))]
        extra = {"pretrain": {"mode": mode, "clips": clips, "config": config.to_dict()}}
        super().__init__(config, terms, extra)
        self.mode, self.clips = mode, clips

    def network(self) -> torch.nn.Module:
        flownet = build_flownet(self.config.model)
        multiple, crop = flownet.size_multiple, list(self.config.data.crop)
        if any(side % multiple for side in crop):
            raise ConfigError(
                f"[data] crop {crop} must be multiples of {multiple} for the flow net"
            )
        return flownet

    def dataset(self) -> KeyedClips:
        """Clean clips (with flow where known; module docstring), no temporal reversal."""
        data, seed = self.config.data, self.config.run.seed
        augment = Augment(data.hflip, data.vflip, reverse=False)
        if self.clips == "source":
            exact = self.mode != "photometric" and data.online_source == "builtin"
            return SourceClips(data, seed, augment, synthetic_only=exact)
        exact = self.mode == "supervised"
        return config_clips(data, seed, augment, clean_only=True, flow_only=exact)

    def loss(self, model, batch):
        return flow_terms(model, batch, self.mode)

    def postfix(self, means: dict[str, float], lr: float) -> dict[str, str]:
        return {"loss": f"{means['total']:.4f}", "epe": f"{means.get('epe', 0):.3f}"}


def pretrain_flow(
    config: TrainConfig,
    out: str | Path,
    *,
    mode: str = "both",
    clips: str = "source",
    resume: bool = False,
    progress: bool = True,
) -> Path:
    """Pretrain the flow net of ``config.model``'s size; returns OUT/flow.safetensors."""
    return run_training(FlowRecipe(config, mode, clips), out, resume=resume, progress=progress)


_FLOW_EPILOG = """\b
Examples:
  rainsynth pretrain-flow --config derain/configs/small.toml --out runs/flow --iterations 2000
  rainsynth pretrain-flow --config derain/configs/small.toml --out runs/flow --mode photometric
  rainsynth train --config derain/configs/small.toml --set run.flow_init=runs/flow/flow.safetensors
"""


@click.command("pretrain-flow", cls=Command, epilog=_FLOW_EPILOG)
@config_file_option(
    "The training config: its [model] size, [data], [optim] and [run] seed/device are used."
)
@click.option(
    "-o",
    "--out",
    required=True,
    type=click.Path(),
    help="Output folder (flow.safetensors, log.csv, checkpoints), new or empty unless --resume.",
)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="both",
    show_default=True,
    help="supervised: exact flow; photometric: self-supervised warping + smoothness; both.",
)
@click.option(
    "--clips",
    type=click.Choice(CLIPS),
    default="source",
    show_default=True,
    help="source: [data] online_source clips (builtin: exact flow); datasets: [data] datasets.",
)
@config_options(
    "Iterations (default: [optim]'s).", "Override a config entry (TOML value), repeatable."
)
@click.option("--resume", is_flag=True, help="Continue from the newest checkpoint in --out.")
@progress_options()
def pretrain_flow_command(
    config_path, out, mode, clips, iterations, device, overrides, resume, progress, quiet
) -> None:
    """Pretrain the flow network of MF-AlignNet on clean clips (supervised and/or photometric).

    Writes OUT/flow.safetensors; point a training config's [run] flow_init at it.
    """
    given = {"optim.iterations": iterations, "run.device": device}
    config = TrainConfig.load(config_path, overrides, given)
    final = pretrain_flow(
        config, out, mode=mode, clips=clips, resume=resume, progress=progress and not quiet
    )
    if not quiet:
        click.echo(f"wrote {final}")


def main(argv: list[str] | None = None) -> Any:
    """Entry point of ``python -m derain.train`` (for torchrun), with the exit codes of
    ``rainsynth train``."""
    return train_command.main(
        args=argv, prog_name="derain.train", auto_envvar_prefix="RAINSYNTH_TRAIN"
    )


if __name__ == "__main__":
    main()
