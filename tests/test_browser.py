"""The dataset browser: the files a build writes for it, their links and escaping, and the page
itself driven in headless Chromium (skipped, saying why, where no browser is installed)."""

from __future__ import annotations

import hashlib
import html
import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from rainsynth import browser, dataset
from rainsynth.build import BuildOptions, build
from rainsynth.build_cli import card_command
from rainsynth.params import parameter_table
from rainsynth.preview import PANELS

pytestmark = pytest.mark.slow

EVIL_NAME = "<img src=x onerror=window.pwned=1>"
"""A preset file name with HTML in it: the preset's name, and so its folder's."""
EVIL_DESCRIPTION = '</script><script>window.pwned=2</script><!-- & "quoted"'
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """A small build: light, a physical preset and a preset whose name and description hold
    HTML."""
    scratch = tmp_path_factory.mktemp("browser")
    light = (Path(dataset.__file__).parent / "presets" / "light.toml").read_text()
    evil = scratch / f"{EVIL_NAME}.toml"
    evil.write_text(
        re.sub(r"(?m)^description = .*$", f"description = {json.dumps(EVIL_DESCRIPTION)}", light)
    )
    options = BuildOptions(
        count=2,
        split="3/2",
        frames=4,
        size=(48, 80),
        seed=1,
        presets=("light", str(evil), "drizzle"),
    )
    build(options, scratch / "data", workers=1, progress=False, echo=lambda _: None)
    return scratch / "data"


def manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def embedded_data(page: str) -> dict:
    """The JSON the page's script reads."""
    match = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
    return json.loads(match[1])


def hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under folder, by relative path."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_every_clip_has_a_sprite_and_a_thumbnail(built):
    records = manifest(built)["clips"]
    assert {record["preset"] for record in records} == {"light", EVIL_NAME, "drizzle"}
    assert {record["split"] for record in records} == {"train", "test"}
    assert any(r["flow"] for r in records) and not all(r["flow"] for r in records)
    expected = {f"{r['clip']}.jpg" for r in records} | {f"{r['clip']}-thumb.jpg" for r in records}
    assert {p.name for p in (built / browser.PREVIEWS).iterdir()} == expected
    for record in records:
        frames, height, width = record["shape"]
        sprite, thumb = (cv2.imread(str(p)) for p in browser.preview_paths(built, record["clip"]))
        panels = len(PANELS) + record["flow"]
        assert sprite.shape == (panels * frames * height, width, 3)  # small clips: not scaled
        assert thumb.shape == (height, width, 3)
        # the rain panel is the stored rain (up to JPEG): previews come from the stored frames
        folder = built / record["split"] / record["preset"] / record["name"]
        rain = cv2.imread(str(folder / "rain" / "0001.png")).astype(np.float32)
        assert np.abs(sprite[frames * height : (frames + 1) * height] - rain).mean() < 6
        middle = cv2.imread(str(folder / "rain" / f"{frames // 2 + 1:04d}.png"))
        assert np.abs(thumb - middle.astype(np.float32)).mean() < 6


def test_page_data_matches_the_manifest_and_params(built):
    page = (built / browser.PAGE).read_text()
    data = embedded_data(page)
    records = manifest(built)["clips"]
    assert data["fields"] == [f"{s}.{k}" for s, k, *_ in parameter_table()]
    assert len(data["clips"]) == len(records)
    for row, record in zip(data["clips"], records, strict=True):
        clip = dict(zip(data["columns"], row, strict=True))
        assert [clip[k] for k in ("split", "preset", "name", "clip", "flow")] == [
            record[k] for k in ("split", "preset", "name", "clip", "flow")
        ]
        folder = built / record["split"] / record["preset"] / record["name"]
        params = json.loads((folder / dataset.PARAMS_FILE).read_text())
        assert clip["values"] == [params[s][k] for s, k, *_ in parameter_table()]
    assert data["presets"][EVIL_NAME]["description"] == EVIL_DESCRIPTION
    # a physical preset samples a rain rate and a camera: no range for the pixel fields
    assert data["presets"]["drizzle"]["ranges"] == [None] * len(data["fields"])
    assert all(r is not None for r in data["presets"]["light"]["ranges"])
    assert data["histograms"] == "parameters.png"


def test_every_link_of_the_page_resolves(built):
    """The page's own links, and the files its script links for each clip (as showLinks and
    previewUrl build them: split/preset/name/file, previews/<clip>[-thumb].jpg)."""
    page = (built / browser.PAGE).read_text()
    for target in re.findall(r'(?:href|src)="([^"#]+)"', page):
        assert (built / target).exists(), target
    data = embedded_data(page)
    assert (built / data["histograms"]).is_file()
    for row in data["clips"]:
        clip = dict(zip(data["columns"], row, strict=True))
        folder = built / clip["split"] / clip["preset"] / clip["name"]
        files = ["rain/0001.png", "clean/0001.png", "layers.npz", "params.json", "clip.json"]
        for name in files + (["flow.npz"] if clip["flow"] else []):
            assert (folder / name).is_file()
        for suffix in ("", "-thumb"):
            assert (built / data["previews"] / f"{clip['clip']}{suffix}.jpg").is_file()


def test_html_in_names_and_descriptions_is_escaped(built):
    page = (built / browser.PAGE).read_text()
    assert EVIL_NAME not in page and "<script>window" not in page
    payload = re.search(r'id="data">(.*?)</script>', page, re.S)[1]
    assert "<" not in payload and ">" not in payload and "&" not in payload
    assert page.count("</script>") == 2  # the data's and the code's; none from the data
    title = re.search(r"<title>(.*?)</title>", page)[1]
    assert html.unescape(title) == f"builtin rain dataset: {len(manifest(built)['clips'])} clips"


def test_script_json_cannot_close_its_element():
    value = {"a": "</script><!--<b>&amp;", "b": ["\u2028", 1.5]}
    text = browser.script_json(value)
    assert not set(text) & set("<>&") and json.loads(text) == value


def test_long_clips_show_evenly_spaced_frames():
    assert browser.preview_frames(7) == list(range(7))
    picks = browser.preview_frames(1000)
    assert len(picks) == browser.MAX_PREVIEW_FRAMES and picks[0] == 0 and picks[-1] == 999
    assert all(b > a for a, b in zip(picks, picks[1:], strict=False))
    assert browser.fit(256, 448, browser.PANEL_SIDE) == (128, 224)
    assert browser.fit(4096, 8, browser.PANEL_SIDE) == (224, 1)


def test_card_command_writes_the_build_s_bytes_again(built, tmp_path):
    """Previews made from disk (a dataset built without them) equal the build's, which the
    workers made from the arrays in memory (so a killed and resumed build ends the same), and the
    card and page written again are the build's."""
    out = tmp_path / "data"
    shutil.copytree(built, out)
    before = hashes(out)
    previews = hashes(out / browser.PREVIEWS)
    shutil.rmtree(out / browser.PREVIEWS)
    for name in ("README.md", "preview.png", "parameters.png", browser.PAGE):
        (out / name).unlink()
    result = CliRunner().invoke(card_command, [str(out)])
    assert result.exit_code == 0, result.output
    assert f"making the browser previews of {len(manifest(out)['clips'])} clips" in result.output
    assert hashes(out / browser.PREVIEWS) == previews
    assert hashes(out) == before


def test_card_command_refuses_a_folder_without_a_manifest(tmp_path):
    result = CliRunner().invoke(card_command, [str(tmp_path)])
    assert result.exit_code == 2 and "no manifest.json" in result.output


def test_a_page_write_killed_halfway_leaves_the_old_page(built, tmp_path, monkeypatch):
    out = tmp_path / "data"
    shutil.copytree(built, out)
    old = (out / browser.PAGE).read_bytes()
    records = manifest(out)["clips"]
    params = [
        dataset.read_params(out / r["split"] / r["preset"] / r["name"] / "params.json").to_dict()
        for r in records
    ]
    write_bytes = Path.write_bytes

    def half_then_killed(path: Path, data: bytes) -> None:
        write_bytes(path, data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(Path, "write_bytes", half_then_killed)
    with pytest.raises(KeyboardInterrupt):
        browser.write_page(out, manifest(out), params, histograms=None)
    monkeypatch.undo()
    assert (out / browser.PAGE).read_bytes() == old
    assert not list(out.glob(f"{dataset.TEMP_PREFIX}*"))


# --- the page in a real headless browser -------------------------------------------------------


@pytest.fixture(scope="module")
def page(built):
    """The page opened from disk in headless Chromium (Playwright driving the system browser)."""
    sync_api = pytest.importorskip(
        "playwright.sync_api",
        reason="Playwright is not installed (pip install playwright; .ci/run installs it)",
    )
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium; .ci/run installs it)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM))
        tab = chromium.new_page(viewport={"width": 1280, "height": 800})
        errors = []
        tab.on("pageerror", lambda error: errors.append(str(error)))
        tab.goto((built / browser.PAGE).as_uri())
        yield tab
        chromium.close()
        assert errors == []


def card_names(tab) -> list[str]:
    return tab.locator("#grid .card .name").all_text_contents()


def test_the_page_filters_sorts_and_plays_a_clip(built, page):
    records = manifest(built)["clips"]
    page.wait_for_selector("#grid .card")
    assert len(card_names(page)) == len(records)
    assert page.text_content("#count") == f"{len(records)} clips"
    # filter by split and preset
    page.select_option("#split", "test")
    page.select_option("#preset", "light")
    wanted = [r for r in records if r["split"] == "test" and r["preset"] == "light"]
    assert sorted(card_names(page)) == sorted(r["name"] for r in wanted)
    assert page.text_content("#count") == f"{len(wanted)} of {len(records)} clips"
    page.select_option("#split", "")
    page.select_option("#preset", "")
    # sort by a sampled parameter, both ways
    field = [f"{s}.{k}" for s, k, *_ in parameter_table()].index("streaks.density")
    page.select_option("#sort", str(field))
    values = [
        float(t.split(" = ")[1])
        for t in page.locator("#grid .card span:last-child").all_text_contents()
    ]
    assert values == sorted(values) and len(values) == len(records)
    page.click("#order")
    values = [
        float(t.split(" = ")[1])
        for t in page.locator("#grid .card span:last-child").all_text_contents()
    ]
    assert values == sorted(values, reverse=True)
    # open a clip with flow: seven panels play; the slider moves the visible frame
    flowing = next(r for r in records if r["flow"])
    page.select_option("#sort", "clip")
    page.click(f'#grid .card[href="#clip={flowing["clip"]}"]')
    page.wait_for_selector('#clip[data-state="playing"]')
    panels = page.locator("#panels figure").evaluate_all("nodes => nodes.map(n => n.dataset.panel)")
    assert panels == [*PANELS, "flow"]
    rain = page.locator('#panels figure[data-panel="rain"] canvas')
    slider = page.locator("#frame")
    page.click("#play")
    assert page.get_attribute("#clip", "data-state") == "paused"
    slider.focus()
    slider.press("Home")
    assert page.text_content("#frame-label") == f"frame 1 of {flowing['shape'][0]}"
    first = rain.screenshot()
    slider.press("ArrowRight")
    slider.press("ArrowRight")
    assert page.text_content("#frame-label") == f"frame 3 of {flowing['shape'][0]}"
    assert rain.screenshot() != first
    page.click("#play")
    assert page.get_attribute("#clip", "data-state") == "playing"
    slider.press("Home")  # moving the slider (Home or End moves it, wherever it is) pauses
    slider.press("End")
    assert page.get_attribute("#clip", "data-state") == "paused"
    assert page.locator("#params tr").count() == len(parameter_table())
    page.keyboard.press("Escape")
    page.wait_for_selector("#clip", state="hidden")


def test_the_page_shows_html_in_names_as_text(page):
    page.select_option("#preset", EVIL_NAME)
    metas = page.locator("#grid .card span.muted").all_text_contents()
    assert metas and all(meta.endswith(f"· {EVIL_NAME}") for meta in metas)
    assert EVIL_DESCRIPTION in page.text_content("#presets")
    assert page.evaluate("window.pwned") is None
    assert page.locator("img[onerror], #presets script").count() == 0
    page.select_option("#preset", "")


def test_the_page_numbers_frames_as_the_sprites_pick_them(page):
    for frames in (7, 33, 1000):
        shown = len(browser.preview_frames(frames))
        numbers = page.evaluate(
            "([frames, shown]) => [...Array(shown).keys()].map("
            "(i) => frameNumber({ frames, shown }, i))",
            [frames, shown],
        )
        assert numbers == [t + 1 for t in browser.preview_frames(frames)]
