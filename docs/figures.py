"""Make the README's pictures: docs/preview.png and docs/compare.png.

    python docs/figures.py

preview.png: the heavy-preset contact sheet of a built-in clip (3 frames, half size).
compare.png: one frame, clean | albumentations RandomRain (heavy) | rainsynth light | rainsynth heavy.
"""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np

import rainsynth
from rainsynth.fileio import draw_label, write_png
from rainsynth.preview import LABEL_SCALE, contact_sheet
from rainsynth.sources import open_source

HERE = Path(__file__).resolve().parent


def main() -> None:
    source = open_source("builtin", frames=7, size=(256, 448), seed=0, count=3)
    clean = source.read(source.sequences()[2]).frames
    heavy = rainsynth.render(clean, rainsynth.sample_params("heavy", seed=0, shape=clean.shape[:3]))
    sheet = contact_sheet(clean, heavy, frames=3)
    write_png(
        HERE / "preview.png", cv2.resize(sheet, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)
    )

    light = rainsynth.render(clean, rainsynth.sample_params("light", seed=0, shape=clean.shape[:3]))
    theirs = A.RandomRain(rain_type="heavy", p=1.0)(image=clean[3])["image"]
    panels = [clean[3], theirs] + [(c.rain[3] * 255 + 0.5).astype(np.uint8) for c in (light, heavy)]
    row = np.concatenate(panels, axis=1)
    names = ("clean", "albumentations RandomRain", "rainsynth light", "rainsynth heavy")
    for i, name in enumerate(names):
        draw_label(row, name, (i * clean.shape[2] + 6, 18), LABEL_SCALE)
    write_png(HERE / "compare.png", row)


if __name__ == "__main__":
    main()
