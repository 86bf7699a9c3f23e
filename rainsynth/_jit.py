"""numba kernels: compiled once (cached on disk where possible) and run on a pool of threads.

Kernels are plain ``njit(nogil=True)`` functions over an index range ``[start, stop)`` of
independent items (frames or image rows). ``run_parallel`` splits the range into one contiguous
chunk per thread and runs the chunks on Python threads, which run truly in parallel because the
kernels release the GIL. Each item is computed by the same code whatever the split, so results
are bit-identical for any number of threads. (numba's ``parallel=True`` would do the same split
but costs several seconds of compiling per kernel on first use.)
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cache

import numba
import numpy as np


def _cache_writable() -> bool:
    """True when numba can write its cache next to this package (or to NUMBA_CACHE_DIR)."""
    folder = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.path.dirname(__file__), "__pycache__"
    )
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            return True
    except OSError:
        return False


def jit(fn):
    """``numba.njit(nogil=True)``, cached on disk when the cache folder is writable.

    fastmath stays off, so results do not depend on the vector width.
    """
    return numba.njit(cache=_cache_writable(), nogil=True)(fn)


_threads: int | None = None


def set_num_threads(count: int) -> None:
    """Render with `count` threads from now on (default: NUMBA_NUM_THREADS, i.e. all cores)."""
    global _threads
    if not isinstance(count, int) or count < 1:
        raise ValueError(f"thread count must be an integer >= 1, got {count!r}")
    _threads = count


def get_num_threads() -> int:
    """Threads used by rendering: ``set_num_threads``'s value, else NUMBA_NUM_THREADS.

    Read from numba's configuration, never from numba's thread pool, which would start it (and
    its OpenMP layer would reset torch's thread count in the same process).
    """
    return _threads or numba.config.NUMBA_NUM_THREADS


@cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rainsynth")


# A forked child (a DataLoader worker) inherits the pools but not their threads: it starts its own.
os.register_at_fork(after_in_child=_pool.cache_clear)


def run_parallel(kernel, count: int, *args) -> None:
    """Run ``kernel(start, stop, *args)`` over [0, count) on ``get_num_threads()`` threads."""
    threads = min(get_num_threads(), count)
    if threads <= 1:
        kernel(0, count, *args)
        return
    bounds = np.linspace(0, count, threads + 1).astype(np.int64)
    chunks = [
        _pool(threads).submit(kernel, int(a), int(b), *args)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    for chunk in chunks:
        chunk.result()
