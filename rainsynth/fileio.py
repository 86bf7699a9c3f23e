"""Files the commands write and read: atomic writes, PNG encoding, video file names, frame sizes
and the labels drawn on the images they show.

    write_atomic(path, data)             # a file is either its old or its new bytes, never half
    with atomic_file(path) as temp: ...  # write `temp` by name (e.g. ffmpeg), renamed to `path`
    with atomic_folder(path) as temp: ...  # fill folder `temp`, renamed to `path` when complete
    write_png(path, rgb, compression=1)  # (H, W, 3) uint8 RGB as PNG
    parse_size("256x448") -> (256, 448)

A temporary file or folder is named ``.tmp-<name>-<pid>`` beside its target, so a reader never
lists it and the command that left it (when killed) can find and remove it.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

TEMP_PREFIX = ".tmp-"
"""Name prefix of temporary files and folders."""
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v")
"""File name endings read as video (lower case)."""


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write, ``.tmp-<stem>-<pid><suffix>`` (the
    suffix kept for writers that choose the format by the name); it replaces ``path`` when the
    block ends and is removed when the block raises (``path`` keeps its old bytes, if any)."""
    path = Path(path)
    temp = path.parent / f"{TEMP_PREFIX}{path.stem}-{os.getpid()}{path.suffix}"
    try:
        yield temp
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_folder(path: Path) -> Iterator[Path]:
    """Yield a new temporary folder beside ``path`` (its parent is created) to fill; it is
    renamed to ``path`` (which must not exist, or be an empty folder removed in the block) when
    the block ends, and deleted with its contents when the block raises."""
    path = Path(path)
    temp = path.parent / f"{TEMP_PREFIX}{path.name}-{os.getpid()}"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        temp.mkdir()
        yield temp
        os.rename(temp, path)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary sibling renamed into place (never half-written)."""
    with atomic_file(path) as temp:
        temp.write_bytes(data)


def encode_png(rgb: np.ndarray, compression: int | None = None, *, name: object = "image") -> bytes:
    """PNG bytes of an (H, W, 3) uint8 RGB image.

    compression: cv2.IMWRITE_PNG_COMPRESSION, 0-9 (zlib level, default strategy); None for
    OpenCV's default (level 1, RLE strategy). OSError naming ``name`` when encoding fails.
    """
    flags = [] if compression is None else [cv2.IMWRITE_PNG_COMPRESSION, compression]
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), flags)
    if not ok:
        raise OSError(f"could not encode {name} as PNG")
    return encoded.tobytes()


def write_png(path: Path, rgb: np.ndarray, compression: int | None = None) -> None:
    """Write an (H, W, 3) uint8 RGB image as PNG (:func:`encode_png`), atomically; OSError
    (e.g. disk full) names the file."""
    write_atomic(Path(path), encode_png(rgb, compression, name=path))


def parse_size(text: str) -> tuple[int, int]:
    """(H, W) in px from "HxW" text: "256x448" -> (256, 448) (spaces and "X" allowed); ValueError
    when it is not two non-negative integers."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match:
        raise ValueError(f"{text!r} is not HEIGHTxWIDTH")
    return int(match[1]), int(match[2])


def draw_label(image: np.ndarray, text: str, origin: tuple[int, int], scale: float) -> None:
    """Write ``text`` (font ``scale``, bottom-left corner ``origin`` (x, y) in px) into an
    (H, W, 3) uint8 image in place, white on a black outline: readable on any background."""
    for colour, thickness in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(
            image, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, colour, thickness, cv2.LINE_AA
        )
