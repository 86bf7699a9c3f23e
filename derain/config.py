"""Training configuration: one TOML file of five sections, each a frozen dataclass (derain.section)
checked when built: [model] derain.model.ModelConfig (plus ``variant = "v1".."v5"``: start from
an ablation), [loss] derain.losses.LossConfig, [data], [optim], [run]. Relative paths in the file
(datasets, out, flow_init) are taken relative to the current working directory.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from derain.losses import LossConfig
from derain.model import ModelConfig
from derain.runtime import DEVICE_HELP, is_device
from derain.section import ConfigError, Section
from rainsynth.tomlfile import loads_toml

SCHEDULES = ("cosine", "step", "constant")


@dataclass(frozen=True)
class DataConfig(Section):
    """Where training clips come from and how they are cut. datasets: folders built by
    ``rainsynth build``, or paired folders (rainsynth.paired: no layers, so only with var =
    streak_free = 0) (ignored when online); split: which split of them; presets: which presets
    (empty = all). frames: clip length T; crop: (H, W) random crop; hflip / vflip / reverse:
    random horizontal flip, vertical flip (off by default: rain falls down), temporal reversal.
    cache: keep the built datasets' clips in memory, 8-bit, after their first read (about 8 MB
    per 7-frame 448x256 clip and data worker). online: render fresh rain every epoch over clean
    clips of ``online_source`` (its folder ``online_root``, "" for builtin; ``online_clips``
    builtin synthetic clips; frames resized to ``online_size``) with ``online_presets``.
    eval_dataset: a built dataset scored every ``run.eval_every`` iterations on its
    ``eval_split`` (``eval_clips`` clips spread over its presets); empty = no evaluation."""

    datasets: tuple[str, ...] = ()
    split: str = "train"
    presets: tuple[str, ...] = ()
    frames: int = 5
    crop: tuple[int, int] = (64, 64)
    batch_size: int = 4
    workers: int = 0
    hflip: bool = True
    vflip: bool = False
    reverse: bool = True
    cache: bool = False
    online: bool = False
    online_source: str = "builtin"
    online_root: str = ""
    online_presets: tuple[str, ...] = ("light", "heavy")
    online_clips: int = 64
    online_size: tuple[int, int] = (128, 128)
    eval_dataset: str = ""
    eval_split: str = "test"
    eval_clips: int = 4

    def __post_init__(self) -> None:
        self.at_least(frames=2)
        crop = list(self.crop)
        self.check(len(crop) == 2 and min(crop) >= 8, "crop", "[H, W], each >= 8", crop)
        self.at_least(batch_size=1, workers=0, online_clips=1, eval_clips=1)
        if self.online:
            size = self.online_size
            size_ok = len(size) == 2 and all(s >= c for s, c in zip(size, crop, strict=False))
            self.check(size_ok, "online_size", f"[H, W], each >= crop {crop}", size)
            self.check(bool(self.online_presets), "online_presets", "a non-empty list", [])
        else:
            self.check(bool(self.datasets), "datasets", "a non-empty list (or online = true)", [])
        paths = all(isinstance(d, str) for d in self.datasets)
        self.check(paths, "datasets", "folder paths", self.datasets)


@dataclass(frozen=True)
class OptimConfig(Section):
    """AdamW and its learning-rate schedule. schedule: "cosine" (from lr down to lr *
    min_lr_ratio), "step" (times gamma every step_every iterations) or "constant"; all after a
    linear warmup of ``warmup`` iterations. grad_clip: max global gradient norm (0 = off)."""

    lr: float = 2e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    iterations: int = 2000
    schedule: str = "cosine"
    warmup: int = 0
    min_lr_ratio: float = 0.01
    step_every: int = 1000
    gamma: float = 0.5
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        self.check(self.lr > 0 and math.isfinite(self.lr), "lr", "a positive number", self.lr)
        self.check(
            len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
            "betas",
            "[b1, b2] in [0, 1)",
            self.betas,
        )
        self.check(self.weight_decay >= 0, "weight_decay", "a number >= 0", self.weight_decay)
        self.at_least(iterations=1)
        self.check(self.schedule in SCHEDULES, "schedule", f"one of {SCHEDULES}", self.schedule)
        self.at_least(warmup=0)
        self.check(0 <= self.min_lr_ratio <= 1, "min_lr_ratio", "in [0, 1]", self.min_lr_ratio)
        self.at_least(step_every=1)
        self.check(0 < self.gamma <= 1, "gamma", "in (0, 1]", self.gamma)
        self.check(self.grad_clip >= 0, "grad_clip", "a number >= 0 (0 = off)", self.grad_clip)

    def lr_factor(self, iteration: int) -> float:
        """Multiplier of ``lr`` for the update made at 0-based ``iteration``."""
        if iteration < self.warmup:
            return (iteration + 1) / self.warmup
        if self.schedule == "step":
            return self.gamma ** ((iteration - self.warmup) // self.step_every)
        if self.schedule == "cosine":
            span = max(self.iterations - self.warmup, 1)
            progress = min((iteration - self.warmup) / span, 1.0)
            cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
            return self.min_lr_ratio + (1.0 - self.min_lr_ratio) * cosine
        return 1.0


@dataclass(frozen=True)
class RunConfig(Section):
    """Output, seed and cadence. out: the run folder (derain.loop). checkpoint_every /
    log_every / eval_every: in iterations (eval_every = 0: no evaluation); keep_checkpoints: how
    many recent checkpoints stay on disk. device: "auto" or a torch device. amp: bf16 autocast
    on CUDA. flow_init: weights of ``rainsynth pretrain-flow`` for MF-AlignNet's flow network
    ("" = from scratch)."""

    out: str = "runs/small"
    seed: int = 0
    checkpoint_every: int = 250
    keep_checkpoints: int = 3
    log_every: int = 10
    eval_every: int = 0
    device: str = "auto"
    amp: bool = True
    flow_init: str = ""

    def __post_init__(self) -> None:
        self.check(bool(self.out), "out", "a folder path", self.out)
        self.at_least(seed=0)
        self.at_least(">= {}", checkpoint_every=1, keep_checkpoints=1)
        self.at_least(log_every=1, eval_every=0)
        self.check(is_device(self.device), "device", DEVICE_HELP, self.device)


@dataclass(frozen=True)
class TrainConfig:
    """The whole training recipe; ``source`` is the file it was read from (for messages)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=lambda: DataConfig(datasets=("data",)))
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    source: str = "<dict>"

    @classmethod
    def load(
        cls, path: str | Path, overrides: Iterable[str] = (), given: dict[str, Any] | None = None
    ) -> TrainConfig:
        """Read a TOML config, apply ``section.key=value`` overrides (TOML syntax, bare words as
        strings), then the values of the command-line options ``given`` ("section.key" -> value,
        None: not given), and validate."""
        path = Path(path)
        try:
            text = path.read_text("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc}") from None
        data = loads_toml(text, f"config file {path}", error=ConfigError)
        options = [f"{k}={json.dumps(v)}" for k, v in (given or {}).items() if v is not None]
        for item in [*overrides, *options]:
            target, sep, raw = item.partition("=")
            section, dot, key = target.strip().partition(".")
            if not sep or not dot or not key:
                raise ConfigError(
                    f"override {item!r} must look like section.key=value, e.g. optim.lr=1e-4"
                )
            try:
                value = loads_toml(f"v = {raw.strip()}", "override", error=ConfigError)["v"]
            except ConfigError:
                value = raw.strip()
            data.setdefault(section, {})[key] = value
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "<dict>") -> TrainConfig:
        """Build from plain sections; raises ConfigError naming ``source`` on any bad entry."""
        if not isinstance(data, dict):
            raise ConfigError(f"config {source}: expected a table of sections, got {data!r}")
        try:
            for name, value in data.items():
                if name not in SECTIONS:
                    raise ConfigError(f"unknown section [{name}]; allowed: {', '.join(SECTIONS)}")
                if not isinstance(value, dict):
                    raise ConfigError(f"[{name}] must be a table, got {value!r}")
            model = dict(data.get("model", {}))
            variant = model.pop("variant", None)
            base = None if variant is None else ModelConfig.ablation(variant)
            sections = {"model": ModelConfig.from_dict(model, base, also="variant")}
            for name, kind in list(SECTIONS.items())[1:]:
                sections[name] = kind.from_dict(dict(data.get(name, {})))
        except ConfigError as exc:
            raise ConfigError(f"config {source}: {exc}") from None
        return cls(source=source, **sections)

    def replace(self, **sections: dict) -> TrainConfig:
        """A copy with some fields of some sections changed: ``replace(run={"out": "x"})``."""
        try:
            changes = {k: dataclasses.replace(getattr(self, k), **v) for k, v in sections.items()}
        except ConfigError as exc:
            raise ConfigError(f"config {self.source}: {exc}") from None
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Plain, JSON/TOML-able sections (the inverse of :meth:`from_dict`)."""
        return {name: getattr(self, name).to_dict() for name in SECTIONS}

    def to_toml(self) -> str:
        """The config as TOML text that :meth:`load` reads back to an equal config."""
        lines = []
        for name, values in self.to_dict().items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {_toml_value(v)}" for k, v in values.items() if v is not None]
            lines.append("")
        return "\n".join(lines)


SECTIONS: dict[str, type[Section]] = {
    kind.section(): kind for kind in (ModelConfig, LossConfig, DataConfig, OptimConfig, RunConfig)
}
"""The sections of a config file, in file order."""


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise ConfigError(f"cannot write {value!r} to TOML")
