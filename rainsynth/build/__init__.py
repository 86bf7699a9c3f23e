"""Build a paired rain/clean video dataset (``rainsynth build``).

    manifest = build(BuildOptions(source="vimeo90k", root="vimeo_septuplet"), "out/data")

The jobs of a build (:mod:`.plan`) each read, render and write one clip, in-process
(``workers=1``), on a local process pool, or on a Dask cluster (:mod:`.executors`). The dataset
folder is locked while they run; a rerun skips the clips already in place (after checking they
come from the same build) and removes the temporary files and folders a killed run left; the
dataset card (with the browser page) and the manifest come last, each written to a temporary
file renamed into place. The command line is :mod:`rainsynth.build_cli`.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from rainsynth import browser, dataset
from rainsynth.build.executors import check_scheduler, run_jobs
from rainsynth.build.plan import BuildOptions, Plan, forget_sources, make_plan
from rainsynth.card import CARD_FILES, card_files, write_card
from rainsynth.errors import RainsynthError
from rainsynth.fileio import TEMP_PREFIX, write_atomic
from rainsynth.outputs import check_output
from rainsynth.sources.split import SIDES

try:
    import fcntl
except ImportError:  # Windows: no lock
    fcntl = None

__all__ = ["BuildOptions", "build", "make_plan"]

MANIFEST = "manifest.json"
LOCK = ".rainsynth-build.lock"


@contextlib.contextmanager
def locked(out: Path) -> Iterator[None]:
    """Hold an exclusive lock file in `out` while writing it (a build, or `rainsynth card`);
    refuse folders that hold anything but what a build writes there.

    The lock file goes when the build ends, even on an error; one left by a killed build marks
    the folder as an unfinished dataset.
    """
    if out.exists() and not out.is_dir():
        raise RainsynthError(f"--out {out} is a file; give a folder for the dataset")
    ours = {MANIFEST, LOCK, *CARD_FILES, *SIDES}
    foreign = sorted(
        entry.name
        for entry in (out.iterdir() if out.is_dir() else [])
        if entry.name not in ours and not entry.name.startswith(TEMP_PREFIX)
    )
    if foreign:
        raise RainsynthError(
            f"--out {out} holds {', '.join(foreign[:5])}, which rainsynth build does not write: "
            "it is not a rainsynth dataset; give a new or empty folder"
        )
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK, "a+b") as handle:
        try:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise RainsynthError(f"another rainsynth build is writing to {out}") from None
        try:
            yield
        finally:
            (out / LOCK).unlink(missing_ok=True)


def remove_temp_files(out: Path) -> list[Path]:
    """Delete the temporary clip folders and files a killed build left: clips, manifest, card,
    browser previews; returns them."""
    patterns = (f"{TEMP_PREFIX}*", f"{browser.PREVIEWS}/{TEMP_PREFIX}*")
    stale = sorted(p for pattern in patterns for p in out.glob(pattern) if p.is_file())
    for path in stale:
        path.unlink()
    return dataset.remove_temp_folders(out) + stale


def existing_records(plan: Plan, out: Path) -> dict[int, dict]:
    """Records of the clips already in `out`; RainsynthError when any comes from another build."""
    by_folder = {job.folder(out): job for job in plan.jobs}
    records = {}
    for folder in sorted(out.glob("*/*/*")):
        if not folder.is_dir() or folder.name.startswith(TEMP_PREFIX):
            continue
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
        records[job.index] = record(info)
    return records


def record(info: dict) -> dict:
    """A manifest record: clip.json without the build id (the manifest holds it once)."""
    return {key: value for key, value in info.items() if key != "build"}


def counts(records: Iterable[dict]) -> dict[str, dict[str, int]]:
    """Clips per split and preset, in the order the records come: {"train": {"light": 4}}."""
    found: dict[str, dict[str, int]] = {}
    for item in records:
        side = found.setdefault(item["split"], {})
        side[item["preset"]] = side.get(item["preset"], 0) + 1
    return found


def build(
    options: BuildOptions,
    out: str | os.PathLike,
    *,
    workers: int = 1,
    scheduler: str | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> dict:
    """Build (or resume) the dataset of `options` in folder `out` (created; an existing one must
    be a rainsynth dataset); returns the manifest.

    workers: local worker processes (1 = in this process); scheduler: a Dask scheduler address
    ("tcp://host:8786"), overrides workers; progress: show a tqdm bar (clips/s); echo: where to
    print status lines.

    Raises RainsynthError on bad options or an unreadable source file (with on_error "fail"),
    OSError when writing fails (a full disk); finished clips stay and a rerun resumes.
    """
    out = check_output(out, what="--out")
    if scheduler is not None:
        check_scheduler(scheduler)
    with forget_sources():
        plan, options = make_plan(options)
        with locked(out):
            records = existing_records(plan, out)
            stale = remove_temp_files(out)
            if stale:
                echo(f"removed {len(stale)} unfinished file(s) of an interrupted build")
            for skip in plan.unreadable:
                echo(f"skipped {skip['file']}: {skip['error']}")
            todo = [job for job in plan.jobs if job.index not in records]
            planned = counts(job.describe() for job in plan.jobs)
            echo(
                f"{options.source}: {len({job.ref.key for job in plan.jobs})} sequences, "
                f"{len(plan.jobs)} clips ("
                + ", ".join(f"{s} {p} {n}" for s in planned for p, n in planned[s].items())
                + f") -> {out}"
            )  # fmt: skip
            if records:
                echo(
                    f"{len(records)} clips already built" + ("" if todo else "; nothing to render")
                )
            skipped: dict[int, dict] = {}
            if todo:
                results = run_jobs(
                    todo, options, out.absolute(), workers=workers, scheduler=scheduler
                )
                with tqdm(total=len(todo), unit="clip", desc="build", disable=not progress) as bar:
                    for result in results:
                        if "built" in result:
                            records[result["built"]["clip"]] = record(result["built"])
                        else:
                            skip = skipped[result["skipped"]["clip"]] = result["skipped"]
                            bar.write(
                                f"skipped {skip['split']}/{skip['preset']}/{skip['name']}: "
                                f"{skip['error']}"
                            )
                        bar.update()
            clips = [records[i] for i in sorted(records)]
            manifest = {
                **plan.header,
                "counts": counts(clips),
                "clips": clips,
                "skipped": plan.unreadable + [skipped[i] for i in sorted(skipped)],
            }
            # the card, then the manifest (last: its presence marks a finished build); neither
            # when an identical manifest and the card are already there
            data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
            path, card = out / MANIFEST, [out / name for name in card_files(manifest)]
            if not (path.exists() and path.read_bytes() == data and all(p.exists() for p in card)):
                write_card(out, manifest)
                write_atomic(path, data)
    skips = len(manifest["skipped"])
    echo(
        f"wrote {len(clips)} clips" + (f", skipped {skips}" if skips else "")
        + f" to {out} (manifest.json, README.md, index.html)"
    )  # fmt: skip
    return manifest
