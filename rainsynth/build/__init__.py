"""Build a paired rain/clean video dataset (``rainsynth build``).

    manifest = build(BuildOptions(source="vimeo90k", root="vimeo_septuplet"), "out/data")

The jobs of a build (:mod:`.plan`) each read, render and write one clip (:mod:`.clip`), in-process
(``workers=1``), on a local process pool, or on a Dask cluster (:mod:`.executors`); the dataset
folder is locked while they run, a rerun resumes what a killed one left, and the card and manifest
come last (:mod:`.output`). The command line is :mod:`rainsynth.build_cli`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

from rainsynth.build import output
from rainsynth.build.executors import check_scheduler, run_jobs
from rainsynth.build.plan import BuildOptions, Job, forget_sources, make_plan
from rainsynth.outputs import check_output

__all__ = ["BuildOptions", "build", "make_plan"]


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
        check_scheduler(scheduler)
    with forget_sources():
        plan, options = make_plan(options)
        with output.locked(out):
            records = output.existing_records(plan, out)
            stale = output.remove_temp_files(out)
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
            results = run_jobs(todo, options, out.absolute(), workers=workers, scheduler=scheduler)
            skipped = _collect(results, len(todo), progress, records)
            clips = [records[i] for i in sorted(records)]
            manifest = {
                **plan.header,
                "counts": output.counts(clips),
                "clips": clips,
                "skipped": plan.unreadable + [skipped[i] for i in sorted(skipped)],
            }
            output.finish(out, manifest)
    skips = len(manifest["skipped"])
    echo(
        f"wrote {len(clips)} clips" + (f", skipped {skips}" if skips else "")
        + f" to {out} (manifest.json, README.md, index.html)"
    )  # fmt: skip
    return manifest


def _collect(results: Iterator[dict], total: int, progress: bool, records: dict) -> dict:
    """Add the records of the ``total`` clips built in ``results`` to ``records`` (by clip index)
    with a progress bar; return the skip records (by clip index)."""
    skipped: dict[int, dict] = {}
    if not total:
        return skipped
    from tqdm import tqdm

    with tqdm(total=total, unit="clip", desc="build", disable=not progress) as bar:
        for result in results:
            if "built" in result:
                records[result["built"]["clip"]] = output.record(result["built"])
            else:
                skip = result["skipped"]
                skipped[skip["clip"]] = skip
                bar.write(
                    f"skipped {skip['split']}/{skip['preset']}/{skip['name']}: {skip['error']}"
                )
            bar.update()
    return skipped


def _counts_text(jobs: list[Job]) -> str:
    """Clips per split and preset in words: "train light 4, train heavy 4, test light 2"."""
    return ", ".join(
        f"{side} {preset} {n}"
        for side, presets in output.counts(job.describe() for job in jobs).items()
        for preset, n in presets.items()
    )
