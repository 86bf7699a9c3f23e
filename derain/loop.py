"""The resumable training loop that ``rainsynth train`` and ``rainsynth pretrain-flow`` share.

A :class:`Recipe` gives the network, the data and the loss; :func:`run_training` does the rest:
keyed batches (derain.keyed), bf16 autocast on CUDA, gradient clipping, AdamW with
OptimConfig.lr_factor's schedule, checkpoints (derain.checkpoint) every ``checkpoint_every``
iterations. ``resume`` continues from the newest checkpoint and, on CPU with the same torch
thread count, ends with bitwise the same weights as a run never stopped: the data order is keyed
by (seed, iteration), and nothing else carries state between iterations.

Run folder: config.toml (the resolved config, for recipes that record it), log.csv (iteration,
total, each loss term, lr, seconds since the start of training), eval.csv (when evaluating), tb/
(TensorBoard, if installed), checkpoints/, the weights. ``out`` must be a new or empty folder;
only ``resume`` continues in a run folder. A resumed run whose config differs from the newest
recorded writes it to config.NNNNNNNN.toml, NNNNNNNN the iteration it applies from. Under
torchrun (derain.runtime.process_group) rank 0 writes the run folder.
"""

from __future__ import annotations

import csv
import math
import re
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from derain.checkpoint import (
    MODEL_FORMAT,
    list_checkpoints,
    resume_checkpoint,
    save_checkpoint,
    save_weights,
)
from derain.config import ConfigError, TrainConfig
from derain.data import KeyedBatchSampler, KeyedClips, make_loader
from derain.runtime import Distributed, autocast, process_group
from rainsynth.errors import RunError
from rainsynth.outputs import check_output

try:  # optional: TensorBoard logs when it is installed
    from torch.utils.tensorboard import SummaryWriter
except ImportError:
    SummaryWriter = None

RUN_FILES = ("config.toml", "log.csv", "eval.csv", "tb", "checkpoints", "model.safetensors",
             "flow.safetensors")  # fmt: skip
"""What rainsynth train and pretrain-flow write into a run folder (besides config changes)."""
_CONFIG_CHANGE = re.compile(r"config\.\d{8}\.toml")


class TrainingError(RunError):
    """Training cannot go on (a non-finite gradient)."""


class Recipe:
    """What one kind of training supplies: its network, data and loss, and what it writes.
    weights: the file name of the final weights in the run folder; kind: their format
    (derain.checkpoint); terms: the log.csv columns after "iteration"; extra: metadata of every
    checkpoint; records_config: whether the run folder keeps config.toml."""

    weights = "model.safetensors"
    kind = MODEL_FORMAT
    records_config = True

    def __init__(self, config: TrainConfig, terms: list[str], extra: dict):
        self.config, self.terms, self.extra = config, terms, extra

    def network(self) -> torch.nn.Module:
        """The network to train, built right after the RNG is seeded."""
        raise NotImplementedError

    def dataset(self) -> KeyedClips:
        raise NotImplementedError

    def loss(
        self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(the loss to minimise, its terms as floats) of one batch; ``model`` is the network,
        or its DistributedDataParallel wrapper under torchrun."""
        raise NotImplementedError

    def postfix(self, means: dict[str, float], lr: float) -> dict[str, str]:
        """The progress bar's postfix after a log row."""
        return {"loss": f"{means['total']:.4f}", "lr": f"{lr:.2e}"}

    def evaluate(self, net: torch.nn.Module, done: int, device: torch.device) -> str | None:
        """Score ``net`` after ``done`` iterations when due (on rank 0); a line to show."""
        return None

    def final_extra(self, seconds: float, device: torch.device) -> dict:
        """Metadata of the final weights."""
        return self.extra


def clip_gradients(module: torch.nn.Module, max_norm: float) -> None:
    """Scale the gradients of ``module`` to a global norm of at most max_norm (0: leave them).
    A NaN or infinite gradient raises TrainingError before the optimiser can write it into the
    weights (where the next forward pass would fail far from the cause)."""
    params = [p for p in module.parameters() if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else math.inf)
    if not torch.isfinite(norm):
        raise TrainingError(
            f"the gradient norm is {float(norm)}: the loss or the network produced NaN or inf. "
            "The weights were not updated; resume from the last checkpoint with a lower optim.lr "
            "or [run] amp = false"
        )


class RunLog:
    """log.csv (and TensorBoard when installed) of one run from iteration ``start``, written by
    rank 0; ``config``: the run's config as TOML, to record. A new run records config.toml; a
    resumed one config.<start>.toml when the config differs from the newest recorded."""

    def __init__(self, out: Path, terms: list[str], start: int, config: str | None):
        self.terms, path = terms, out / "log.csv"
        _truncate_csv(path, start)
        _truncate_csv(out / "eval.csv", start)
        new = not path.exists()
        self.handle = open(path, "a", newline="", encoding="utf-8")  # noqa: SIM115
        self.writer = csv.DictWriter(self.handle, ["iteration", *terms, "lr", "seconds"])
        if new:
            self.writer.writeheader()
        self.sums: dict[str, list[float]] = {}
        self.board = None if SummaryWriter is None else SummaryWriter(str(out / "tb"))
        if config is not None:
            changes = sorted(
                p for p in out.glob("config.*.toml") if _CONFIG_CHANGE.fullmatch(p.name)
            )
            newest = changes[-1] if changes else out / "config.toml"
            if not newest.exists():
                newest.write_text(config, encoding="utf-8")
            elif newest.read_text(encoding="utf-8") != config:
                (out / f"config.{start:08d}.toml").write_text(config, encoding="utf-8")

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


def _truncate_csv(path: Path, iteration: int) -> None:
    """Drop rows past ``iteration`` (written by a killed run after its last checkpoint); RunError,
    before anything is written, when a row does not start with an iteration."""
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


def run_training(recipe: Recipe, out: str | Path, *, resume: bool, progress: bool) -> Path:
    """Train as ``recipe`` says into the run folder ``out``; returns the final weights' path."""
    # float32 values below 1.2e-38 (decayed gradients, worthless) slow the CPU's convolution
    # kernels many times over: one ablation went from 0.7 to 3.3 s/iteration; flush them to 0
    torch.set_flush_denormal(True)
    with process_group(recipe.config.run.device) as (ddp, device):
        return _run(recipe, Path(out), ddp, device, resume, progress)


def _run(
    recipe: Recipe, out: Path, ddp: Distributed, device: torch.device, resume: bool, progress: bool
) -> Path:
    config, folder = recipe.config, out / "checkpoints"
    if ddp.main:
        check_run_folder(out, resume)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(config.run.seed)
    net, optim = recipe.network().to(device), config.optim
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=optim.lr, betas=tuple(optim.betas), weight_decay=optim.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, optim.lr_factor)
    model_config, start, elapsed = config.model.to_dict(), 0, 0.0
    if resume:
        start, elapsed = resume_checkpoint(
            folder, net, model_config, optimizer, scheduler, kind=recipe.kind
        )
    total = config.optim.iterations
    if start > total:
        raise ConfigError(f"the newest checkpoint of {out} is at iteration {start}, past {total}")
    if ddp.main:
        out.mkdir(parents=True, exist_ok=True)
    ids = [device.index] if device.type == "cuda" else None
    model = DistributedDataParallel(net, device_ids=ids) if ddp.world > 1 else net
    dataset = recipe.dataset()
    size, seed = config.data.batch_size, config.run.seed
    sampler = KeyedBatchSampler(dataset.num_clips, size, seed, start, total, ddp.rank, ddp.world)
    loader = make_loader(dataset, sampler, config.data.workers, device.type == "cuda")
    text = config.to_toml() if recipe.records_config else None
    log = RunLog(out, recipe.terms, start, text) if ddp.main else None
    bar = tqdm(total=total, initial=start, disable=not (progress and ddp.main), unit="it")
    clock = time.perf_counter() - elapsed
    try:
        model.train()
        for iteration, batch in zip(range(start, total), loader, strict=True):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            lr = optimizer.param_groups[0]["lr"]
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, config.run.amp):
                loss, terms = recipe.loss(model, batch)
            loss.backward()
            clip_gradients(net, optim.grad_clip)
            optimizer.step()
            scheduler.step()
            done = iteration + 1
            bar.update(1)
            if log is not None:
                log.add(terms)
                if done % config.run.log_every == 0 or done == total:
                    means = log.write(done, lr, time.perf_counter() - clock)
                    bar.set_postfix(recipe.postfix(means, lr))
            line = recipe.evaluate(net, done, device) if ddp.main else None
            if line is not None:
                bar.write(line)
                model.train()
            if done % config.run.checkpoint_every == 0 or done == total:
                if ddp.main:
                    save_checkpoint(
                        folder,
                        done,
                        net,
                        model_config,
                        optimizer,
                        scheduler,
                        elapsed=time.perf_counter() - clock,
                        keep=config.run.keep_checkpoints,
                        kind=recipe.kind,
                        extra=recipe.extra,
                    )
                if ddp.world > 1:
                    dist.barrier()
    finally:
        bar.close()
        if log is not None:
            log.close()
    final = out / recipe.weights
    if ddp.main:
        extra = recipe.final_extra(time.perf_counter() - clock, device)
        save_weights(
            final, net.state_dict(), model_config, iteration=total, kind=recipe.kind, extra=extra
        )
    return final
