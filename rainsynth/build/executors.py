"""Where the jobs of a build run: in this process, on a local process pool, or on a Dask
cluster. Each yields the results of :func:`~rainsynth.build.clip.build_clip` as they finish."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2

import rainsynth
from rainsynth.build.clip import build_clip
from rainsynth.build.plan import BuildOptions, Job
from rainsynth.compat import require
from rainsynth.errors import RainsynthError

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_jobs(
    jobs: list[Job], options: BuildOptions, out: Path, *, workers: int, scheduler: str | None
) -> Iterator[dict]:
    """Run build_clip over jobs; yield results as they finish (any order).

    workers=1 without a scheduler runs in this process; more use a spawn process pool; a
    scheduler address runs on that Dask cluster. The first error cancels what has not started.
    """
    if scheduler is not None:
        yield from _run_dask(jobs, options, out, scheduler)
    elif min(workers, len(jobs)) == 1:
        threads = cv2.getNumThreads(), rainsynth.get_num_threads()
        cv2.setNumThreads(1)
        try:
            for job in jobs:
                yield build_clip(job, options, str(out))
        finally:
            cv2.setNumThreads(threads[0])
            rainsynth.set_num_threads(threads[1])
    else:
        yield from _run_pool(jobs, options, out, min(workers, len(jobs)))


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


def _run_pool(jobs: list[Job], options: BuildOptions, out: Path, workers: int) -> Iterator[dict]:
    """Run jobs on a spawn process pool, keeping only a few per worker queued at a time."""
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker)
    queue = iter(jobs)
    running: set = set()
    try:
        while True:
            for job in itertools.islice(queue, 2 * workers - len(running)):
                running.add(pool.submit(build_clip, job, options, str(out)))
            if not running:
                return
            done, running = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


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


def _run_dask(jobs: list[Job], options: BuildOptions, out: Path, address: str) -> Iterator[dict]:
    """Run jobs on the Dask cluster at ``address`` (every worker must see ``out``)."""
    distributed = require("distributed")
    try:
        client = distributed.Client(address, timeout="20s")
    except OSError as error:
        raise RainsynthError(f"cannot reach the Dask scheduler at {address!r}: {error}") from None
    with client:
        futures = [client.submit(build_clip, job, options, str(out), pure=False) for job in jobs]
        try:
            for future in distributed.as_completed(futures):
                yield future.result()
        finally:
            client.cancel(futures)
