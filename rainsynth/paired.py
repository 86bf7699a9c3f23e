"""Plain paired folders made elsewhere: rain frames and clean frames side by side, no layers.

Accepted layouts (names are matched without regard to case):

    DIR/<X>_Rain/0001.png ...   DIR/<X>_GT/0001.png ...        one clip per pair of folders
    DIR/LQ/<clip>/0001.png ...  DIR/GT/<clip>/0001.png ...     BasicSR / mmagic: a clip per
                                                               subfolder, the same names in both
    DIR/<clip>/rain/...         DIR/<clip>/clean/...           pairs at any depth under DIR

Two sibling folders pair up when their names are the same but for one word: a rain word
(rain, rainy, lq, input) in one and a clean word (gt, clean, hq, target, norain) in the other,
between separators ("_", "-", ".", " ") or alone ("LQ" / "GT"). A rain folder's frames pair
with the clean frames of the same file name without extension ("0001.jpg" with "0001.png"), in
natural order; a frame missing on one side, or two frames of one name, is an error naming them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rainsynth.dataset import CLIP_FILE, read_dataset, to_float
from rainsynth.errors import RainsynthError
from rainsynth.sources.base import IMAGE_EXTENSIONS, natural_key, read_images

RAIN_WORDS = ("rain", "rainy", "lq", "input")
CLEAN_WORDS = ("gt", "clean", "hq", "target", "norain")
LAYOUTS = "X_Rain/ + X_GT/, LQ/<clip>/ + GT/<clip>/, or <clip>/rain/ + <clip>/clean/"


@dataclass(frozen=True)
class PairedClip:
    """One clip of a paired folder: rain and clean frame files in frame order.

    preset: the pair's name (X of X_Rain / X_GT; "paired" when the names are only the words);
    name: the clip (its subfolder, or the pair's name); split is "" (a paired folder has none).
    A paired clip knows no rain layers and no flow: layers() and flow() are None. Its methods
    are DatasetClip's, so that a reader takes either.
    """

    preset: str
    name: str
    rain_files: tuple[str, ...]
    clean_files: tuple[str, ...]
    split: str = ""

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return len(self.rain_files)

    @property
    def path(self) -> Path:
        """The folder of the rain frames."""
        return Path(self.rain_files[0]).parent

    def rain(self, frames: slice = slice(None)) -> np.ndarray:
        """The rain frames (T, H, W, 3) float32 in [0, 1]."""
        return to_float(self.stored_frames("rain", frames))

    def clean(self, frames: slice = slice(None)) -> np.ndarray:
        """The clean frames (T, H, W, 3) float32 in [0, 1]."""
        return to_float(self.stored_frames("clean", frames))

    def stored_frames(self, kind: str, frames: slice = slice(None)) -> np.ndarray:
        """The frames of ``kind`` ("rain" or "clean") as stored, (T, H, W, 3) uint8 RGB."""
        return read_images({"rain": self.rain_files, "clean": self.clean_files}[kind][frames])

    def layers(self) -> None:
        """No rain layers are known."""
        return None

    def stored_layers(self) -> None:
        """No rain layers are stored."""
        return None

    @property
    def has_layers(self) -> bool:
        """No rain layers are known: False."""
        return False

    @property
    def has_flow(self) -> bool:
        """No flow is known: False."""
        return False

    def flow(self) -> None:
        """No flow is known."""
        return None


def read_clips(root: str | os.PathLike, *, split: str | None = None) -> list:
    """The clips under root: a dataset built by ``rainsynth build`` (DatasetClip, of ``split``
    when given) or else a plain paired folder (PairedClip, ``split`` unused)."""
    root = Path(root)
    if (root / "manifest.json").exists() or any(root.glob(f"*/*/*/{CLIP_FILE}")):
        return read_dataset(root, split=split)
    return read_paired(root)


def read_paired(root: str | os.PathLike) -> list[PairedClip]:
    """Every clip of the paired folders under root, sorted by pair and clip name.

    Raises RainsynthError when root holds no pair, or a pair's frames do not match.
    """
    root = Path(root)
    if not root.is_dir():
        raise RainsynthError(f"{root} is not a folder")
    clips = []
    for folder, subfolders, _ in os.walk(root):
        subfolders.sort(key=natural_key)
        pairs = _pairs(subfolders)
        for rain, clean in pairs:
            subfolders.remove(rain)
            subfolders.remove(clean)
            base = Path(folder).relative_to(root) / _pair_name(rain)
            clips += _pair_clips(Path(folder) / rain, Path(folder) / clean, base.as_posix())
    if not clips:
        raise RainsynthError(
            f"{root} is neither a dataset built by `rainsynth build` nor a paired folder; "
            f"expected {LAYOUTS} holding frames ({', '.join(IMAGE_EXTENSIONS)})"
        )
    return clips


def _swap_word(name: str, words: tuple[str, ...]) -> str | None:
    """name with its one word from ``words`` replaced by "*", or None when it has none or two."""
    parts = re.split(r"([ ._-]+)", name)
    hits = [i for i, part in enumerate(parts) if part.lower() in words]
    if len(hits) != 1:
        return None
    parts[hits[0]] = "*"
    return "".join(parts)


def _pairs(names: list[str]) -> list[tuple[str, str]]:
    """(rain folder, clean folder) pairs among sibling folder names."""
    clean = {_swap_word(name, CLEAN_WORDS): name for name in names}
    clean.pop(None, None)
    pairs = []
    for name in names:
        key = _swap_word(name, RAIN_WORDS)
        if key is not None and key in clean:
            pairs.append((name, clean[key]))
    return pairs


def _pair_name(rain: str) -> str:
    """The pair's name: the rain folder's name without its rain word ("X_Rain" -> "X")."""
    return re.sub(r"^[ ._-]+|[ ._-]+$", "", _swap_word(rain, RAIN_WORDS).replace("*", ""))


def _pair_clips(rain: Path, clean: Path, base: str) -> list[PairedClip]:
    """The clips of one pair of folders: their own frames, or one per common subfolder."""
    preset = base.strip("./") or "paired"
    if _frames(rain):
        return [_clip(rain, clean, preset, preset)]
    subfolders = sorted((p.name for p in rain.iterdir() if p.is_dir()), key=natural_key)
    clips = []
    for name in subfolders:
        if not (clean / name).is_dir():
            raise RainsynthError(f"{rain / name} has no clean counterpart {clean / name}")
        clips.append(_clip(rain / name, clean / name, preset, name))
    if not clips:
        raise RainsynthError(f"{rain} holds no frames and no clip folders")
    return clips


def _clip(rain: Path, clean: Path, preset: str, name: str) -> PairedClip:
    """Pair the frames of two folders by file name without extension."""
    rain_frames, clean_frames = _frames(rain), _frames(clean)
    sides = ((rain_frames, clean_frames, clean), (clean_frames, rain_frames, rain))
    for frames, other, there in sides:
        alone = sorted(set(frames) - set(other), key=natural_key)
        if alone:
            raise RainsynthError(f"frame {frames[alone[0]]} has no counterpart in {there}")
    order = sorted(rain_frames, key=natural_key)
    return PairedClip(
        preset,
        name,
        tuple(rain_frames[stem] for stem in order),
        tuple(clean_frames[stem] for stem in order),
    )


def _frames(folder: Path) -> dict[str, str]:
    """{file name without extension: path} of the images in folder; two images of one name
    (0001.png and 0001.jpg) raise RainsynthError naming both."""
    frames: dict[str, str] = {}
    for path in folder.iterdir():
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
            if path.stem in frames:
                raise RainsynthError(f"{frames[path.stem]} and {path} are two frames of one name")
            frames[path.stem] = str(path)
    return frames
