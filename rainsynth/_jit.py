"""numba ``njit`` with an on-disk cache that falls back cleanly where the cache folder is read-only."""

from __future__ import annotations

import os
import tempfile

import numba


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


_CACHE = _cache_writable()


def jit(*, parallel: bool = False):
    """``numba.njit(cache=..., parallel=..., fastmath=False)``: cached when the cache folder is writable.

    fastmath stays off so results do not depend on the vector width or thread count.
    """
    return numba.njit(cache=_CACHE, parallel=parallel, nogil=True)
