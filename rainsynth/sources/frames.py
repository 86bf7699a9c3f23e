"""Folders of image sequences (png, jpg, jpeg, bmp, tif), cut into windows.

    ROOT/<sequence>/<frame images>    one sequence per folder holding images, at any depth:
    ROOT/<set>/<sequence>/<images>    its name is its path under ROOT ("davis2016/bear")
    ROOT/<frame images>               or a single sequence

Frames are ordered by natural sort of their file names ("frame2" before "frame10").
"""

from __future__ import annotations

import os

import numpy as np

from rainsynth.errors import SourceError
from rainsynth.sources.base import (
    IMAGE_EXTENSIONS,
    Options,
    Sequence,
    SequenceRef,
    fit_frame,
    natural_key,
    read_image,
    read_images,
    window_starts,
)


class FrameFolderSource:
    """Windows of `frames` images, `stride` apart, from each sequence folder.

    Keys are "NAME@START" (START the 0-based first frame, 4 digits); the group is NAME, the
    folder's path under the root with "/" between its parts (the root folder's own name for a
    single sequence).
    """

    name = "frames"

    def __init__(self, root: str, options: Options) -> None:
        self.root = os.path.abspath(root)
        self.options = options
        self.folders = _sequence_folders(self.root)
        self._files: dict[str, list[str]] = {}

    def files(self, name: str) -> list[str]:
        """The image files of one sequence, in frame order (cached)."""
        if name not in self._files:
            folder = self.folders[name]
            images = [n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS)]
            self._files[name] = [os.path.join(folder, n) for n in sorted(images, key=natural_key)]
        return self._files[name]

    def sequences(self) -> list[SequenceRef]:
        """Every window of every sequence folder, by folder then start frame."""
        refs = []
        for name in self.folders:
            starts = window_starts(len(self.files(name)), self.options.frames, self.options.step)
            refs += [SequenceRef(self.name, f"{name}@{start:04d}", name, None) for start in starts]
        if not refs:
            raise SourceError(
                f"no image sequence under {self.root} has {self.options.frames} frames or more"
            )
        return refs

    def read(self, ref: SequenceRef) -> Sequence:
        """Read one window as (T, H, W, 3) uint8 RGB, resized to the options' size."""
        name, _, start = ref.key.rpartition("@")
        if name not in self.folders or not start.isdigit():
            raise SourceError(f"{ref.key!r} is not a clip of the frames source at {self.root}")
        first = int(start)
        files = tuple(self.files(name)[first : first + self.options.frames])
        if len(files) < self.options.frames:
            raise SourceError(
                f"{self.folders[name]} has {len(self.files(name))} images; the window starting "
                f"at image {first} needs {self.options.frames}"
            )
        size, mode = self.options.size, self.options.resize
        if size is None:
            frames = read_images(files)
        else:
            frames = np.stack([fit_frame(read_image(path), size, mode) for path in files])
        return Sequence(ref, frames, None, files)

    def describe(self) -> dict:
        """Source name, root, options and the sequence folders."""
        return {
            "source": self.name,
            "root": self.root,
            "sequences": list(self.folders),
            **self.options.to_dict(),
        }


def _sequence_folders(root: str) -> dict[str, str]:
    """`name -> folder` of the image sequences under root: every folder below it that holds
    images (name: its path under root, parts joined by "/"), or root itself."""
    if not os.path.isdir(root):
        raise SourceError(
            f"frames root {root} is not a folder; expected a folder of image sequence folders "
            f"or a folder of images ({', '.join(IMAGE_EXTENSIONS)})"
        )
    folders = {}
    for folder, subfolders, _ in os.walk(root):
        subfolders.sort(key=natural_key)
        if folder != root and _has_images(folder):
            folders[os.path.relpath(folder, root).replace(os.sep, "/")] = folder
    if folders:
        return folders
    if _has_images(root):
        return {os.path.basename(root): root}
    entries = sorted(os.listdir(root), key=natural_key)
    raise SourceError(
        f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {root} or its subfolders; "
        f"found: {', '.join(entries[:10]) or 'an empty folder'}"
    )


def _has_images(folder: str) -> bool:
    """True when the folder holds at least one image file."""
    return any(name.lower().endswith(IMAGE_EXTENSIONS) for name in os.listdir(folder))
