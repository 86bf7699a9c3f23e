"""Where the commands write: checks made before any work starts, and permissions.

:func:`check_output` refuses an output that would replace an input or that cannot be created;
:func:`follow_umask` gives a file or folder made by ``tempfile`` (always 0600 / 0700) the
permissions any other tool would give it.
"""

from __future__ import annotations

import os
from pathlib import Path

from rainsynth.errors import RainsynthError


def check_output(path: str | os.PathLike, *inputs: str | os.PathLike, what: str = "output") -> Path:
    """Return ``path`` as a Path if a command may write it; else RainsynthError naming it.

    Refused: ``path`` is one of ``inputs`` (the same file or folder under any spelling, through
    a symlink or a hard link), lies under a file, or its nearest existing folder is read-only.
    """
    path = Path(path)
    for source in inputs:
        if _same(path, Path(source)):
            raise RainsynthError(
                f"{what} {path} is the input {source}: writing it would destroy the input; "
                "choose another path"
            )
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RainsynthError(f"{what} {path} cannot be created: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise RainsynthError(f"{what} {path} cannot be created: folder {parent} is not writable")
    return path


def _same(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def follow_umask(path: str | os.PathLike) -> None:
    """chmod a file to 0666, a folder to 0777, less the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if os.path.isdir(path) else 0o666) & ~mask)
