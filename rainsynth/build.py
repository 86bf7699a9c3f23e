"""Build a paired rain/clean video dataset (``rainsynth build``).

A build is a list of jobs, one per (split, preset, sequence), in a fixed order: train then test,
presets in the order given, sequences in the source's order. A job's position in that list is its
clip index, which keys every random draw of its rain (``sample_params(..., clip=index)``), so the
bytes of a clip depend neither on the number of workers nor on the order clips finish in.

Each job reads its sequence, samples and renders rain, writes the clip's browser previews
(:mod:`rainsynth.browser`) and then its clip folder, atomically
(:func:`rainsynth.dataset.write_stored_clip`). A rerun skips the clips already in place (after
checking they come from the same build), removes the temporary files and folders a killed run
left, and renders the rest; the dataset card (with the browser page) and the manifest are written
last, each to a temporary file renamed into place. Jobs run in-process (``workers=1``), on a
local process pool, or on a Dask cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import multiprocessing
import os
import re
import shlex
import signal
import sys
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import click
import cv2

import rainsynth
from rainsynth import browser, dataset
from rainsynth.cli import Command
from rainsynth.compat import require, tomllib
from rainsynth.errors import RainsynthError, SourceError
from rainsynth.outputs import check_output
from rainsynth.params import PRESETS, Preset, load_preset, sample_params
from rainsynth.sources import SOURCES, SequenceRef, Source, open_source, split_sequences
from rainsynth.sources.base import MAX_FRAMES
from rainsynth.sources.split import SIDES

GENERATOR = f"rainsynth {rainsynth.__version__}"
MANIFEST = "manifest.json"
LOCK = ".rainsynth-build.lock"
ON_ERROR = ("fail", "skip")
PR_SET_PDEATHSIG = 1  # linux/prctl.h
ROOT_ENV = "RAINSYNTH_ROOT"
DEFAULT_ROOTS = {"vimeo90k": "vimeo_septuplet"}
"""Where a source's root is looked for when neither --root nor $RAINSYNTH_ROOT gives it."""


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


@dataclass(frozen=True)
class SourceSpec:
    """How a worker opens the source (hashable: each thread opens it once)."""

    name: str
    root: str | None
    frames: int
    stride: int | None
    size: tuple[int, int] | None
    resize: str
    seed: int
    count: int | None
    on_error: str = "fail"

    def open(self) -> Source:
        """The opened source, cached per thread (sources keep decoders that are not shared)."""
        cache = _SOURCES.__dict__.setdefault("sources", {})
        if self not in cache:
            cache[self] = open_source(
                self.name,
                root=self.root,
                frames=self.frames,
                stride=self.stride,
                size=self.size,
                resize=self.resize,
                seed=self.seed,
                count=self.count,
                on_error=self.on_error,
            )
        return cache[self]


_SOURCES = threading.local()


@contextlib.contextmanager
def _forget_sources() -> Iterator[None]:
    """Drop this thread's opened sources (and their decoders) when the build ends."""
    try:
        yield
    finally:
        _SOURCES.__dict__.pop("sources", None)


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
            "source": {
                "source": self.ref.source,
                "key": self.ref.key,
                "group": self.ref.group,
                "subset": self.ref.subset,
            },
        }


@dataclass(frozen=True)
class Plan:
    """The jobs of a build and the manifest fields that describe it."""

    spec: SourceSpec
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
    """The `rainsynth build` command that rebuilds exactly these bytes (output-deciding options)."""
    parts = ["rainsynth build", f"--source {options.source}"]
    if options.root is not None:
        parts.append(f"--root {shlex.quote(options.root)}")
    parts += [f"--split {options.split}", f"--presets {shlex.quote(','.join(options.presets))}"]
    parts.append(f"--frames {options.frames}")
    if options.stride is not None:
        parts.append(f"--stride {options.stride}")
    if options.size is not None:
        parts.append(f"--size {options.size[0]}x{options.size[1]}")
    parts += [f"--resize {options.resize}", f"--seed {options.seed}"]
    if options.count is not None:
        parts.append(f"--count {options.count}")
    if options.test_groups:
        parts.append(f"--test-groups {shlex.quote(','.join(options.test_groups))}")
    parts.append(f"--on-error {options.on_error}")
    return " ".join(parts)


def make_plan(options: BuildOptions) -> tuple[Plan, BuildOptions]:
    """Open the source, split it and list the jobs; returns the plan and the resolved options.

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
    spec = SourceSpec(
        options.source,
        None if options.root is None else os.path.abspath(options.root),
        options.frames,
        options.stride,
        options.size,
        options.resize,
        options.seed,
        options.count,
        options.on_error,
    )
    source = spec.open()
    refs = _assign_test_groups(source.sequences(), options.test_groups)
    unreadable = [
        {"file": path, "error": error} for path, error in getattr(source, "unreadable", {}).items()
    ]
    split = options.split or _default_split(refs)
    options = BuildOptions(**{**options.__dict__, "root": spec.root, "split": split})
    sides = split_sequences(refs, split, seed=options.seed)
    description = source.describe()
    identity = {
        "generator": GENERATOR,
        "source": description,
        "split": split,
        "seed": options.seed,
        "presets": [[p.name, p.description, p.ranges] for p in presets],
    }
    if options.test_groups:
        identity["test_groups"] = list(options.test_groups)
    build = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    jobs = []
    for side in SIDES:
        side_refs = sides[side]
        side_names = unique_names([ref.key for ref in side_refs])
        for preset in presets:
            for ref, name in zip(side_refs, side_names, strict=True):
                jobs.append(
                    Job(
                        len(jobs), side, preset, ref, name, options.seed, build,
                        options.on_error == "skip",
                    )
                )  # fmt: skip
    header = {
        "generator": GENERATOR,
        "command": command_line(options),
        "build": build,
        "seed": options.seed,
        "split": split,
        "source": description,
        "presets": {p.name: {"description": p.description, "ranges": p.ranges} for p in presets},
        "encoding": dataset.ENCODING,
    }
    return Plan(spec, jobs, header, unreadable), options


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


def build_clip(job: Job, spec: SourceSpec, out: str) -> dict:
    """Read, render and write one clip (runs in a worker). Returns its record, or a skip record.

    A SourceError (unreadable sequence) is returned as {"skipped": ...} when the job skips
    errors, else raised with the clip named. OSError (e.g. a full disk) propagates; the partial
    clip is removed first.
    """
    rainsynth.set_num_threads(1)  # workers are processes (or Dask threads): one thread each
    try:
        sequence = spec.open().read(job.ref)
    except SourceError as error:
        if job.skip_errors:
            return {"skipped": {**job.describe(), "error": str(error)}}
        raise SourceError(
            f"cannot build clip {job.split}/{job.preset.name}/{job.name}: {error}; fix or "
            "remove the file, or pass --on-error skip to record the sequence as skipped"
        ) from None
    frames = sequence.frames
    params = sample_params(job.preset, seed=job.seed, shape=frames.shape[:3], clip=job.index)
    clip = rainsynth.render(frames, params)
    rain, layers = dataset.to_uint8(clip.rain), dataset.encode_layers(clip.layers)
    info = {
        **job.describe(),
        "build": job.build,
        "seed": job.seed,
        "files": list(sequence.files),
        "shape": list(frames.shape[:3]),
        "flow": sequence.flow is not None,
    }
    browser.write_previews(
        Path(out), job.index, rain=rain, clean=frames, layers=layers, flow=sequence.flow
    )
    dataset.write_stored_clip(
        job.folder(Path(out)),
        rain=rain,
        clean=frames,
        layers=layers,
        params=params,
        flow=sequence.flow,
        info=info,
    )
    return {"built": info}


def _init_worker() -> None:
    """Process-pool worker setup: one OpenCV thread (the processes give the parallelism), and on
    Linux, die with the process that started this one, so a killed build leaves no worker
    writing behind it."""
    cv2.setNumThreads(1)
    if sys.platform.startswith("linux"):
        import ctypes

        parent = os.getppid()
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)


def run_jobs(
    jobs: list[Job], spec: SourceSpec, out: Path, *, workers: int, scheduler: str | None
) -> Iterator[dict]:
    """Run build_clip over jobs; yield results as they finish (any order).

    workers=1 without a scheduler runs in this process; more use a spawn process pool; a
    scheduler address runs on that Dask cluster. The first error cancels what has not started.
    """
    if scheduler is not None:
        yield from _run_dask(jobs, spec, out, scheduler)
    elif min(workers, len(jobs)) == 1:
        threads = cv2.getNumThreads(), rainsynth.get_num_threads()
        cv2.setNumThreads(1)
        try:
            for job in jobs:
                yield build_clip(job, spec, str(out))
        finally:
            cv2.setNumThreads(threads[0])
            rainsynth.set_num_threads(threads[1])
    else:
        yield from _run_pool(jobs, spec, out, min(workers, len(jobs)))


def _run_pool(jobs: list[Job], spec: SourceSpec, out: Path, workers: int) -> Iterator[dict]:
    """Run jobs on a spawn process pool, keeping only a few per worker queued at a time."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
    queue = iter(jobs)
    running: set = set()
    try:
        while True:
            for job in itertools.islice(queue, 2 * workers - len(running)):
                running.add(pool.submit(build_clip, job, spec, str(out)))
            if not running:
                return
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_scheduler(address: str) -> None:
    """RainsynthError unless ``address`` reads as a Dask scheduler address (HOST:PORT)."""
    addressing = require("distributed.comm.addressing")
    try:
        addressing.get_address_host_port(address)
    except (ValueError, TypeError) as error:
        raise RainsynthError(
            f"--scheduler {address!r} is not a Dask scheduler address, e.g. tcp://host:8786 "
            f"({error})"
        ) from None


def _run_dask(jobs: list[Job], spec: SourceSpec, out: Path, address: str) -> Iterator[dict]:
    distributed = require("distributed")
    try:
        client = distributed.Client(address, timeout="20s")
    except OSError as error:
        raise RainsynthError(f"cannot reach the Dask scheduler at {address!r}: {error}") from None
    with client:
        futures = [client.submit(build_clip, job, spec, str(out), pure=False) for job in jobs]
        try:
            for future in distributed.as_completed(futures):
                yield future.result()
        finally:
            client.cancel(futures)


def build(
    options: BuildOptions,
    out: str | os.PathLike,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict:
    """Build (or resume) the dataset of `options` in folder `out`; returns the manifest.

    Args:
        options: what to build.
        out: the dataset folder (created; an existing one must be a rainsynth dataset).
        workers: local worker processes (1 = in this process).
        scheduler: a Dask scheduler address ("tcp://host:8786"); overrides workers.
        progress: show a tqdm bar (clips/s).
        echo: where to print status lines.

    Raises RainsynthError on bad options or an unreadable source file (with on_error "fail"),
    OSError when writing fails (a full disk); finished clips stay and a rerun resumes.
    """
    out = check_output(out, what="--out")
    if scheduler is not None:
        _check_scheduler(scheduler)
    with _forget_sources():
        plan, options = make_plan(options)
        with _locked(out):
            records = _existing_records(plan, out)
            stale = dataset.remove_temp_folders(out) + _remove_temp_files(out)
            if stale:
                echo(f"removed {len(stale)} unfinished file(s) of an interrupted build")
            for skip in plan.unreadable:
                echo(f"skipped {skip['file']}: {skip['error']}")
            todo = [job for job in plan.jobs if job.index not in records]
            echo(
                f"{options.source}: {len({job.ref.key for job in plan.jobs})} sequences, "
                f"{len(plan.jobs)} clips ({_counts_text(plan.jobs)}) -> {out}"
            )
            if records:
                echo(
                    f"{len(records)} clips already built" + ("" if todo else "; nothing to render")
                )
            skipped = _render(todo, plan.spec, out, workers, scheduler, progress, records)
            clips = [records[i] for i in sorted(records)]
            manifest = {
                **plan.header,
                "counts": _counts(clips),
                "clips": clips,
                "skipped": plan.unreadable + [skipped[i] for i in sorted(skipped)],
            }
            _finish(out, manifest)
    skips = len(manifest["skipped"])
    echo(
        f"wrote {len(clips)} clips" + (f", skipped {skips}" if skips else "")
        + f" to {out} (manifest.json, README.md, index.html)"
    )  # fmt: skip
    return manifest


def _render(
    todo: list[Job],
    spec: SourceSpec,
    out: Path,
    workers: int,
    scheduler: str | None,
    progress: bool,
    records: dict[int, dict],
) -> dict[int, dict]:
    """Build the clips of `todo` with a progress bar; add their records; return skip records."""
    skipped: dict[int, dict] = {}
    if not todo:
        return skipped
    from tqdm import tqdm

    with tqdm(total=len(todo), unit="clip", desc="build", disable=not progress) as bar:
        jobs = run_jobs(todo, spec, out.absolute(), workers=workers, scheduler=scheduler)
        for result in jobs:
            if "built" in result:
                records[result["built"]["clip"]] = _record(result["built"])
            else:
                skip = result["skipped"]
                skipped[skip["clip"]] = skip
                bar.write(
                    f"skipped {skip['split']}/{skip['preset']}/{skip['name']}: {skip['error']}"
                )
            bar.update()
    return skipped


def _finish(out: Path, manifest: dict) -> None:
    """Write the dataset card, then the manifest (last: its presence marks a finished build).

    Both are skipped when an identical manifest and the card are already there.
    """
    from rainsynth.card import card_files, write_card

    data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    path = out / MANIFEST
    card = [out / name for name in card_files(manifest)]
    if path.exists() and path.read_bytes() == data and all(p.exists() for p in card):
        return
    write_card(out, manifest)
    dataset.write_atomic(path, data)


def _record(info: dict) -> dict:
    """A manifest record: clip.json without the build id (the manifest holds it once)."""
    return {key: value for key, value in info.items() if key != "build"}


def _counts(records) -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        side = counts.setdefault(record["split"], {})
        side[record["preset"]] = side.get(record["preset"], 0) + 1
    return counts


def _counts_text(jobs: list[Job]) -> str:
    counts = _counts(job.describe() for job in jobs)
    return ", ".join(
        f"{side} {preset} {n}" for side, presets in counts.items() for preset, n in presets.items()
    )


def _existing_records(plan: Plan, out: Path) -> dict[int, dict]:
    """Records of the clips already in `out`; RainsynthError when any comes from another build."""
    by_folder = {job.folder(out): job for job in plan.jobs}
    records = {}
    folders = out.glob("*/*/*")
    for folder in sorted(p for p in folders if p.is_dir() and not _is_temp(p)):
        job = by_folder.get(folder)
        info = dataset.read_clip_info(folder) if job is not None else None
        if job is None or info.get("build") != plan.header["build"]:
            raise RainsynthError(
                f"{out} holds {folder.relative_to(out)}, which this build would not write (it "
                f"comes from another command or version); build into a new --out, or delete {out}"
            )
        if {key: info.get(key) for key in job.describe()} != job.describe():
            raise RainsynthError(
                f"{folder / dataset.CLIP_FILE} does not describe the clip of its folder; "
                f"delete {folder} and run the same command again to rebuild it"
            )
        records[job.index] = _record(info)
    return records


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock file in `out` while writing it (a build, or `rainsynth card`);
    refuse folders that are not datasets.

    The lock file goes when the build ends, even on an error; one left by a killed build marks
    the folder as an unfinished dataset.
    """
    _check_out(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK, "a+b") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): no lock
            pass
        except OSError:
            raise RainsynthError(f"another rainsynth build is writing to {out}") from None
        try:
            yield
        finally:
            (out / LOCK).unlink(missing_ok=True)


def _check_out(out: Path) -> None:
    """RainsynthError unless `out` is missing, empty, or holds only what a build writes there."""
    from rainsynth.card import CARD_FILES

    if out.exists() and not out.is_dir():
        raise RainsynthError(f"--out {out} is a file; give a folder for the dataset")
    ours = {MANIFEST, LOCK, *CARD_FILES, *SIDES}
    foreign = sorted(
        entry.name
        for entry in (out.iterdir() if out.is_dir() else [])
        if entry.name not in ours and not _is_temp(entry)
    )
    if foreign:
        raise RainsynthError(
            f"--out {out} holds {', '.join(foreign[:5])}, which rainsynth build does not write: "
            "it is not a rainsynth dataset; give a new or empty folder"
        )


def _is_temp(path: Path) -> bool:
    return path.name.startswith(dataset.TEMP_PREFIX)


def _remove_temp_files(out: Path) -> list[Path]:
    """Delete the temporary files a killed build left: manifest, card, browser previews."""
    patterns = (f"{dataset.TEMP_PREFIX}*", f"{browser.PREVIEWS}/{dataset.TEMP_PREFIX}*")
    stale = sorted(p for pattern in patterns for p in out.glob(pattern) if p.is_file())
    for path in stale:
        path.unlink()
    return stale


RECIPE_KEYS = (
    "source", "root", "split", "presets", "frames", "stride", "size", "resize", "seed", "count",
    "on_error", "test_groups", "out", "workers", "scheduler", "quiet",
)  # fmt: skip

EXAMPLES = """\b
Examples:
  rainsynth build --out out/data
      built-in offline source (camera motion over bundled photos, with exact
      flow, and short bundled videos), light and heavy rain, split 0.9/0.1
  rainsynth build --source vimeo90k --split 900/100
      a RainSynAll100-style dataset from ./vimeo_septuplet (or --root PATH, or
      $RAINSYNTH_ROOT) into out/vimeo90k; test clips come from sep_testlist.txt
  rainsynth build --recipe datasets/rainsynall100.toml --root vimeo_septuplet \\
      --out out/rainsynall100
      the same from a recipe; command-line options override recipe values
  rainsynth build --source videos --root clips/ --frames 7 --stride 14 \\
      --size 256x448 --on-error skip --out out/videos
  rainsynth build --out out/data --scheduler tcp://10.0.0.5:8786
      run the jobs on a Dask cluster (every worker must see --out)

\b
Run the same command again to resume an interrupted build: finished clips
are kept, unfinished ones are redone, and the output is byte-identical to an
uninterrupted build whatever the number of workers. The dataset card is
OUT/README.md; open OUT/index.html in a web browser to look at the clips;
read them with rainsynth.dataset.read_dataset(OUT).
"""


def _load_recipe(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Eager --recipe callback: the recipe's values become the defaults of the other options."""
    if value is None:
        return None
    path = Path(value)
    try:
        recipe = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise click.BadParameter(f"cannot read recipe {path}: {error}", ctx, param) from None
    recipe = {key.replace("-", "_"): v for key, v in recipe.items()}
    unknown = sorted(set(recipe) - set(RECIPE_KEYS))
    if unknown:
        raise click.BadParameter(
            f"recipe {path} has unknown key(s) {unknown}; allowed: {', '.join(RECIPE_KEYS)}",
            ctx,
            param,
        )
    for key in ("root", "out"):  # relative paths are relative to the recipe file
        if isinstance(recipe.get(key), str):
            recipe[key] = str(path.parent / recipe[key])
    for key in ("presets", "test_groups"):
        if isinstance(recipe.get(key), list):
            recipe[key] = ",".join(map(str, recipe[key]))
    if isinstance(recipe.get("size"), list):
        recipe["size"] = "x".join(map(str, recipe["size"]))
    ctx.default_map = {**(ctx.default_map or {}), **recipe}
    return value


def _parse_size(ctx: click.Context, param: click.Parameter, value) -> tuple[int, int] | None:
    if value is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(value))
    if not match:
        raise click.BadParameter(f"{value!r} is not HEIGHTxWIDTH, e.g. 256x448", ctx, param)
    return int(match[1]), int(match[2])


def _parse_names(value: str | None) -> tuple[str, ...]:
    """Comma-separated names as a tuple: "a, b,c" -> ("a", "b", "c")."""
    return tuple(part.strip() for part in str(value or "").split(",") if part.strip())


def _parse_presets(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    presets = _parse_names(value)
    if not presets:
        raise click.BadParameter("give at least one preset, e.g. light,heavy", ctx, param)
    return presets


def source_root(source: str, root: str | None) -> str | None:
    """The root of ``source``: ``root`` (--root) when given, else $RAINSYNTH_ROOT, else the
    source's default folder (DEFAULT_ROOTS) when it exists; SourceError saying what was tried."""
    if source == "builtin" or root is not None:
        return root
    env = os.environ.get(ROOT_ENV)
    default = DEFAULT_ROOTS.get(source)
    found = env or default
    if found is not None and os.path.exists(found):
        return found
    tried = [
        "--root (not given)",
        f"${ROOT_ENV}={env} (not found)" if env else f"${ROOT_ENV} (not set)",
    ]
    tried += [f"./{default} (not found)"] if default and not env else []
    raise SourceError(
        f"the {source} source needs a root (its folder); tried {', '.join(tried)}: pass --root PATH"
    )


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@click.command("build", cls=Command, epilog=EXAMPLES)
@click.option(
    "--recipe",
    type=click.Path(exists=True, dir_okay=False),
    is_eager=True,
    expose_value=False,
    callback=_load_recipe,
    help="TOML file of option values (keys = option names, e.g. datasets/rainsynall100.toml). "
    "Command-line options override it; relative paths in it are relative to the file.",
)
@click.option(
    "--source",
    type=click.Choice(SOURCES),
    default="builtin",
    show_default=True,
    help="Where clean clips come from: vimeo90k (septuplet layout), videos (files decoded with "
    "ffmpeg), frames (folders of images), builtin (offline, ships with the package).",
)
@click.option("--root", help=f"Path of the source (not for builtin) [default: ${ROOT_ENV}, else "
              "./vimeo_septuplet for vimeo90k].")  # fmt: skip
@click.option(
    "--split",
    help="TRAIN/TEST sequences as counts (900/100) or fractions (0.9/0.1), seeded, never one "
    "source video on both sides. Default: every sequence (Vimeo's own lists, else 0.9/0.1).",
)
@click.option(
    "--presets",
    default="light,heavy",
    show_default=True,
    callback=_parse_presets,
    help=f"Comma-separated rain presets: {', '.join(PRESETS)} or paths of preset TOML files.",
)
@click.option("--frames", type=click.IntRange(2, MAX_FRAMES), default=7, show_default=True,
              help="Frames per clip.")  # fmt: skip
@click.option("--stride", type=click.IntRange(min=1),
              help="Frames between clip starts in long sources [default: --frames].")  # fmt: skip
@click.option("--size", callback=_parse_size,
              help="HEIGHTxWIDTH of the clips, e.g. 256x448 [default: the source's].")  # fmt: skip
@click.option("--resize", type=click.Choice(["crop", "scale"]), default="crop", show_default=True,
              help="crop: cover the size and cut the centre; scale: plain resize.")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the split and of every rain draw.")  # fmt: skip
@click.option("--count", type=click.IntRange(min=0),
              help="builtin only: number of synthetic camera-motion clips [default: 48].")  # fmt: skip
@click.option("-o", "--out", type=click.Path(file_okay=False),
              help="Dataset folder to create or resume [default: out/<source>].")  # fmt: skip
@click.option("--workers", "-j", type=click.IntRange(min=1),
              help="Local worker processes [default: all cores].")  # fmt: skip
@click.option("--scheduler", metavar="ADDRESS",
              help="Run on the Dask cluster at ADDRESS (tcp://host:8786) instead.")  # fmt: skip
@click.option("--test-groups", callback=lambda ctx, param, value: _parse_names(value),
              help="Comma-separated groups (frame folders, video files) that form the test side, "
              "all others the train side; the split then counts within each side "
              "[default: every clip of each].")  # fmt: skip
@click.option("--on-error", type=click.Choice(ON_ERROR), default="fail", show_default=True,
              help="Unreadable source frames: fail (exit naming the file) or skip the sequence "
              "and record it in the manifest.")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or status lines.")
def build_command(
    source: str,
    root: str | None,
    split: str | None,
    presets: tuple[str, ...],
    frames: int,
    stride: int | None,
    size: tuple[int, int] | None,
    resize: str,
    seed: int,
    count: int | None,
    out: str | None,
    workers: int | None,
    scheduler: str | None,
    on_error: str,
    test_groups: tuple[str, ...],
    quiet: bool,
) -> None:
    """Build a paired rain/clean video dataset.

    Each clip becomes OUT/<split>/<preset>/<clip>/ with rain/ and clean/ PNG frames, the rain
    layers (layers.npz), the sampled parameters (params.json), the exact optical flow where the
    source knows it (flow.npz) and its source reference (clip.json). OUT/manifest.json records
    the command, seed and every clip; OUT/README.md is the dataset card and OUT/index.html a
    page to look at the clips, their layers and parameters in a web browser, opened from disk.
    """
    root = source_root(source, root)
    options = BuildOptions(
        source, root, split, presets, frames, stride, size, resize, seed, count, on_error,
        test_groups,
    )  # fmt: skip
    echo = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    try:
        build(
            options,
            out or os.path.join("out", source),
            workers=workers or _cores(),
            scheduler=scheduler,
            progress=not quiet,
            echo=echo,
        )
    except OSError as error:
        raise click.ClickException(
            f"{error}. The unfinished clip was removed and finished clips are kept: free "
            "the space (or fix the problem) and run the same command again to resume."
        ) from None


@click.command("card", cls=Command)
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="No status lines.")
def card_command(out: str, quiet: bool) -> None:
    """Write the dataset card and the dataset browser of the built dataset OUT again.

    \b
    Rewrites, from OUT/manifest.json:
      README.md, preview.png, parameters.png   the dataset card
      index.html                               the dataset browser (open it from disk)

    It makes the browser previews (OUT/browser/) of the clips that have none, e.g. in a dataset
    built by an earlier version; previews already there are kept. Clips and manifest stay as
    they are.

    \b
    Example:
      rainsynth card out/data && xdg-open out/data/index.html
    """
    from rainsynth.card import CARD, write_card

    folder = Path(out)
    if not (folder / MANIFEST).is_file():
        raise RainsynthError(
            f"{folder} has no {MANIFEST}: it is not a finished rainsynth dataset (run the "
            "command that built it again to finish it)"
        )
    with _locked(folder):
        manifest = dataset.read_json(folder / MANIFEST)
        if not isinstance(manifest.get("clips"), list):
            raise RainsynthError(f"{folder / MANIFEST} has no list of clips: not a manifest")
        manifest = _in_build_order(manifest)
        missing = len(browser.missing_previews(folder, manifest["clips"]))
        if missing and not quiet:
            click.echo(f"making the browser previews of {missing} clips", err=True)
        write_card(folder, manifest)
    if not quiet:
        click.echo(f"wrote {folder / CARD} and {folder / browser.PAGE}", err=True)


def _in_build_order(manifest: dict) -> dict:
    """The manifest with its presets and counts in the build's order (manifest.json sorts its
    keys): presets in the order their first clips come (then any without clips), counts
    recomputed from the clips; so the card written again has the build's bytes."""
    order = list(dict.fromkeys(record["preset"] for record in manifest["clips"]))
    order += [name for name in manifest["presets"] if name not in order]
    presets = {name: manifest["presets"][name] for name in order}
    return {**manifest, "presets": presets, "counts": _counts(manifest["clips"])}
