"""How fast the dataset browser (OUT/index.html) opens and plays a clip, in headless Chromium.

    python benchmarks/browser_speed.py [--clips 2000] [--repeats 5]

Builds a small real dataset (the built-in source: 24 clips of 7 x 256 x 448, light and heavy)
and synthesises from it a dataset of --clips clips: clip i hard-links the files and browser
previews of built clip i mod 24 and has its own params.json, sampled for clip index i (so the
grid sorts and the histograms spread as a real build's would). Its card and page are then written
as a build writes them (``rainsynth.card.write_card``, timed). Then, in headless Chromium
(Debian's /usr/bin/chromium driven by Playwright), each repeat in a new browser context, it times
with the page's own clock (``performance.now()``, from the start of navigation):

- open: until the grid shows its first page with every thumbnail in view loaded (usable;
  target < 2 s for 2,000 clips);
- play: from a click on a clip until its panels are drawn and playing (the sprite decoded, the
  first frame drawn; target < 0.5 s), and until the second frame is drawn.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from rainsynth import browser, dataset
from rainsynth.build import BuildOptions, build
from rainsynth.card import write_card
from rainsynth.presets import sample_params

CHROMIUM = "/usr/bin/chromium"
USABLE = """() => {
    const images = [...document.querySelectorAll("#grid .card img")];
    const inView = images.filter((image) => image.getBoundingClientRect().top < innerHeight);
    return inView.length > 0 && inView.every((image) => image.complete && image.naturalWidth > 0)
        && performance.now();
}"""
PLAYING = """() => document.querySelector("#clip").dataset.state === "playing"
    && performance.now() - window.clickedAt"""
SECOND_FRAME = """() => document.querySelector("#frame").value === "1"
    && performance.now() - window.clickedAt"""


def synthesise(built: Path, out: Path, clips: int) -> dict:
    """A dataset of `clips` clips in `out` made from the built one (see the module docstring);
    returns its manifest."""
    base = dataset.read_json(built / "manifest.json")
    records = []
    for index in range(clips):
        source = base["clips"][index % len(base["clips"])]
        record = {**source, "clip": index, "name": f"{source['name']}-{index:05d}"}
        folder = out / record["split"] / record["preset"] / record["name"]
        shutil.copytree(
            built / source["split"] / source["preset"] / source["name"], folder,
            copy_function=os.link,
        )  # fmt: skip
        params = sample_params(
            record["preset"], seed=base["seed"], shape=tuple(record["shape"]), clip=index
        )
        (folder / dataset.PARAMS_FILE).unlink()
        dataset.write_json(folder / dataset.PARAMS_FILE, params.to_dict())
        (out / browser.PREVIEWS).mkdir(exist_ok=True)
        for have, new in zip(
            browser.preview_paths(built, source["clip"]), browser.preview_paths(out, index),
            strict=True,
        ):  # fmt: skip
            os.link(have, new)
        records.append(record)
    counts: dict[str, dict[str, int]] = {}
    for record in records:
        side = counts.setdefault(record["split"], {})
        side[record["preset"]] = side.get(record["preset"], 0) + 1
    return {**base, "clips": records, "counts": counts}


def browse(page_path: Path, repeats: int) -> dict[str, list[float]]:
    """Milliseconds to open the page and to play a clip, per repeat (see the module docstring)."""
    from playwright.sync_api import sync_playwright

    times: dict[str, list[float]] = {"open": [], "play": [], "second frame": []}
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM)
        for _ in range(repeats):
            context = chromium.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(page_path.as_uri(), wait_until="commit")
            times["open"].append(page.wait_for_function(USABLE, polling="raf").json_value())
            page.evaluate(
                """() => { window.clickedAt = performance.now();
                           document.querySelector("#grid .card").click(); }"""
            )
            times["play"].append(page.wait_for_function(PLAYING, polling="raf").json_value())
            times["second frame"].append(
                page.wait_for_function(SECOND_FRAME, polling="raf").json_value()
            )
            context.close()
        chromium.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clips", type=int, default=2000, help="clips of the synthesised set")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no Chromium at {CHROMIUM}: apt-get install chromium")
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        options = BuildOptions(count=4, split="8/4", frames=7, size=(256, 448), seed=0)
        built = build(options, scratch / "built", workers=2, progress=False, echo=lambda _: None)
        manifest = synthesise(scratch / "built", scratch / "data", args.clips)
        start = time.perf_counter()
        write_card(scratch / "data", manifest)
        card_seconds = time.perf_counter() - start
        page = scratch / "data" / browser.PAGE
        size = page.stat().st_size
        times = browse(page, args.repeats)
    print(
        f"{args.clips} clips, synthesised from {len(built['clips'])} built clips of 7 x 256 x 448; "
        f"index.html {size / 1e6:.1f} MB; card and page written in {card_seconds:.1f} s"
    )
    print(f"headless Chromium, median of {args.repeats} (min - max), ms from navigation / click:")
    for name, target in (("open", "< 2000"), ("play", "< 500"), ("second frame", "")):
        values = times[name]
        print(
            f"  {name:13s} {statistics.median(values):7.0f}  ({min(values):.0f} - "
            f"{max(values):.0f})" + (f"  target {target}" if target else "")
        )


if __name__ == "__main__":
    main()
