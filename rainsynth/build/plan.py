"""The plan of a build: its options, the jobs (one clip each) and the manifest's header.

A build is a list of jobs, one per (split, preset, sequence), in a fixed order: train then test,
presets in the order given, sequences in the source's order. A job's position in that list is its
clip index, which keys every random draw of its rain (``sample_params(..., clip=index)``), so the
bytes of a clip depend neither on the number of workers nor on the order clips finish in.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shlex
import threading
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import rainsynth
from rainsynth import dataset
from rainsynth.errors import RainsynthError
from rainsynth.presets import PRESETS, Preset, load_preset
from rainsynth.sources import SequenceRef, Source, open_source, split_sequences
from rainsynth.sources.base import Options
from rainsynth.sources.split import SIDES

GENERATOR = f"rainsynth {rainsynth.__version__}"
ON_ERROR = ("fail", "skip")


@dataclass(frozen=True)
class _Inputs:
    """The options of a build that come before the source's (see BuildOptions)."""

    source: str = "builtin"
    root: str | None = None
    split: str | None = None
    presets: tuple[str, ...] = ("light", "heavy")


@dataclass(frozen=True)
class BuildOptions(Options, _Inputs):
    """Everything that decides the bytes of a dataset (workers and output folder do not): the
    source's :class:`Options` (frames, stride, size (H, W), resize, seed, count) with the build's
    own fields, in the order of the command line (source, root, split and presets come first).

    source: one of SOURCES; root: its path (None for "builtin"); split: "TRAIN/TEST" counts or
    fractions, None for every sequence (the source's own lists when it has them, else 0.9/0.1);
    presets: names or TOML paths; seed also drives the split and every rain draw; on_error:
    "fail" or "skip" unreadable sequences. test_groups: groups (source videos, e.g. frame
    folders) that make the test side, every other group the train side, as a source's own lists
    would; empty: the split decides.
    """

    on_error: str = "fail"
    test_groups: tuple[str, ...] = ()


_OPENED = threading.local()


def open_build_source(options: BuildOptions) -> Source:
    """The source of ``options``, opened once per thread and set of source options (sources keep
    decoders that threads must not share)."""
    shared = {f.name: getattr(options, f.name) for f in fields(Options)}
    key = (options.source, options.root, options.on_error, *shared.values())
    cache = _OPENED.__dict__.setdefault("sources", {})
    if key not in cache:
        cache[key] = open_source(
            options.source, root=options.root, on_error=options.on_error, **shared
        )
    return cache[key]


@contextlib.contextmanager
def forget_sources() -> Iterator[None]:
    """Drop this thread's opened sources (and their decoders) when the block ends."""
    try:
        yield
    finally:
        _OPENED.__dict__.pop("sources", None)


@dataclass(frozen=True)
class Job:
    """One clip to build: `ref` of the source under `preset`, clip index `index`, in build
    `build` (the manifest's id)."""

    index: int
    split: str
    preset: Preset
    ref: SequenceRef
    name: str
    build: str

    def folder(self, out: Path) -> Path:
        """The clip folder: OUT/<split>/<preset>/<name>."""
        return out / self.split / self.preset.name / self.name

    def describe(self) -> dict:
        """The fields shared by clip.json, manifest records and skip records."""
        return {
            "split": self.split,
            "preset": self.preset.name,
            "name": self.name,
            "clip": self.index,
            "source": asdict(self.ref),  # source, key, group, subset
        }


@dataclass(frozen=True)
class Plan:
    """The jobs of a build and the manifest fields that describe it."""

    jobs: list[Job]
    header: dict = field(repr=False)
    unreadable: list[dict] = field(default_factory=list)
    """Skip records of the source files whose header could not be read (on_error "skip")."""


def clip_name(key: str) -> str:
    """A folder name for a sequence key: "00001/0001" -> "00001_0001"."""
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", key.replace("/", "_")).lstrip(".") or "clip"


def unique_names(keys: list[str]) -> list[str]:
    """clip_name of each key, with "-<crc32>" added to names that two keys would share."""
    names = [clip_name(key) for key in keys]
    taken = {name for name in names if names.count(name) > 1}
    return [
        f"{name}-{zlib.crc32(key.encode()):08x}" if name in taken else name
        for name, key in zip(names, keys, strict=True)
    ]


def command_line(options: BuildOptions) -> str:
    """The `rainsynth build` command that rebuilds exactly these bytes: the options of
    ``options`` that are set, in field order with --on-error last."""
    parts = ["rainsynth build"]
    for name, value in sorted(vars(options).items(), key=lambda item: item[0] == "on_error"):
        if value is None or value == ():
            continue
        if name == "size":
            value = f"{value[0]}x{value[1]}"
        elif isinstance(value, tuple):
            value = shlex.quote(",".join(value))
        elif name == "root":
            value = shlex.quote(value)
        parts.append(f"--{name.replace('_', '-')} {value}")
    return " ".join(parts)


def make_plan(options: BuildOptions) -> tuple[Plan, BuildOptions]:
    """Open the source, split it and list the jobs; returns the plan and the resolved options
    (root absolute, split given).

    Raises RainsynthError (ParamError, SourceError) on a bad preset, source, root, split or
    test group (one the source lacks, or any for a source with its own train/test lists).
    """
    if options.on_error not in ON_ERROR:
        raise RainsynthError(f"on_error must be one of {ON_ERROR}, got {options.on_error!r}")
    if not options.presets:
        raise RainsynthError(f"no presets given; choose from {list(PRESETS)} or TOML files")
    presets = [load_preset(preset) for preset in options.presets]
    if len({preset.name for preset in presets}) != len(presets):
        raise RainsynthError(f"presets {list(options.presets)} give the same folder name twice")
    options = replace(options, root=None if options.root is None else os.path.abspath(options.root))
    source = open_build_source(options)
    refs, groups = source.sequences(), options.test_groups
    if groups:
        if any(ref.subset for ref in refs):
            raise RainsynthError("this source has its own train/test lists; give no test groups")
        known = {ref.group for ref in refs}
        unknown = [group for group in groups if group not in known]
        if unknown:
            raise RainsynthError(
                f"test group(s) {unknown} are not in the source; its groups are: "
                f"{', '.join(sorted(known))}"
            )
        refs = [replace(ref, subset="test" if ref.group in groups else "train") for ref in refs]
    subsets = [ref.subset for ref in refs]  # every sequence: the source's lists, else 0.9/0.1
    every = f"{subsets.count('train')}/{subsets.count('test')}" if any(subsets) else "0.9/0.1"
    options = replace(options, split=options.split or every)
    sides = split_sequences(refs, options.split, seed=options.seed)
    identity = {
        "generator": GENERATOR,
        "source": source.describe(),
        "split": options.split,
        "seed": options.seed,
        "presets": [[p.name, p.description, p.ranges] for p in presets],
        **({"test_groups": list(groups)} if groups else {}),
    }
    build = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    jobs: list[Job] = []
    for side in SIDES:
        names = unique_names([ref.key for ref in sides[side]])
        for preset in presets:
            for ref, name in zip(sides[side], names, strict=True):
                jobs.append(Job(len(jobs), side, preset, ref, name, build))
    header = {
        "generator": GENERATOR,
        "command": command_line(options),
        "build": build,
        "seed": options.seed,
        "split": options.split,
        "source": identity["source"],
        "presets": {p.name: {"description": p.description, "ranges": p.ranges} for p in presets},
        "encoding": dataset.ENCODING,
    }
    unreadable = getattr(source, "unreadable", {}).items()
    return Plan(jobs, header, [{"file": f, "error": e} for f, e in unreadable]), options
