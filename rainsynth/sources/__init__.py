"""Clip sources for dataset building: Vimeo-90K, video files, frame folders, and a built-in one.

    source = open_source("vimeo90k", root="vimeo_septuplet")   # or "videos", "frames"
    source = open_source("builtin", count=48, seed=0)          # offline, exact flow
    refs = source.sequences()                                  # cheap, deterministic order
    parts = split_sequences(refs, "900/100", seed=0)           # {"train": [...], "test": [...]}
    clip = source.read(parts["train"][0])   # clip.frames (T, H, W, 3) uint8; clip.flow or None

Every source yields windows of `frames` frames, `stride` apart (default: no overlap), resized to
`size` = (H, W) when given: "crop" scales the shortest side to cover the size and cuts the centre;
"scale" resizes plainly. Unreadable input raises rainsynth.errors.SourceError naming the file.
"""

from __future__ import annotations

from typing import Any

from rainsynth.errors import SourceError
from rainsynth.sources.base import Options, Sequence, SequenceRef, Source, check_options
from rainsynth.sources.builtin import BuiltinSource
from rainsynth.sources.frames import FrameFolderSource
from rainsynth.sources.split import parse_split, split_sequences
from rainsynth.sources.videos import VideoSource
from rainsynth.sources.vimeo import VimeoSource

SOURCES = {
    "builtin": BuiltinSource,
    "vimeo90k": VimeoSource,
    "videos": VideoSource,
    "frames": FrameFolderSource,
}
"""Source name -> class; "builtin" (the default) takes no root."""


def open_source(
    name: str, *, root: str | None = None, on_error: str = "fail", **options: Any
) -> Source:
    """Open the source `name` (one of SOURCES) with the shared options (the fields of
    :class:`~rainsynth.sources.base.Options`, with its defaults).

    root: the Vimeo-90K folder, a video file or folder of them, or a folder of frame folders
    (not used by "builtin"). frames: clip length T. stride: frames between window starts.
    size: (H, W) output size, None for native (builtin: 256x448). resize: "crop" or "scale".
    seed: drives the builtin source's motions. count: number of builtin synthetic clips (the
    other sources refuse it: SourceError).
    on_error: "skip" makes the videos source leave out the files whose header cannot be read
    (listed in its ``unreadable``) instead of raising SourceError.
    """
    options = check_options(Options(**options))
    if name not in SOURCES:
        raise SourceError(f"unknown source {name!r}; choose one of {', '.join(SOURCES)}")
    if name == "builtin":
        if root is not None:
            raise SourceError("the builtin source takes no root (its clips ship with the package)")
        return BuiltinSource(options)
    if root is None:
        raise SourceError(f"the {name} source needs a root (a path); none was given")
    if options.count is not None:
        raise SourceError("count applies to the builtin source only; use the split to choose")
    if name == "videos":
        return VideoSource(str(root), options, skip_unreadable=on_error == "skip")
    return SOURCES[name](str(root), options)


__all__ = [
    "SOURCES",
    "Sequence",
    "SequenceRef",
    "Source",
    "SourceError",
    "open_source",
    "parse_split",
    "split_sequences",
]
