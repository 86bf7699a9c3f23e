"""The jobs of a build: :func:`build_clip` reads, renders and writes one clip, and
:func:`run_jobs` runs them in this process, on a local process pool, or on a Dask cluster."""

from __future__ import annotations

import ctypes
import itertools
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import cv2

import rainsynth
from rainsynth import browser, dataset
from rainsynth.build.plan import BuildOptions, Job, open_build_source
from rainsynth.compat import require
from rainsynth.errors import RainsynthError, SourceError
from rainsynth.presets import sample_params

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def build_clip(job: Job, options: BuildOptions, out: str | os.PathLike) -> dict:
    """Read, render and write one clip (runs in a worker). Returns {"built": its clip.json}, or
    {"skipped": a skip record}.

    The clip's browser previews (:mod:`rainsynth.browser`) are written first, then its folder,
    atomically (:func:`rainsynth.dataset.write_stored_clip`). A SourceError (unreadable
    sequence) is returned as {"skipped": ...} when on_error is "skip", else raised with the
    clip named. OSError (e.g. a full disk) propagates; the partial clip is removed first.
    """
    rainsynth.set_num_threads(1)  # workers are processes (or Dask threads): one thread each
    try:
        sequence = open_build_source(options).read(job.ref)
    except SourceError as error:
        if options.on_error == "skip":
            return {"skipped": {**job.describe(), "error": str(error)}}
        raise SourceError(
            f"cannot build clip {job.split}/{job.preset.name}/{job.name}: {error}; fix or "
            "remove the file, or pass --on-error skip to record the sequence as skipped"
        ) from None
    clean, flow, shape = sequence.frames, sequence.flow, sequence.frames.shape[:3]
    params = sample_params(job.preset, seed=options.seed, shape=shape, clip=job.index)
    clip = rainsynth.render(clean, params)
    rain, layers = dataset.to_uint8(clip.rain), dataset.encode_layers(clip.layers)
    info = {
        **job.describe(),
        "build": job.build,
        "seed": options.seed,
        "files": list(sequence.files),
        "shape": list(shape),
        "flow": flow is not None,
    }
    images = {"rain": rain, "clean": clean, "layers": layers, "flow": flow}
    browser.write_previews(Path(out), job.index, **images)
    dataset.write_stored_clip(job.folder(Path(out)), **images, params=params, info=info)
    return {"built": info}


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_jobs(
    jobs: list[Job], options: BuildOptions, out: Path, *, workers: int, scheduler: str | None
) -> Iterator[dict]:
    """Run build_clip over jobs; yield results as they finish (any order).

    workers=1 without a scheduler runs in this process; more use a spawn process pool, keeping
    two jobs per worker queued at most; a scheduler address runs on that Dask cluster (every
    worker must see ``out``). The first error cancels what has not started.
    """
    workers = min(workers, len(jobs))
    if scheduler is not None:
        distributed = require("distributed")
        try:
            client = distributed.Client(scheduler, timeout="20s")
        except OSError as error:
            raise RainsynthError(
                f"cannot reach the Dask scheduler at {scheduler!r}: {error}"
            ) from None
        with client:
            futures = [client.submit(build_clip, job, options, out, pure=False) for job in jobs]
            try:
                yield from (future.result() for future in distributed.as_completed(futures))
            finally:
                client.cancel(futures)
    elif workers == 1:
        threads = cv2.getNumThreads(), rainsynth.get_num_threads()
        cv2.setNumThreads(1)
        try:
            yield from (build_clip(job, options, out) for job in jobs)
        finally:
            cv2.setNumThreads(threads[0])
            rainsynth.set_num_threads(threads[1])
    else:
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
        queue, running = iter(jobs), set()
        try:
            while True:
                for job in itertools.islice(queue, 2 * workers - len(running)):
                    running.add(pool.submit(build_clip, job, options, out))
                if not running:
                    return
                done, running = wait(running, return_when=FIRST_COMPLETED)
                yield from (future.result() for future in done)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _init_worker() -> None:
    """Process-pool worker setup: one OpenCV thread (the processes give the parallelism), and on
    Linux, die with the process that started this one, so a killed build leaves no worker
    writing behind it."""
    cv2.setNumThreads(1)
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)


def check_scheduler(address: str) -> None:
    """RainsynthError unless ``address`` reads as a Dask scheduler address (HOST:PORT)."""
    addressing = require("distributed.comm.addressing")
    try:
        addressing.get_address_host_port(address)
    except (ValueError, TypeError) as error:
        raise RainsynthError(
            f"--scheduler {address!r} is not a Dask scheduler address, e.g. tcp://host:8786 "
            f"({error})"
        ) from None
