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
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import rainsynth
from rainsynth import dataset
from rainsynth.errors import RainsynthError
from rainsynth.presets import PRESETS, Preset, load_preset
from rainsynth.sources import SequenceRef, Source, open_source, split_sequences
from rainsynth.sources.split import SIDES

GENERATOR = f"rainsynth {rainsynth.__version__}"
ON_ERROR = ("fail", "skip")
SOURCE_OPTIONS = ("root", "frames", "stride", "size", "resize", "seed", "count", "on_error")
"""The BuildOptions fields that open_source takes (beside the source's name)."""


@dataclass(frozen=True)
class BuildOptions:
    """Everything that decides the bytes of a dataset (workers and output folder do not).

    source: one of SOURCES; root: its path (None for "builtin"); split: "TRAIN/TEST" counts or
    fractions, None for every sequence (the source's own lists when it has them, else 0.9/0.1);
    presets: names or TOML paths; frames, stride, size (H, W), resize, count: source options;
    seed: drives the split and every rain draw; on_error: "fail" or "skip" unreadable sequences.
    test_groups: groups (source videos, e.g. frame folders) that make the test side, every other
    group the train side, as a source's own lists would; empty: the split decides.
    """

    source: str = "builtin"
    root: str | None = None
    split: str | None = None
    presets: tuple[str, ...] = ("light", "heavy")
    frames: int = 7
    stride: int | None = None
    size: tuple[int, int] | None = None
    resize: str = "crop"
    seed: int = 0
    count: int | None = None
    on_error: str = "fail"
    test_groups: tuple[str, ...] = ()


_OPENED = threading.local()


def open_build_source(options: BuildOptions) -> Source:
    """The source of ``options``, opened once per thread and set of source options (sources keep
    decoders that threads must not share)."""
    kwargs = {key: getattr(options, key) for key in SOURCE_OPTIONS}
    key = (options.source, *kwargs.values())
    cache = _OPENED.__dict__.setdefault("sources", {})
    if key not in cache:
        cache[key] = open_source(options.source, **kwargs)
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
    """One clip to build: `ref` of the source under `preset`, clip index `index`."""

    index: int
    split: str
    preset: Preset
    ref: SequenceRef
    name: str
    seed: int
    build: str
    skip_errors: bool

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

    Raises RainsynthError (ParamError, SourceError) on a bad preset, source, root or split.
    """
    if options.on_error not in ON_ERROR:
        raise RainsynthError(f"on_error must be one of {ON_ERROR}, got {options.on_error!r}")
    if not options.presets:
        raise RainsynthError(f"no presets given; choose from {list(PRESETS)} or TOML files")
    presets = [load_preset(preset) for preset in options.presets]
    names = [preset.name for preset in presets]
    if len(set(names)) != len(names):
        raise RainsynthError(f"presets {list(options.presets)} give the same folder name twice")
    options = replace(options, root=None if options.root is None else os.path.abspath(options.root))
    source = open_build_source(options)
    refs = _assign_test_groups(source.sequences(), options.test_groups)
    unreadable = [
        {"file": path, "error": error} for path, error in getattr(source, "unreadable", {}).items()
    ]
    options = replace(options, split=options.split or _default_split(refs))
    sides = split_sequences(refs, options.split, seed=options.seed)
    description = source.describe()
    identity = {
        "generator": GENERATOR,
        "source": description,
        "split": options.split,
        "seed": options.seed,
        "presets": [[p.name, p.description, p.ranges] for p in presets],
    }
    if options.test_groups:
        identity["test_groups"] = list(options.test_groups)
    build = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    jobs = []
    for side in SIDES:
        side_names = unique_names([ref.key for ref in sides[side]])
        for preset in presets:
            for ref, name in zip(sides[side], side_names, strict=True):
                skip = options.on_error == "skip"
                jobs.append(Job(len(jobs), side, preset, ref, name, options.seed, build, skip))
    header = {
        "generator": GENERATOR,
        "command": command_line(options),
        "build": build,
        "seed": options.seed,
        "split": options.split,
        "source": description,
        "presets": {p.name: {"description": p.description, "ranges": p.ranges} for p in presets},
        "encoding": dataset.ENCODING,
    }
    return Plan(jobs, header, unreadable), options


def _assign_test_groups(refs: list[SequenceRef], groups: tuple[str, ...]) -> list[SequenceRef]:
    """The refs with subset "test" for the named groups and "train" for the others (unchanged
    when no groups are named). Raises RainsynthError on a group the source does not have, or
    on a source that keeps its own train/test lists."""
    if not groups:
        return refs
    if any(ref.subset for ref in refs):
        raise RainsynthError("this source has its own train/test lists; give no test groups")
    known = {ref.group for ref in refs}
    unknown = [group for group in groups if group not in known]
    if unknown:
        raise RainsynthError(
            f"test group(s) {unknown} are not in the source; its groups are: "
            f"{', '.join(sorted(known))}"
        )
    return [replace(ref, subset="test" if ref.group in groups else "train") for ref in refs]


def _default_split(refs: list[SequenceRef]) -> str:
    """Every sequence: the source's train/test lists when it has them, else 0.9/0.1 by group."""
    subsets = [ref.subset for ref in refs]
    if any(subsets):
        return f"{subsets.count('train')}/{subsets.count('test')}"
    return "0.9/0.1"
