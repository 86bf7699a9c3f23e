"""Make the README's picture of the dataset browser: docs/browser.png.

    python docs/browser_figure.py

Builds a small dataset (the built-in source: 24 clips of 7 x 256 x 448, light and heavy), opens
its index.html from disk in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright),
and stacks two screenshots, scaled to 960 px wide: a heavy clip with flow, stopped at its fourth
frame, above the grid sorted by streak density.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
from playwright.sync_api import sync_playwright

from rainsynth.build import BuildOptions, build
from rainsynth.fileio import write_png

HERE = Path(__file__).resolve().parent
WIDTH = 960


def screenshots(page_path: Path, clip: int) -> list[np.ndarray]:
    """The clip view (its top 430 px) and the grid (its top 470 px), RGB."""
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium")
        page = chromium.new_page(viewport={"width": 1280, "height": 800})
        page.goto(page_path.as_uri())
        page.select_option("#sort", label="streaks.density")
        grid = page.screenshot(clip={"x": 0, "y": 0, "width": 1280, "height": 470})
        page.click(f'#grid .card[href="#clip={clip}"]')
        page.wait_for_selector('#clip[data-state="playing"]')
        page.click("#play")
        page.locator("#frame").press("Home")
        for _ in range(3):
            page.locator("#frame").press("ArrowRight")
        view = page.screenshot(clip={"x": 0, "y": 0, "width": 1280, "height": 430})
        chromium.close()
    return [cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR),
                         cv2.COLOR_BGR2RGB) for png in (view, grid)]  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "data"
        options = BuildOptions(count=4, split="8/4", frames=7, size=(256, 448), seed=0)
        manifest = build(options, out, workers=2, progress=False, echo=lambda _: None)
        clip = next(r["clip"] for r in manifest["clips"] if r["preset"] == "heavy" and r["flow"])
        view, grid = screenshots(out / "index.html", clip)
    rule = np.full((4, view.shape[1], 3), 160, np.uint8)
    figure = np.concatenate([view, rule, grid], axis=0)
    height = round(figure.shape[0] * WIDTH / figure.shape[1])
    write_png(
        HERE / "browser.png", cv2.resize(figure, (WIDTH, height), interpolation=cv2.INTER_AREA)
    )


if __name__ == "__main__":
    main()
