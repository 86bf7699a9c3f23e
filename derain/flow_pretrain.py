"""``rainsynth pretrain-flow``: train MF-AlignNet's flow network alone, on clean clips.

No flow weights can be downloaded, so the pyramid flow net (derain.flownet) learns from scratch,
on every consecutive pair (t-1, t) of each clip: "supervised" (end-point error against the exact
backward flow, derain.losses.flow_loss_supervised), "photometric" (self-supervised: backward-warped
frame t-1 against frame t plus edge-aware smoothness, derain.losses.flow_loss_photometric) or
"both" (their sum; samples without flow get the photometric term only).

``--clips source``: [data] online_source's clips (builtin: a supervised term uses only its
synthetic clips, which have exact flow); ``--clips datasets``: the clean frames of [data] datasets
("supervised" keeps the clips whose flow they store). Use ``datasets`` to keep the test split's
scenes out of pretraining: the builtin source lists every photo, held-out ones included. The
config's [model] size, [data] frames / crop / batch_size / workers / flips, [optim] and [run]
seed and device apply. OUT/flow.safetensors initialises a training run: ``[run] flow_init``.
"""

from __future__ import annotations

from pathlib import Path

import click
import torch

from derain.checkpoint import FLOW_FORMAT
from derain.config import ConfigError, TrainConfig
from derain.data import Augment, KeyedClips, SourceClips, config_clips
from derain.loop import Recipe, run_training
from derain.losses import flow_loss_photometric, flow_loss_supervised
from derain.model import build_flownet
from derain.runtime import config_options, progress_options
from rainsynth.cli import Command

MODES = ("supervised", "photometric", "both")
CLIPS = ("source", "datasets")


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
        if mode not in MODES or clips not in CLIPS:
            raise ConfigError(f"mode must be one of {MODES} and clips one of {CLIPS}")
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


_EPILOG = """\b
Examples:
  rainsynth pretrain-flow --config derain/configs/small.toml --out runs/flow --iterations 2000
  rainsynth pretrain-flow --config derain/configs/small.toml --out runs/flow --mode photometric
  rainsynth train --config derain/configs/small.toml --set run.flow_init=runs/flow/flow.safetensors
"""


@click.command("pretrain-flow", cls=Command, epilog=_EPILOG)
@click.option(
    "--config",
    "config_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="The training config: its [model] size, [data], [optim] and [run] seed/device are used.",
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
