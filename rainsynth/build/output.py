"""The dataset folder of a build: its lock, what a rerun keeps or removes, and the manifest.

A rerun skips the clips already in place (after checking they come from the same build) and
removes the temporary files and folders a killed run left; the dataset card (with the browser
page) and the manifest are written last, each to a temporary file renamed into place.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from rainsynth import browser, dataset
from rainsynth.build.plan import Plan
from rainsynth.card import CARD_FILES, card_files, write_card
from rainsynth.errors import RainsynthError
from rainsynth.fileio import TEMP_PREFIX, write_atomic
from rainsynth.sources.split import SIDES

try:
    import fcntl
except ImportError:  # Windows: no lock
    fcntl = None

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


def finish(out: Path, manifest: dict) -> None:
    """Write the dataset card, then the manifest (last: its presence marks a finished build).

    Both are skipped when an identical manifest and the card are already there.
    """
    data = (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode()
    path, card = out / MANIFEST, [out / name for name in card_files(manifest)]
    if path.exists() and path.read_bytes() == data and all(p.exists() for p in card):
        return
    write_card(out, manifest)
    write_atomic(path, data)
