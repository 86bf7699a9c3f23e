"""What differs between installs: the TOML reader of each Python version, and the optional
dependencies (the extras of setup.cfg).

    from rainsynth.compat import tomllib     # tomllib, or tomli on Python 3.10
    torch = require("torch")                 # the module, or MissingExtraError naming the extra
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

from rainsynth.errors import MissingExtraError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

__all__ = ["EXTRAS", "require", "tomllib"]

EXTRAS = {
    "torch": "derain",
    "safetensors": "derain",
    "distributed": "dask",
    "matplotlib": "card",
}
"""Top-level module -> the extra of setup.cfg that installs it."""


def require(module: str) -> ModuleType:
    """Import an optional dependency; when it is missing, raise MissingExtraError with the
    one-line ``pip install`` that provides it (its extra, or the package itself)."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        top = module.partition(".")[0]
        if error.name != top:
            raise
        extra = EXTRAS.get(top)
        install = f"'rainsynth[{extra}]'" if extra else top
        raise MissingExtraError(f"{top} is not installed; run: pip install {install}") from None
