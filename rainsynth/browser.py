"""The dataset browser: ``OUT/index.html``, a page that opens straight from disk (no server, no
network) to look at a built dataset's clips, their layers and their parameters.

    OUT/index.html                  the page: plain HTML, CSS and JavaScript (``browser.html``)
                                    with the dataset's records embedded as JSON
    OUT/browser/<clip>.jpg          a clip's preview sprite: for each panel (clean, rain, S, U,
                                    beta, alpha, and flow), its shown frames, one above the other
    OUT/browser/<clip>-thumb.jpg    its middle rain frame, for the grid

``<clip>`` is the clip index of the build. The build makes a clip's previews in its worker from
the arrays it stores (the 8-bit frames and the quantised layers), just before the clip folder is
renamed into place, so they cost no second read; the page is written with the dataset card, and
makes from disk any preview a clip lacks (a dataset built by an earlier version). Previews are
made from exactly what the clip folder stores, so a killed and resumed build gives the same bytes.

The page embeds its data as JSON inside a ``<script type="application/json">`` with every ``<``,
``>`` and ``&`` written as a JSON escape, and its script shows names and values as text only
(``textContent``): a clip, preset or description with HTML in it is shown, never run.
"""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path

import cv2
import numpy as np

from rainsynth import dataset
from rainsynth.fileio import write_atomic
from rainsynth.params import parameter_table
from rainsynth.preview import PANELS

PAGE = "index.html"
PREVIEWS = "browser"
"""The folder of the clips' preview images, beside the page."""
TEMPLATE = "browser.html"
"""The page's HTML, CSS and JavaScript (package data), with {{TITLE}} and {{DATA}} to fill."""
FLOW_PANEL = "flow"
"""The panel added after PANELS for clips whose source knows the exact flow."""
PANEL_SIDE = 224
"""Longest side of one panel in a preview sprite (and of a thumbnail), px (never larger than the
clip)."""
MAX_PREVIEW_FRAMES = 32
"""Frames in a sprite at most; a longer clip shows this many, evenly spaced."""
JPEG_QUALITY = 75
NO_FLOW = 48
"""Grey level of the flow panel at the first frame (no previous frame)."""
COLUMNS = (
    "split", "preset", "name", "clip", "frames", "height", "width", "flow", "shown", "panelWidth",
    "panelHeight", "values",
)  # fmt: skip
"""The entries of a clip's row in the page data: its manifest record, whether it has flow, the
frames its sprite shows, a sprite panel's size, and its sampled values (``fields`` order)."""


def preview_paths(out: Path, index: int) -> tuple[Path, Path]:
    """The sprite and the thumbnail of clip ``index`` of the dataset in ``out``."""
    return out / PREVIEWS / f"{index}.jpg", out / PREVIEWS / f"{index}-thumb.jpg"


def preview_frames(num_frames: int) -> list[int]:
    """The frames (0-based) a sprite shows: every frame, or MAX_PREVIEW_FRAMES evenly spaced
    from the first to the last (the page's script computes the same numbers)."""
    shown = min(num_frames, MAX_PREVIEW_FRAMES)
    if shown == num_frames:
        return list(range(shown))
    return [(i * (num_frames - 1) + (shown - 1) // 2) // (shown - 1) for i in range(shown)]


def fit(height: int, width: int, side: int) -> tuple[int, int]:
    """(height, width) scaled so that the longer side is at most ``side`` px (never enlarged)."""
    scale = min(1.0, side / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


def panel_sheet(
    rain: np.ndarray, clean: np.ndarray, layers: dict[str, np.ndarray], flow: np.ndarray | None
) -> np.ndarray:
    """A clip's preview panels, (panels, shown frames, h, w, 3) uint8 BGR (as OpenCV encodes).

    The panels are PANELS, and the flow when there is one; the frames those of preview_frames;
    (h, w) is the clip's size fitted into PANEL_SIDE. The sprite is this sheet as one image,
    (panels x frames x h, w, 3): panel p of shown frame i at rows (p frames + i) h onwards.

    Args:
        rain, clean: (T, H, W, 3) uint8 RGB, as the clip folder stores them.
        layers: the arrays of layers.npz (``dataset.encode_layers``).
        flow: (T-1, H, W, 2) float32 backward flow in px, or None (no flow panel).
    """
    picks = preview_frames(len(rain))
    height, width = fit(rain.shape[1], rain.shape[2], PANEL_SIDE)
    panels = len(PANELS) + (flow is not None)
    sheet = np.empty((panels, len(picks), height, width, 3), np.uint8)
    for block, frames in ((sheet[0], clean), (sheet[1], rain)):
        for panel, t in zip(block, picks, strict=True):
            cv2.cvtColor(_resize(frames[t], (width, height)), cv2.COLOR_RGB2BGR, dst=panel)
    for p, name in enumerate(PANELS[2:], 2):
        _layer_panels(layers[name], layers[f"{name}_range"], picks, sheet[p])
    if flow is not None:
        _flow_panels(flow, picks, sheet[-1])
    return sheet


def _resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _layer_panels(q: np.ndarray, value_range: np.ndarray, picks: list[int], out: np.ndarray):
    """Fill out, (n, h, w, 3), with a quantised layer (q, value_range) at the picked frames: its
    values in [0, 1] as grey levels (clipped)."""
    grey = dataset.to_uint8(dataset.dequantise(np.arange(256, dtype=np.uint8), value_range))
    size = (out.shape[2], out.shape[1])
    small = np.concatenate([_resize(q[t, ..., 0], size) for t in picks])  # (n h, w)
    cv2.cvtColor(cv2.LUT(small, grey), cv2.COLOR_GRAY2BGR, dst=out.reshape(-1, size[0], 3))


def _flow_panels(flow: np.ndarray, picks: list[int], out: np.ndarray) -> None:
    """Fill out, (n, h, w, 3), with the flow at the picked frames: hue the direction,
    saturation the speed over the clip's fastest shown motion (white: still); the first frame,
    which has no flow, grey."""
    size = (out.shape[2], out.shape[1])
    polar = []
    for t in picks[1:]:  # picks[0] is frame 0, which has no flow
        small = _resize(flow[t - 1], size)
        polar.append(cv2.cartToPolar(
            np.ascontiguousarray(small[..., 0]), np.ascontiguousarray(small[..., 1]),
            angleInDegrees=True,
        ))  # fmt: skip
    fastest = max((float(magnitude.max()) for magnitude, _ in polar), default=0.0)
    gain = 255.0 / fastest if fastest > 0 else 0.0
    out[0] = NO_FLOW
    for panel, (magnitude, angle) in zip(out[1:], polar, strict=True):
        hsv = np.stack(
            [np.rint(angle / 2) % 180, np.minimum(np.rint(magnitude * gain), 255),
             np.full_like(angle, 255)], axis=-1,
        ).astype(np.uint8)  # fmt: skip
        cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=panel)


def _jpeg(bgr: np.ndarray, path: Path) -> bytes:
    ok, encoded = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError(f"could not encode {path} as JPEG")
    return encoded.tobytes()


def write_previews(
    out: Path,
    index: int,
    *,
    rain: np.ndarray,
    clean: np.ndarray,
    layers: dict[str, np.ndarray],
    flow: np.ndarray | None,
) -> None:
    """Write clip ``index``'s sprite and thumbnail (the rain panel of the middle shown frame)
    into OUT/browser/, each atomically.

    rain, clean, layers and flow as :func:`panel_sheet` takes them (what the clip folder stores).
    """
    (out / PREVIEWS).mkdir(exist_ok=True)
    sprite_path, thumb_path = preview_paths(out, index)
    sheet = panel_sheet(rain, clean, layers, flow)
    write_atomic(sprite_path, _jpeg(sheet.reshape(-1, *sheet.shape[3:]), sprite_path))
    write_atomic(thumb_path, _jpeg(sheet[1, len(sheet[1]) // 2], thumb_path))


def missing_previews(out: Path, records: list[dict]) -> list[dict]:
    """The manifest records whose sprite or thumbnail is not in OUT/browser/."""
    return [
        record
        for record in records
        if not all(path.exists() for path in preview_paths(out, record["clip"]))
    ]


def write_previews_from_disk(out: Path, record: dict) -> None:
    """Make a clip's previews from its folder (for a clip built without them)."""
    clip = dataset.DatasetClip(out, record["split"], record["preset"], record["name"],
                               *record["shape"])  # fmt: skip
    write_previews(
        out,
        record["clip"],
        rain=clip.stored_frames("rain"),
        clean=clip.stored_frames("clean"),
        layers=clip.stored_layers(),
        flow=clip.flow(),
    )


def write_page(out: Path, manifest: dict, params: list[dict], *, histograms: str | None) -> None:
    """Write OUT/index.html (atomically), first making the previews any clip lacks.

    Args:
        out: the dataset folder.
        manifest: the build's manifest (header fields and one record per clip).
        params: ``RainParams.to_dict()`` of each record's clip, in the manifest's order.
        histograms: the file name of the card's parameter histograms, or None when there are none.
    """
    for record in missing_previews(out, manifest["clips"]):
        write_previews_from_disk(out, record)
    data = page_data(manifest, params, histograms=histograms)
    write_atomic(out / PAGE, page_html(data).encode("utf-8"))


def page_data(manifest: dict, params: list[dict], *, histograms: str | None) -> dict:
    """What the page's script reads: the dataset header, the parameter names, each preset's
    ranges (None for a field it does not sample: a physical preset samples a rain rate and a
    camera, not the pixel fields) and one row per clip (COLUMNS)."""
    fields = parameter_table()
    clips = []
    for record, values in zip(manifest["clips"], params, strict=True):
        frames, height, width = record["shape"]
        panel_height, panel_width = fit(height, width, PANEL_SIDE)
        clips.append(
            [record["split"], record["preset"], record["name"], record["clip"], frames, height,
             width, bool(record["flow"]), len(preview_frames(frames)), panel_width, panel_height,
             [values[section][key] for section, key, *_ in fields]]
        )  # fmt: skip
    return {
        "generator": manifest["generator"],
        "command": manifest["command"],
        "build": manifest["build"],
        "seed": manifest["seed"],
        "source": manifest["source"]["source"],
        "histograms": histograms,
        "previews": PREVIEWS,
        "panels": [*PANELS, FLOW_PANEL],
        "fields": [f"{section}.{key}" for section, key, *_ in fields],
        "docs": [doc for *_, doc in fields],
        "presets": {
            name: {
                "description": preset["description"],
                "ranges": [
                    preset["ranges"].get(section, {}).get(key) for section, key, *_ in fields
                ],
            }
            for name, preset in manifest["presets"].items()
        },
        "columns": list(COLUMNS),
        "clips": clips,
    }


def page_html(data: dict) -> str:
    """The page: the template with its title and the data (as script-safe JSON) filled in."""
    template = resources.files("rainsynth").joinpath(TEMPLATE).read_text("utf-8")
    values = {
        "TITLE": html.escape(f"{data['source']} rain dataset: {len(data['clips'])} clips"),
        "DATA": script_json(data),
    }
    return re.sub(r"\{\{(TITLE|DATA)\}\}", lambda match: values[match[1]], template)


def script_json(value: object) -> str:
    """JSON that is safe inside a ``<script>`` element: ``<``, ``>`` and ``&`` are written as
    JSON escapes, so no string in it can end the element or open a comment."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
