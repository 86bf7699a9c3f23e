"""The one TOML reader of rainsynth and derain: presets, dataset recipes and training configs.

    data = load_toml(path)                        # dict; RainsynthError naming the file
    data = load_toml(path, error=ConfigError)     # the caller's own RainsynthError subclass

The error's ``__cause__`` is the underlying OSError, UnicodeDecodeError or TOMLDecodeError, for a
caller that words the message its own way.
"""

from __future__ import annotations

import os
from pathlib import Path

from rainsynth.compat import tomllib
from rainsynth.errors import RainsynthError


def load_toml(path: str | os.PathLike, *, error: type[RainsynthError] = RainsynthError) -> dict:
    """The table of TOML file ``path`` as a dict. Raises ``error`` naming the file when it cannot
    be read ("<path>: cannot be read: ...") or is not TOML ("<path>: not valid TOML: ...")."""
    try:
        text = Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"{path}: cannot be read: {exc}") from exc
    return loads_toml(text, path, error=error)


def loads_toml(text: str, source: object, *, error: type[RainsynthError] = RainsynthError) -> dict:
    """The table of TOML ``text`` read from ``source`` (a path or a description, named in the
    error) as a dict; ``error`` "<source>: not valid TOML: ..." when it is not TOML."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{source}: not valid TOML: {exc}") from exc
