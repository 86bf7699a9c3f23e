"""Build a paired rain/clean video dataset (``rainsynth build``).

    manifest = build(BuildOptions(source="vimeo90k", root="vimeo_septuplet"), "out/data")

The jobs of a build (:mod:`.plan`) each read, render and write one clip, in-process
(``workers=1``), on a local process pool, or on a Dask cluster (:mod:`.executors`); the dataset
folder is locked while they run, a rerun resumes what a killed one left, and the card and manifest
come last (:mod:`.output`). The command line is :mod:`rainsynth.build_cli`.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from tqdm import tqdm

from rainsynth.build import output
from rainsynth.build.executors import check_scheduler, run_jobs
from rainsynth.build.plan import BuildOptions, forget_sources, make_plan
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
        with output.locked(out):
            records = output.existing_records(plan, out)
            stale = output.remove_temp_files(out)
            if stale:
                echo(f"removed {len(stale)} unfinished file(s) of an interrupted build")
            for skip in plan.unreadable:
                echo(f"skipped {skip['file']}: {skip['error']}")
            todo = [job for job in plan.jobs if job.index not in records]
            planned = output.counts(job.describe() for job in plan.jobs)
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
                            records[result["built"]["clip"]] = output.record(result["built"])
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
