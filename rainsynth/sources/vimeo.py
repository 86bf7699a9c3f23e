"""Vimeo-90K septuplets in their original layout.

    ROOT/sequences/%05d/%04d/im1.png ... im7.png     (448x256 RGB)
    ROOT/sep_trainlist.txt, ROOT/sep_testlist.txt    (one "%05d/%04d" a line)

Each listed septuplet is one clip, key "%05d/%04d" (or several when ``frames < 7``, cut with
``stride``, keys "%05d/%04d@N" for the window starting at imN.png); its subset comes from the
list that names it and its group is the ``%05d`` folder. The official lists put septuplets of
one ``%05d`` folder on both sides, so splits follow the lists rather than the groups.
"""

from __future__ import annotations

import os

from rainsynth.errors import SourceError
from rainsynth.sources.base import (
    Options,
    Sequence,
    SequenceRef,
    fit_frames,
    read_images,
    window_starts,
)

SEPTUPLET = 7
LISTS = {"train": "sep_trainlist.txt", "test": "sep_testlist.txt"}
LAYOUT = (
    "ROOT/sequences/%05d/%04d/im1.png..im7.png with ROOT/sep_trainlist.txt and "
    "ROOT/sep_testlist.txt (the Vimeo-90K septuplet layout)"
)


class VimeoSource:
    """Clips from a Vimeo-90K septuplet folder (see the module docstring for the layout)."""

    name = "vimeo90k"

    def __init__(self, root: str, options: Options) -> None:
        if options.frames > SEPTUPLET:
            raise SourceError(
                f"frames={options.frames} is longer than a Vimeo-90K septuplet ({SEPTUPLET} frames)"
            )
        self.root = os.path.abspath(root)
        self.options = options
        _check_layout(self.root)

    def sequences(self) -> list[SequenceRef]:
        """Every window of every septuplet named in the two lists, sorted by key."""
        entries = {subset: _read_list(self.root, file) for subset, file in LISTS.items()}
        _check_entries(self.root, entries)
        starts = window_starts(SEPTUPLET, self.options.frames, self.options.step)
        refs = []
        for subset, names in entries.items():
            for name in names:
                for start in starts:
                    key = name if len(starts) == 1 else f"{name}@{start + 1}"
                    refs.append(SequenceRef(self.name, key, name.split("/")[0], subset))
        return sorted(refs, key=lambda ref: ref.key)

    def read(self, ref: SequenceRef) -> Sequence:
        """Read the PNG frames of one clip as (T, H, W, 3) uint8 RGB."""
        name, _, start = ref.key.partition("@")
        first = int(start) if start else 1
        folder = os.path.join(self.root, "sequences", name)
        files = tuple(
            os.path.join(folder, f"im{i}.png") for i in range(first, first + self.options.frames)
        )
        frames = fit_frames(read_images(files), self.options.size, self.options.resize)
        return Sequence(ref, frames, None, files)

    def describe(self) -> dict:
        """Source name, root and options."""
        return {"source": self.name, "root": self.root, **self.options.to_dict()}


def _check_layout(root: str) -> None:
    """Raise SourceError saying what was expected and what was found when `root` is not Vimeo."""
    if not os.path.isdir(root):
        raise SourceError(f"Vimeo-90K root {root} does not exist; expected {LAYOUT}")
    missing = [
        name
        for name in ("sequences", *LISTS.values())
        if not os.path.exists(os.path.join(root, name))
    ]
    if not missing:
        return
    found = sorted(os.listdir(root))
    shown = ", ".join(found[:10]) + (f", ... ({len(found)} entries)" if len(found) > 10 else "")
    hint = ""
    if os.path.basename(root) == "sequences" or _looks_like_groups(found):
        hint = "; it looks like the sequences folder itself: pass its parent as the root"
    raise SourceError(
        f"{root} is not a Vimeo-90K septuplet folder: missing {', '.join(missing)}; "
        f"expected {LAYOUT}; found: {shown or 'an empty folder'}{hint}"
    )


def _looks_like_groups(names: list[str]) -> bool:
    """True when the folder holds %05d entries, like Vimeo-90K's sequences folder."""
    return bool(names) and all(len(n) == 5 and n.isdigit() for n in names)


def _read_list(root: str, file: str) -> list[str]:
    """The "%05d/%04d" entries of one list file (blank lines skipped)."""
    path = os.path.join(root, file)
    with open(path, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    entries = [line for line in lines if line]
    for number, entry in enumerate(entries, 1):
        parts = entry.split("/")
        if len(parts) != 2 or not all(part.isdigit() for part in parts):
            raise SourceError(f"{path} entry {number} is {entry!r}; expected '%05d/%04d'")
    return entries


def _check_entries(root: str, entries: dict[str, list[str]]) -> None:
    """Raise SourceError naming the first listed septuplet folder that does not exist."""
    sequences = os.path.join(root, "sequences")
    present: dict[str, set[str]] = {}
    seen: dict[str, str] = {}
    for subset, names in entries.items():
        for name in names:
            if name in seen:
                raise SourceError(
                    f"{name} is listed twice (in {LISTS[seen[name]]} and {LISTS[subset]} of {root})"
                )
            seen[name] = subset
            group, clip = name.split("/")
            if group not in present:
                folder = os.path.join(sequences, group)
                present[group] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
            if clip not in present[group]:
                raise SourceError(
                    f"{os.path.join(root, LISTS[subset])} lists {name}, but "
                    f"{os.path.join(sequences, name)} does not exist"
                )
