"""``rainsynth train``: the training loop of the deraining network, resumable and DDP-ready.

One iteration: a batch of clips (derain.data, keyed by (seed, iteration)), the network over each
clip (VideoDerainer.forward, bf16 autocast on CUDA), derain_loss, AdamW with gradient clipping
and a warmup + cosine/step schedule. Every ``checkpoint_every`` iterations the run folder gets
``checkpoints/iter_NNNNNNNN.safetensors`` (weights) and ``.state.pt`` (optimizer, scheduler, RNG
states, iteration, elapsed time); at the end ``model.safetensors``. ``--resume`` continues from
the newest checkpoint and, on CPU with the same torch thread count, ends with bitwise the same
weights as a run never stopped: the data order is keyed by (seed, iteration), so the iteration
is the data loader's position, and nothing else carries state between iterations.

Run folder: config.toml (the resolved config), log.csv (iteration, total, each loss term, lr,
seconds since the start of training), eval.csv (when evaluating), tb/ (TensorBoard, if
installed), checkpoints/, model.safetensors. ``--out`` must be a new or empty folder; only
``--resume`` continues in a run folder, and nothing else writes into one. A resumed run whose
config differs from the one recorded keeps config.toml as it is (the config the run started
with) and writes the new one to config.NNNNNNNN.toml, NNNNNNNN the iteration it applies from.

Multi-GPU / multi-process: ``torchrun --nproc_per_node=K -m derain.train --config FILE``
(or ``torchrun ... $(which rainsynth) train --config FILE``). RANK, LOCAL_RANK and WORLD_SIZE
come from the environment; the backend is NCCL on CUDA and gloo on CPU; each rank takes its own
slice of every keyed global batch of K * batch_size clips.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import click
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from derain.checkpoint import (
    FLOW_FORMAT,
    CheckpointError,
    list_checkpoints,
    load_state_dict,
    model_config_of,
    read_weights,
    resume_checkpoint,
    save_checkpoint,
    save_weights,
)
from derain.config import DEVICE_HELP, ConfigError, TrainConfig, is_device
from derain.data import KeyedBatchSampler, PairedClips, make_loader, training_dataset
from derain.losses import derain_loss
from derain.model import VideoDerainer, build_model
from rainsynth.cli import Command
from rainsynth.errors import RunError
from rainsynth.outputs import check_output

RUN_FILES = ("config.toml", "log.csv", "eval.csv", "tb", "checkpoints", "model.safetensors",
             "flow.safetensors")  # fmt: skip
"""What rainsynth train and pretrain-flow write into a run folder (besides config changes)."""
_CONFIG_CHANGE = re.compile(r"config\.\d{8}\.toml")


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


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (when enabled); a no-op context on CPU."""
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return nullcontext()


class TrainingError(RunError):
    """Training cannot go on (a non-finite gradient)."""


def clip_gradients(module: torch.nn.Module, max_norm: float) -> None:
    """Scale the gradients of ``module`` to a global norm of at most max_norm (0: leave them).

    A NaN or infinite gradient raises TrainingError before the optimiser can write it into the
    weights (where the next forward pass would fail far from the cause).
    """
    params = [p for p in module.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else math.inf)
    if not torch.isfinite(norm):
        raise TrainingError(
            f"the gradient norm is {float(norm)}: the loss or the network produced NaN or inf. "
            "The weights were not updated; resume from the last checkpoint with a lower optim.lr "
            "or [run] amp = false"
        )


def flush_denormals() -> None:
    """Flush float32 values below the normal range (1.2e-38) to zero, for the whole process.

    Gradients that decay that far are worthless but make the CPU's convolution kernels many
    times slower: one ablation went from 0.7 to 3.3 s/iteration without it.
    """
    torch.set_flush_denormal(True)


def train_step(
    model: torch.nn.Module,
    batch: dict[str, torch.Tensor],
    config: TrainConfig,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
) -> dict[str, float]:
    """One update on one batch (tensors on ``device``); returns the loss terms (floats)."""
    net = model.module if isinstance(model, DistributedDataParallel) else model
    optimizer.zero_grad(set_to_none=True)
    with autocast(device, config.run.amp):
        outputs = model(batch["rain"], batch.get("rain_context"), batch.get("rows"))
        loss, terms = derain_loss(outputs, batch, config.loss, model=net)
    loss.backward()
    clip_gradients(net, config.optim.grad_clip)
    optimizer.step()
    return terms


def check_layers(dataset, config: TrainConfig) -> None:
    """ConfigError when a loss that needs the rain layers (L_Var, L_Streak-Free) meets clips
    without them (paired folders)."""
    if not isinstance(dataset, PairedClips) or not (config.loss.var or config.loss.streak_free):
        return
    bare = next((c for c in dataset.clips if not c.has_layers), None)
    if bare is not None:
        raise ConfigError(
            f"[data] datasets: {bare.path} has no rain layers (a paired folder), which "
            "loss.var and loss.streak_free need; set both to 0 to train on it"
        )


def make_optimizer(model: torch.nn.Module, config: TrainConfig):
    """AdamW over the trainable parameters and its LambdaLR schedule (OptimConfig.lr_factor)."""
    optim = config.optim
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, optim.lr_factor)
    return optimizer, scheduler


def load_flow_init(model: VideoDerainer, path: str | Path) -> None:
    """Load ``rainsynth pretrain-flow`` weights into the model's flow net (sizes must match)."""
    tensors, metadata = read_weights(path, kind=FLOW_FORMAT)
    stored = model_config_of(metadata, path)
    if stored.size != model.config.size:
        raise CheckpointError(
            f"flow weights {path} are for size {stored.size!r}, the model is {model.config.size!r}"
        )
    load_state_dict(model.flownet, tensors, path)


class RunLog:
    """log.csv (and TensorBoard when installed) of one run, written by rank 0."""

    def __init__(self, out: Path, terms: list[str], start: int):
        self.path = out / "log.csv"
        self.fields = ["iteration", *terms, "lr", "seconds"]
        self.terms = terms
        _truncate_csv(self.path, start)
        _truncate_csv(out / "eval.csv", start)
        new = not self.path.exists()
        self.handle = open(self.path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self.writer = csv.DictWriter(self.handle, self.fields)
        if new:
            self.writer.writeheader()
        self.sums: dict[str, list[float]] = {}
        self.board = _tensorboard(out / "tb")

    def add(self, terms: dict[str, float]) -> None:
        for key, value in terms.items():
            self.sums.setdefault(key, []).append(value)

    def write(self, iteration: int, lr: float, seconds: float) -> dict[str, float]:
        """Write the means since the last row; returns them."""
        means = {k: sum(v) / len(v) for k, v in self.sums.items() if k in self.terms}
        row = {"iteration": iteration, **{k: f"{v:.6g}" for k, v in means.items()}}
        self.writer.writerow({**row, "lr": f"{lr:.6g}", "seconds": f"{seconds:.2f}"})
        self.handle.flush()
        if self.board is not None:
            for key, value in means.items():
                self.board.add_scalar(f"loss/{key}", value, iteration)
            self.board.add_scalar("lr", lr, iteration)
        self.sums = {}
        return means

    def close(self) -> None:
        self.handle.close()
        if self.board is not None:
            self.board.close()


def _tensorboard(folder: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


def _truncate_csv(path: Path, iteration: int) -> None:
    """Drop rows past ``iteration`` (written by a killed run after its last checkpoint).

    RunError, before anything is written, when a row does not start with an iteration."""
    if not path.exists():
        return
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    bad = [i for i, r in enumerate(rows[1:], 2) if r and not r[0].isdigit()]
    if bad:
        raise RunError(f"{path} line {bad[0]} does not start with an iteration: not a run log")
    kept = rows[:1] + [r for r in rows[1:] if r and int(r[0]) <= iteration]
    if len(kept) != len(rows):
        with open(path, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows(kept)


def _evaluate(model: VideoDerainer, config: TrainConfig, device: torch.device) -> dict[str, float]:
    """Mean Y PSNR/SSIM of the model on eval_clips held-out clips (spread over presets)."""
    from derain.evaluate import score_dataset

    data = config.data
    report = score_dataset(
        data.eval_dataset,
        split=data.eval_split,
        method="model",
        model=model,
        device=device,
        max_clips=data.eval_clips,
        consistency=False,
        progress=False,
    )
    return {k: report["mean"][k] for k in ("psnr", "ssim")}


def _write_eval(out: Path, iteration: int, scores: dict[str, float]) -> None:
    path = out / "eval.csv"
    new = not path.exists()
    with open(path, "a", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        if new:
            writer.writerow(["iteration", "psnr", "ssim"])
        writer.writerow([iteration, f"{scores['psnr']:.4f}", f"{scores['ssim']:.6f}"])


def check_run_folder(out: Path, resume: bool) -> None:
    """ConfigError unless a run may write into ``out``: a new or empty folder, or with
    ``resume`` a folder holding only what a run writes (RUN_FILES, config changes) and a
    complete checkpoint to continue from."""
    check_output(out, what="--out")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the run")
    entries = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    foreign = [
        name
        for name in entries
        if name not in RUN_FILES and not _CONFIG_CHANGE.fullmatch(name) and not name.startswith(".")
    ]
    if foreign:
        raise ConfigError(
            f"--out {out} holds {', '.join(foreign[:5])}, which a training run does not write: "
            "it is not a run folder; give a new or empty folder"
        )
    if entries and not resume:
        raise ConfigError(
            f"--out {out} already holds {', '.join(entries[:5])}: pass --resume to continue "
            "the run there, or give a new or empty folder"
        )
    if resume and not list_checkpoints(out / "checkpoints"):
        raise ConfigError(f"--resume: {out} holds no complete checkpoint to continue from")


def record_config(out: Path, text: str, start: int) -> None:
    """Write the run's config: config.toml for a new run; on resume, config.<start>.toml when
    ``text`` differs from the newest config recorded (config.toml is never rewritten)."""
    changes = sorted(p for p in out.glob("config.*.toml") if _CONFIG_CHANGE.fullmatch(p.name))
    newest = changes[-1] if changes else out / "config.toml"
    if not newest.exists():
        newest.write_text(text, encoding="utf-8")
    elif newest.read_text(encoding="utf-8") != text:
        (out / f"config.{start:08d}.toml").write_text(text, encoding="utf-8")


def train(config: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    """Train as ``config`` says; returns the path of the final model.safetensors."""
    flush_denormals()
    ddp = Distributed.from_env()
    device = pick_device(config.run.device, ddp.local_rank)
    if ddp.world > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        return _train(config, ddp, device, resume, progress)
    finally:
        if ddp.world > 1:
            dist.destroy_process_group()


def _train(
    config: TrainConfig, ddp: Distributed, device: torch.device, resume: bool, progress: bool
) -> Path:
    out = Path(config.run.out)
    folder = out / "checkpoints"
    if ddp.main:
        check_run_folder(out, resume)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(config.run.seed)
    model = build_model(config.model).to(device)
    if config.run.flow_init:
        load_flow_init(model, config.run.flow_init)
    optimizer, scheduler = make_optimizer(model, config)
    start, elapsed = 0, 0.0
    if resume:
        start, elapsed = resume_checkpoint(
            folder, model, config.model.to_dict(), optimizer, scheduler
        )
    total = config.optim.iterations
    if start > total:
        raise ConfigError(f"the newest checkpoint of {out} is at iteration {start}, past {total}")
    if ddp.main:
        out.mkdir(parents=True, exist_ok=True)
    net = model
    if ddp.world > 1:
        model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    dataset = training_dataset(
        config.data, config.run.seed, config.model.frame_context, config.model.row_position
    )
    check_layers(dataset, config)
    sampler = KeyedBatchSampler(
        dataset.num_clips,
        config.data.batch_size,
        config.run.seed,
        start,
        total,
        ddp.rank,
        ddp.world,
    )
    loader = make_loader(dataset, sampler, config.data.workers, device.type == "cuda")
    terms = ["total", *(k for k, v in config.loss.to_dict().items() if v)]
    log = RunLog(out, terms, start) if ddp.main else None
    if ddp.main:
        record_config(out, config.to_toml(), start)
    bar = tqdm(total=total, initial=start, disable=not (progress and ddp.main), unit="it")
    clock = time.perf_counter() - elapsed
    try:
        model.train()
        for iteration, batch in zip(range(start, total), loader, strict=True):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            lr = optimizer.param_groups[0]["lr"]
            step_terms = train_step(model, batch, config, optimizer, device)
            scheduler.step()
            done = iteration + 1
            bar.update(1)
            if log is not None:
                log.add(step_terms)
                if done % config.run.log_every == 0 or done == total:
                    means = log.write(done, lr, time.perf_counter() - clock)
                    bar.set_postfix(loss=f"{means['total']:.4f}", lr=f"{lr:.2e}")
            if (
                config.run.eval_every
                and config.data.eval_dataset
                and done % config.run.eval_every == 0
            ):
                if ddp.main:
                    scores = _evaluate(net, config, device)
                    _write_eval(out, done, scores)
                    bar.write(
                        f"iteration {done}: eval PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}"
                    )
                    model.train()
            if done % config.run.checkpoint_every == 0 or done == total:
                if ddp.main:
                    save_checkpoint(
                        folder,
                        done,
                        net,
                        config.model.to_dict(),
                        optimizer,
                        scheduler,
                        elapsed=time.perf_counter() - clock,
                        keep=config.run.keep_checkpoints,
                        extra={"train_config": config.to_dict()},
                    )
                if ddp.world > 1:
                    dist.barrier()
    finally:
        bar.close()
        if log is not None:
            log.close()
    final = out / "model.safetensors"
    if ddp.main:
        seconds = time.perf_counter() - clock
        extra = {
            "train_config": config.to_dict(),
            "seconds": f"{seconds:.1f}",
            "device": str(device),
        }
        save_weights(final, net.state_dict(), config.model.to_dict(), iteration=total, extra=extra)
    return final


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
    default=None,
    type=click.Path(),
    help="Run folder, new or empty unless --resume (overrides [run] out).",
)
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Total iterations (overrides [optim]).")  # fmt: skip
@device_option(None)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="SECTION.KEY=VALUE",
    help="Override any config entry, TOML syntax (repeatable), e.g. --set optim.lr=1e-4.",
)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or status lines.")
def train_command(
    config_path: str,
    resume: bool,
    out: str | None,
    iterations: int | None,
    device: str | None,
    overrides: tuple[str, ...],
    progress: bool,
    quiet: bool,
) -> None:
    """Train the deraining network from a TOML config.

    Uses CUDA when present (bf16 autocast), else the CPU. Writes checkpoints every
    [run] checkpoint_every iterations, a CSV log, and the final weights RUN/model.safetensors,
    which `rainsynth test --weights` and `rainsynth derain --weights` take.
    """
    extra = list(overrides)
    extra += [f"run.out={json.dumps(out)}"] if out is not None else []
    extra += [f"optim.iterations={iterations}"] if iterations is not None else []
    extra += [f'run.device="{device}"'] if device is not None else []
    config = TrainConfig.load(config_path, extra)
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
