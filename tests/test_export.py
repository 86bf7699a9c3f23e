"""The dataset card's metadata header and `rainsynth export --format basicsr`."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from rainsynth import export
from rainsynth.build import BuildOptions, build
from rainsynth.card import yaml_header
from rainsynth.cli import main
from rainsynth.dataset import read_dataset
from rainsynth.errors import RainsynthError

yaml = pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """A built-in dataset: 3 sequences (2 train, 1 test) x light, heavy; 3 frames of 32x48."""
    out = tmp_path_factory.mktemp("export") / "data"
    options = BuildOptions(count=3, split="2/1", frames=3, size=(32, 48), seed=1)
    build(options, out, progress=False, echo=lambda line: None)
    return out


def header(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def test_card_has_a_hugging_face_metadata_header(data):
    manifest = json.loads((data / "manifest.json").read_text())
    meta = header((data / "README.md").read_text())
    assert meta["license"] == "other" and "scikit" in meta["license_name"]
    assert meta["size_categories"] == ["n<1K"] and meta["task_categories"] == ["image-to-image"]
    assert {"video", "deraining", "synthetic"} <= set(meta["tags"])
    assert meta["generator"] == manifest["generator"]
    assert meta["generator_command"] == manifest["command"]
    assert meta["generator_command"].startswith("rainsynth build --source builtin")


@pytest.mark.parametrize(
    "source, clips, license_, size",
    [("vimeo90k", 1000, "other", "1K<n<10K"), ("videos", 5, "unknown", "n<1K")],
)
def test_card_header_licence_and_size_follow_the_source(source, clips, license_, size):
    manifest = {
        "source": {"source": source},
        "clips": [{}] * clips,
        "generator": "rainsynth 0.1.0",
        "command": 'rainsynth build --root "a b" --out x',
    }
    meta = yaml.safe_load(yaml_header(manifest).strip("-\n"))
    assert meta["license"] == license_ and meta["size_categories"] == [size]
    assert meta["generator_command"] == manifest["command"]


def test_export_writes_the_basicsr_layout_with_links(data, tmp_path):
    out = tmp_path / "basicsr"
    result = CliRunner().invoke(main, ["export", str(data), "--format", "basicsr", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "exported 6 clips" in result.output
    clips = read_dataset(data)
    lines = (out / "meta_info.txt").read_text().splitlines()
    assert lines == sorted(f"{c.split}_{c.preset}_{c.name} 3 (32,48,3)" for c in clips)
    for clip in clips:
        name = f"{clip.split}_{clip.preset}_{clip.name}"
        for kind, folder in (("clean", "GT"), ("rain", "LQ")):
            frames = sorted(p.name for p in (out / folder / name).iterdir())
            assert frames == ["00000000.png", "00000001.png", "00000002.png"]
            target = out / folder / name / "00000002.png"
            assert os.path.samefile(target, clip.path / kind / "0003.png")
    assert sorted(p.name for p in out.iterdir()) == ["GT", "LQ", "meta_info.txt"]
    assert not list(tmp_path.glob(".tmp-*"))


def test_export_copies_when_links_fail_and_filters(data, tmp_path, monkeypatch):
    def no_links(source, target):
        raise OSError("cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    out = tmp_path / "empty"
    out.mkdir()
    lines = export.export_basicsr(data, out, split="train", preset="heavy")
    assert len(lines) == 2 and all(line.startswith("train_heavy_") for line in lines)
    frame = next((out / "LQ").glob("*/00000000.png"))
    assert frame.stat().st_nlink == 1 and frame.read_bytes()[:4] == b"\x89PNG"


def test_export_refuses_a_folder_that_holds_files(data, tmp_path):
    out = tmp_path / "used"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = CliRunner().invoke(main, ["export", str(data), "-o", str(out)])
    assert result.exit_code != 0 and "not an empty folder" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_an_interrupted_export_leaves_nothing(data, tmp_path, monkeypatch):
    calls = []

    def interrupt_after_five(source, target):
        calls.append(target)
        if len(calls) > 5:
            raise KeyboardInterrupt
        os.link(source, target)

    monkeypatch.setattr(export, "_link_or_copy", interrupt_after_five)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        export.export_basicsr(data, out)
    assert list(tmp_path.iterdir()) == []
    # a SIGKILLed export leaves its hidden temporary folder, which the next export removes
    (tmp_path / f".tmp-out-{os.getpid() + 1}" / "GT").mkdir(parents=True)
    monkeypatch.undo()
    export.export_basicsr(data, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_export_of_a_folder_without_clips_is_an_error(tmp_path):
    with pytest.raises(RainsynthError, match="holds no dataset clips"):
        export.export_basicsr(tmp_path, tmp_path / "out")
