"""The on-disk dataset format: one folder per clip, written atomically, and its reader.

    ROOT/manifest.json                    generator, command, seed, source, one record per clip
    ROOT/README.md                        the dataset card (counts, histograms, preview)
    ROOT/index.html, ROOT/browser/        the dataset browser and its previews
                                          (:mod:`rainsynth.browser`)
    ROOT/<split>/<preset>/<clip>/
        rain/0001.png ...                 O~ of Eq. 4, 8-bit RGB PNG
        clean/0001.png ...                B, 8-bit RGB PNG
        layers.npz                        S, U, beta, alpha, A, M (see "Layer encoding"), and for
                                          a physical preset's clip splash, lens_alpha, lens
        flow.npz                          "flow": exact backward flow (T-1, H, W, 2) float32, px
                                          (only when the source knows it: the builtin source)
        params.json                       RainParams.to_dict() of the clip
        clip.json                         what the clip was built from (source reference, files,
                                          split, preset, seed, clip index) and its shape

Layer encoding: the full-resolution layers S, U, beta, alpha, (T, H, W, 1) (S (T, H, W, 3) for a
physical preset), and a physical preset's splash, lens (T, H, W, 3) and lens_alpha (T, H, W, 1),
are stored as uint8 ``q`` with their range ``<name>_range`` = [lo, hi] (float32):
``value = lo + q * (hi - lo) / 255``, rounded to nearest, so the error is at most
(hi - lo) / 510 <= 1/510, no coarser than the 8-bit PNG frames. A and M, (T, 1, 1, 3), are stored
as float32 as they are. The arrays are deflated (zip level 1) into a standard ``.npz`` that
``numpy.load`` opens; its zip entries carry a fixed date, so equal clips give equal bytes.

A clip folder is written under a temporary name (``.tmp-<clip>-<pid>``) in its preset folder and
renamed into place when complete, so a reader never sees half a clip.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rainsynth.composite import PHYSICAL_LAYERS, to_uint8
from rainsynth.errors import RainsynthError
from rainsynth.fileio import TEMP_PREFIX, atomic_folder, write_png
from rainsynth.params import RainParams

LAYERS = ("S", "U", "beta", "A", "alpha", "M")
QUANTISED = ("S", "U", "beta", "alpha") + PHYSICAL_LAYERS
"""Layers stored as uint8 with a [lo, hi] range; the others (A, M) are stored as float32. A
physical preset's own layers (PHYSICAL_LAYERS) are stored only when present, so other clips'
files are as they were."""
PNG_COMPRESSION = 1
"""cv2.IMWRITE_PNG_COMPRESSION of the frames: zlib level 1 with zlib's default (filtered)
strategy. On 448x256 frames (benchmarks/build_speed.py) it writes in ~5.5 ms, 1.5x faster than
level 3 for ~4% more bytes, and its files are ~15% smaller than OpenCV's default (level 1 with
the RLE strategy, ~3.4 ms); reading costs the same (~2.3 ms) at every level."""
ZIP_LEVEL = 1
"""Deflate level of layers.npz and flow.npz."""
ENCODING = {
    "frames": f"8-bit RGB PNG, OpenCV IMWRITE_PNG_COMPRESSION {PNG_COMPRESSION}",
    "layers": "S, U, beta, alpha: uint8 q with <name>_range [lo, hi], value = lo + q (hi - lo) "
    f"/ 255; A, M: float32; deflate level {ZIP_LEVEL}",
    "flow": f"float32 backward flow (T-1, H, W, 2) in px; deflate level {ZIP_LEVEL}",
}
"""How the files are encoded (recorded in the manifest; a physical preset's splash, lens_alpha and
lens are encoded as S is, and the text stays as it was so that manifests keep their bytes)."""
CLIP_FILE = "clip.json"
PARAMS_FILE = "params.json"
LAYERS_FILE = "layers.npz"
FLOW_FILE = "flow.npz"
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def encode_layers(layers: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The arrays stored in layers.npz for render's layers (see the module docstring)."""
    missing = sorted(set(LAYERS) - set(layers))
    if missing:
        raise ValueError(f"layers lack {missing}; expected {list(LAYERS)}")
    arrays: dict[str, np.ndarray] = {}
    for name in LAYERS + tuple(n for n in PHYSICAL_LAYERS if n in layers):
        value = np.asarray(layers[name], np.float32)
        if name not in QUANTISED:
            arrays[name] = value
            continue
        lo, hi = float(value.min()), float(value.max())
        step = (hi - lo) / 255.0
        # a range below float32 resolution is a constant layer (stored as 0 and its lo)
        scaled = (value - np.float32(lo)) * np.float32(1.0 / step) if step > 1e-30 else value * 0
        arrays[name] = np.rint(scaled).astype(np.uint8)
        arrays[f"{name}_range"] = np.array([lo, hi], np.float32)
    return arrays


def decode_layers(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Inverse of :func:`encode_layers`: float32 layers shaped as render gives them."""
    layers = {}
    for name in LAYERS + tuple(n for n in PHYSICAL_LAYERS if n in arrays):
        value = arrays[name]
        if name in QUANTISED:
            value = dequantise(value, arrays[f"{name}_range"])
        layers[name] = value.astype(np.float32, copy=False)
    return layers


def dequantise(q: np.ndarray, value_range: np.ndarray) -> np.ndarray:
    """The float32 values of a quantised layer: lo + q (hi - lo) / 255, [lo, hi] = value_range."""
    lo, hi = (float(v) for v in value_range)
    return np.float32(lo) + q.astype(np.float32) * np.float32((hi - lo) / 255.0)


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Write arrays as a deflated ``.npz`` whose bytes depend only on the arrays (fixed dates)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            entry = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, buffer.getvalue(), compresslevel=ZIP_LEVEL)


def write_json(path: Path, value: object) -> None:
    """Write JSON with sorted keys and a final newline (stable bytes)."""
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def to_float(frames: np.ndarray) -> np.ndarray:
    """8-bit frames (any shape, uint8) -> float32 in [0, 1]."""
    return np.divide(frames, np.float32(255), dtype=np.float32)


def write_clip(
    folder: Path,
    *,
    rain: np.ndarray,
    clean: np.ndarray,
    layers: Mapping[str, np.ndarray],
    params: RainParams,
    flow: np.ndarray | None,
    info: Mapping[str, object],
) -> None:
    """Write one clip folder atomically: into a temporary sibling, renamed when complete.

    Args:
        folder: the clip folder to create (must not exist; its parent is created).
        rain: (T, H, W, 3) float32 in [0, 1] (render's O~).
        clean: (T, H, W, 3) uint8 RGB.
        layers: render's layers (float32).
        params: the clip's RainParams.
        flow: (T-1, H, W, 2) float32 backward flow in px, or None.
        info: JSON-able description of what the clip was built from, stored as clip.json.

    On any error (a full disk raises OSError) the temporary folder is removed and the error
    re-raised: the clip is either complete under its name or absent.
    """
    write_stored_clip(
        folder,
        rain=to_uint8(rain),
        clean=clean,
        layers=encode_layers(layers),
        params=params,
        flow=flow,
        info=info,
    )


def write_stored_clip(
    folder: Path,
    *,
    rain: np.ndarray,
    clean: np.ndarray,
    layers: Mapping[str, np.ndarray],
    params: RainParams,
    flow: np.ndarray | None,
    info: Mapping[str, object],
) -> None:
    """:func:`write_clip` from the stored forms: ``rain`` (T, H, W, 3) uint8 (``to_uint8`` of
    render's O~) and ``layers`` as :func:`encode_layers` gives them, for a caller that uses them
    too (the build makes the clip's browser previews from them)."""
    with atomic_folder(folder) as temp:
        for kind, frames in (("rain", rain), ("clean", clean)):
            (temp / kind).mkdir()
            for t, frame in enumerate(frames, 1):
                write_png(temp / kind / f"{t:04d}.png", frame, PNG_COMPRESSION)
        write_npz(temp / LAYERS_FILE, layers)
        if flow is not None:
            write_npz(temp / FLOW_FILE, {"flow": np.asarray(flow, np.float32)})
        write_json(temp / PARAMS_FILE, params.to_dict())
        write_json(temp / CLIP_FILE, dict(info))


def remove_temp_folders(root: Path) -> list[Path]:
    """Delete the temporary clip folders a killed build left under root; returns them."""
    stale = sorted(p for p in root.glob(f"*/*/{TEMP_PREFIX}*") if p.is_dir())
    for path in stale:
        shutil.rmtree(path)
    return stale


def read_json(path: Path) -> dict:
    """Load a JSON object from a file; a missing or malformed file raises RainsynthError
    naming it."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise RainsynthError(f"cannot read {path}: {error}") from None
    if not isinstance(value, dict):
        raise RainsynthError(f"{path} holds a JSON {type(value).__name__}, not an object")
    return value


def plain_name(value: object, what: str, where: Path) -> str:
    """``value`` if it is a plain name of a folder inside a dataset (a non-empty string without
    a path separator, not "." or "..", not a temporary name); else RainsynthError naming
    ``where`` it was read."""
    if (
        not isinstance(value, str)
        or value in ("", ".", "..")
        or any(c in value for c in "/\\\0")
        or value.startswith(TEMP_PREFIX)
    ):
        raise RainsynthError(
            f"{where}: {what} {value!r} is not a plain folder name inside the dataset"
        )
    return value


def read_clip_info(folder: Path) -> dict:
    """A clip folder's clip.json, checked: its split, preset and name must be the folder's own
    (plain names), its shape three integers >= 1; else RainsynthError naming the file."""
    path = folder / CLIP_FILE
    info = read_json(path)
    for key, part in zip(("split", "preset", "name"), folder.parts[-3:], strict=True):
        if key in info and plain_name(info[key], key, path) != part:
            raise RainsynthError(f"{path}: {key} {info[key]!r} is not its folder's, {part!r}")
    shape = info.get("shape")
    if not (
        isinstance(shape, list)
        and len(shape) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
    ):
        raise RainsynthError(
            f"{path}: shape {shape!r} is not [frames, height, width] (integers >= 1)"
        )
    return info


def read_params(path: Path) -> RainParams:
    """The RainParams of a params.json; RainsynthError naming the file when it is malformed."""
    data = read_json(path)
    try:
        return RainParams.from_dict(data)
    except (TypeError, ValueError, KeyError) as error:
        raise RainsynthError(f"{path} is not a valid params.json: {error}") from None


@dataclass(frozen=True)
class DatasetClip:
    """One clip of a built dataset; its arrays are read from disk on each call.

    Attributes: root (the dataset folder), split, preset, name (the clip folder), num_frames,
    height, width.
    """

    root: Path
    split: str
    preset: str
    name: str
    num_frames: int
    height: int
    width: int

    @property
    def path(self) -> Path:
        """The clip folder."""
        return self.root / self.split / self.preset / self.name

    def rain(self, frames: slice = slice(None)) -> np.ndarray:
        """O~ (T, H, W, 3) float32 in [0, 1]; `frames` reads only those frames (t0:t1)."""
        return to_float(self.stored_frames("rain", frames))

    def clean(self, frames: slice = slice(None)) -> np.ndarray:
        """B (T, H, W, 3) float32 in [0, 1]; `frames` reads only those frames (t0:t1)."""
        return to_float(self.stored_frames("clean", frames))

    def layers(self) -> dict[str, np.ndarray]:
        """S, U, beta, alpha (T, H, W, 1) and A, M (T, 1, 1, 3), float32 as render gives them
        (a physical preset's clip: S (T, H, W, 3), and splash, lens_alpha, lens too)."""
        return decode_layers(self.stored_layers())

    def stored_frames(self, kind: str, frames: slice = slice(None)) -> np.ndarray:
        """The 8-bit frames of ``kind`` ("rain" or "clean") as stored, (T, H, W, 3) uint8 RGB;
        `frames` reads only those frames (t0:t1). ``to_float`` gives what rain() / clean() do."""
        indices = range(self.num_frames)[frames]
        out = np.empty((len(indices), self.height, self.width, 3), np.uint8)
        for i, t in enumerate(indices):
            path = self.path / kind / f"{t + 1:04d}.png"
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None or image.shape != out.shape[1:]:
                raise RainsynthError(
                    f"frame {path} is missing, unreadable or not {self.width}x{self.height}"
                )
            cv2.cvtColor(image, cv2.COLOR_BGR2RGB, dst=out[i])
        return out

    def stored_layers(self) -> dict[str, np.ndarray]:
        """The arrays of layers.npz as stored (``decode_layers`` gives what layers() does)."""
        with np.load(self.path / LAYERS_FILE) as archive:
            return {key: archive[key] for key in archive.files}

    @property
    def has_layers(self) -> bool:
        """True: a built clip stores its rain layers."""
        return True

    @property
    def has_flow(self) -> bool:
        """Whether the dataset stores this clip's exact flow."""
        return (self.path / FLOW_FILE).exists()

    def flow(self) -> np.ndarray | None:
        """Exact backward flow (T-1, H, W, 2) float32 in px, or None when the source has none."""
        path = self.path / FLOW_FILE
        if not path.exists():
            return None
        with np.load(path) as archive:
            return archive["flow"]

    def params(self) -> RainParams:
        """The RainParams the clip was rendered with."""
        return read_params(self.path / PARAMS_FILE)

    def info(self) -> dict:
        """clip.json: the source reference, files, split, preset, seed and clip index."""
        return read_json(self.path / CLIP_FILE)


def read_dataset(
    root: str | os.PathLike, *, split: str | None = None, preset: str | None = None
) -> list[DatasetClip]:
    """The complete clips of a dataset built by ``rainsynth build``, sorted by split/preset/name.

    Works during a build too: only clips renamed into place (complete) are listed.

    Args:
        root: the dataset folder (``--out`` of the build).
        split: keep only this split ("train", "test"); None for all.
        preset: keep only this preset ("light", "heavy", ...); None for all.

    Raises RainsynthError when root holds no clips, or the split/preset is not among them.
    """
    root = Path(root)
    found = sorted(
        path.parent
        for path in root.glob(f"*/*/*/{CLIP_FILE}")
        if not path.parent.name.startswith(TEMP_PREFIX)
    )
    if not found:
        raise RainsynthError(
            f"{root} holds no dataset clips: expected {root}/<split>/<preset>/<clip>/{CLIP_FILE}, "
            "as written by `rainsynth build --out`"
        )
    for name, wanted, position in (("split", split, -3), ("preset", preset, -2)):
        present = sorted({folder.parts[position] for folder in found})
        if wanted is not None and wanted not in present:
            raise RainsynthError(f"{root} has no {name} {wanted!r}; it has {present}")
    clips = []
    for folder in found:
        if split not in (None, folder.parent.parent.name) or preset not in (
            None,
            folder.parent.name,
        ):
            continue
        shape = read_clip_info(folder)["shape"]
        clips.append(
            DatasetClip(root, folder.parent.parent.name, folder.parent.name, folder.name, *shape)
        )
    return clips
