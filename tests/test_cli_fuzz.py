"""The command line of build, derain and test under random options, on tiny inputs (32x32
frames, a few of them): whatever the options, no traceback, and an exit code of 0, 1 or 2.

Most drawn option sets fail validation (cheap); the rest run for real on the tiny inputs."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from derain_helpers import TINY_MODEL, make_dataset, write_video
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from derain.checkpoint import save_weights
from derain.model import build_model
from rainsynth.cli import main

NOISE = np.random.default_rng(1).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
FUZZ = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

INTS = st.sampled_from(["-1", "0", "1", "2", "3", "1001", "x", "1.5", ""])
SIZES = st.sampled_from(["32x32", "16x24", "8x8", "0x5", "7x7", "20000x20000", "abc", "-1x4"])
DEVICES = st.sampled_from(["cpu", "auto", "cpu:0", "gpu", "cuda:1", "mps", "meta", ""])
TILES = st.sampled_from(["0", "16", "24", "64", "-1", "5000", "x"])
FLAG = st.just(True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, str]:
    """Named paths the options draw from: tiny frames, videos, weights, a dataset, bad files."""
    root = tmp_path_factory.mktemp("inputs")
    for sequence in "ab":
        (root / "frames" / sequence).mkdir(parents=True)
        for t, frame in enumerate(NOISE, 1):
            cv2.imwrite(str(root / "frames" / sequence / f"{t:04d}.png"), frame)
    (root / "videos").mkdir()
    for name in "ab":
        write_video(root / "videos" / f"{name}.mp4", NOISE)
    (root / "empty").mkdir()
    (root / "text.mp4").write_text("not a video\n")
    model = build_model(TINY_MODEL)
    save_weights(root / "w.safetensors", model.state_dict(), model.config.to_dict())
    nan = {k: torch.full_like(v, float("nan")) for k, v in model.state_dict().items()}
    save_weights(root / "nan.safetensors", nan, model.config.to_dict())
    make_dataset(root / "data", frames=3, size=(32, 32), clips=1)
    named = {
        "frames": root / "frames",
        "sequence": root / "frames" / "a",
        "video": root / "videos" / "a.mp4",
        "videos": root / "videos",
        "empty": root / "empty",
        "text": root / "text.mp4",
        "weights": root / "w.safetensors",
        "nan": root / "nan.safetensors",
        "data": root / "data",
        "missing": root / "missing",
    }
    return {key: str(path) for key, path in named.items()}


def paths(*names: str):
    return st.sampled_from([f"@{name}" for name in names])


OUTPUTS = ("-o", "--save-frames")
"""Options whose plain values are names inside each example's fresh folder."""
BUILD = {
    "source": st.sampled_from(
        [
            ["--source", "builtin", "--count", "1"],
            ["--source", "frames", "--root", "@frames"],
            ["--source", "videos", "--root", "@videos"],
            ["--source", "vimeo90k"],
            ["--source", "nope"],
        ]
    ),
    "-o": st.sampled_from(["out", "@file/out", "@frames"]),
    "--root": paths("frames", "videos", "video", "text", "missing", "empty"),
    "--split": st.sampled_from(["1/1", "0.5/0.5", "9x1", "0/0", "1/0", "-1/2", "100/1"]),
    "--presets": st.sampled_from(["light", "streaks,light", "hail", ","]),
    "--frames": INTS,
    "--stride": INTS,
    "--size": SIZES,
    "--resize": st.sampled_from(["crop", "scale", "pad"]),
    "--seed": INTS,
    "--count": st.sampled_from(["-1", "0", "1", "2", "100001", "x"]),
    "--on-error": st.sampled_from(["fail", "skip", "maybe"]),
    "--scheduler": st.sampled_from(["notanaddress", "tcp://nohost", "::"]),
    "-j": st.sampled_from(["1", "0"]),
}
DERAIN = {
    "input": paths("video", "sequence", "frames", "empty", "text", "missing"),
    "-o": st.sampled_from(["out.mp4", "out", "x.png", "@file/out", "@video", "@sequence"]),
    "--weights": paths("weights", "nan", "missing", "text"),
    "--device": DEVICES,
    "--tile": TILES,
    "--tile-overlap": st.sampled_from(["0", "4", "8", "-10", "3000", "x"]),
    "--no-progress": FLAG,
    "-q": FLAG,
}
TEST = {
    "--data": paths("data", "empty", "frames", "missing", "text"),
    "--weights": paths("weights", "nan", "missing"),
    "--split": st.sampled_from(["test", "train", "nope", ""]),
    "--presets": st.sampled_from(["", "heavy", "light,heavy", "nope", ","]),
    "--method": st.sampled_from(["model", "rain", "median5", "x"]),
    "--device": DEVICES,
    "--tile": TILES,
    "--save-frames": st.sampled_from(["saved", "@data", "@file/saved"]),
    "-o": st.sampled_from(["r.json", "r.csv", "r.txt", "@file/r.json", "@data"]),
    "--max-clips": INTS,
    "-q": FLAG,
}


def command_line(spec: dict, required: dict):
    """Options of ``spec``: those named in ``required`` always (drawn from it), others maybe."""
    optional = {key: value for key, value in spec.items() if key not in required}
    return st.fixed_dictionaries(required, optional=optional)


def invoke(name: str, options: dict, inputs: dict[str, str], base: list[str]) -> None:
    """Run `rainsynth NAME BASE OPTIONS` in a fresh folder: no traceback, exit 0, 1 or 2.

    "@name[/more]" values are the paths of ``inputs`` ("@file": a file in the folder); plain
    values of OUTPUTS are names in the folder."""
    work = Path(tempfile.mkdtemp())
    (work / "file").write_text("x")
    named = {**inputs, "file": str(work / "file")}

    def value(key: str, text: str) -> str:
        if text.startswith("@"):
            head, _, rest = text[1:].partition("/")
            return str(Path(named[head], rest))
        return str(work / text) if key in OUTPUTS else text

    args = [name, *base]
    for key, item in options.items():
        if key == "input":
            args.insert(1, value(key, item))
        elif item is True:
            args.append(key)
        elif isinstance(item, list):
            args += [value(key, part) for part in item]
        else:
            args += [key, value(key, item)]
    try:
        result = CliRunner().invoke(main, args)
    finally:
        shutil.rmtree(work)
    assert result.exit_code in (0, 1, 2), (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        args,
        result.exception,
    )
    assert "Traceback" not in result.output, (args, result.output)


@settings(FUZZ, max_examples=90)
@given(options=command_line(BUILD, {"source": BUILD["source"], "-o": BUILD["-o"]}))
def test_build_options(inputs, options):
    base = ["--frames", "2", "--size", "32x32", "--presets", "light", "-j", "1", "-q"]
    invoke("build", options, inputs, base)


@settings(FUZZ, max_examples=70)
@given(options=command_line(DERAIN, {"input": paths("video", "sequence"), "-o": st.just("o")}))
def test_derain_options(inputs, options):
    invoke("derain", options, inputs, [])


@settings(FUZZ, max_examples=60)
@given(options=command_line(TEST, {"--data": paths("data")}))
def test_test_options(inputs, options):
    invoke("test", options, inputs, ["--weights", inputs["weights"], "--no-progress"])
