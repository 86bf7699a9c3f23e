"""Bad input and data-loss cases: each ends with one clear line and its documented exit code
(2: bad usage or a bad input value, 1: a failure while running) and leaves every file that was
there as it was; or it does the right thing and loses nothing."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from derain_helpers import TINY_MODEL, make_dataset, tiny_config, write_toml, write_video
from safetensors.torch import save_file

from derain.checkpoint import save_weights
from derain.model import build_model
from rainsynth.cli import COMMANDS, main

NOISE = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
WRITERS = {"preview", "build", "train", "test", "derain", "pretrain-flow", "export"}


def tree(root: Path) -> dict[str, str]:
    """Every file and link under root -> the sha256 of its bytes (a link: its target)."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            found[key] = f"-> {os.readlink(path)}"
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def run(root: Path, *args, code: int, message: str, env: dict | None = None):
    """`rainsynth ARGS` in-process: exit ``code``, one "Error:" line holding ``message`` (when
    code != 0), no traceback, and every file under ``root`` unchanged."""
    before = tree(root)
    result = CliRunner().invoke(main, [str(a) for a in args], env=env)
    assert result.exit_code == code, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    if code:
        errors = [line for line in result.output.splitlines() if line.startswith("Error")]
        assert len(errors) == 1 and message in errors[0], result.output
    after = tree(root)
    assert {key: after.get(key) for key in before} == before
    return result


def derain(root: Path, source, *args, out: str = "o.mp4", **expect):
    """`rainsynth derain SOURCE -o ROOT/OUT ARGS` through :func:`run` (``expect``: its code,
    message and env)."""
    return run(root, "derain", source, "-o", root / out, *args, **expect)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "data", frames=3, size=(32, 32), clips=1)


def frames_folder(folder: Path, sizes=((32, 32),) * 2, suffix=".png") -> Path:
    folder.mkdir(parents=True)
    for i, (h, w) in enumerate(sizes, 1):
        cv2.imwrite(str(folder / f"{i:04d}{suffix}"), NOISE[i % 4, :h, :w])
    return folder


def test_derain_refuses_to_write_over_its_input(tmp_path, tiny_weights, monkeypatch):
    video = write_video(tmp_path / "in.mp4", NOISE)
    (tmp_path / "link.mp4").symlink_to(video)
    monkeypatch.chdir(tmp_path)
    for output in (video, tmp_path / "link.mp4", tmp_path / "sub" / ".." / "in.mp4", "in.mp4"):
        run(
            tmp_path,
            "derain",
            video,
            "-o",
            output,
            "--weights",
            tiny_weights,
            code=2,
            message="is the input",
        )
    run(tmp_path, "derain", "link.mp4", "-o", video, code=2, message="is the input")
    folder = frames_folder(tmp_path / "frames")
    run(tmp_path, "derain", folder, "-o", f"{folder}/", code=2, message="is the input")


def test_train_writes_only_into_a_new_empty_or_own_run_folder(tmp_path, dataset):
    dataset = shutil.copytree(dataset, tmp_path / "data")  # under tmp_path: its bytes are checked
    config = write_toml(tmp_path / "c.toml", tiny_config(dataset, tmp_path / "unused"))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.toml").write_text("# my notes\n")
    (mine / "log.csv").write_text("when,what\nmonday,rain\n")
    train = ("train", "--config", config, "-q", "--out")
    run(tmp_path, *train, mine, code=2, message="pass --resume to continue")
    run(tmp_path, *train, mine, "--resume", code=2, message="no complete checkpoint")
    run(tmp_path, *train, dataset, code=2, message="which a training run does not write")
    run(tmp_path, *train, dataset, "--resume", code=2, message="not a run folder")
    (tmp_path / "file").write_text("x")
    run(tmp_path, *train, tmp_path / "file" / "run", code=2, message="is a file")


def test_resume_with_a_changed_config_keeps_config_toml_and_records_the_change(tmp_path, dataset):
    config = write_toml(tmp_path / "c.toml", tiny_config(dataset, tmp_path / "run"))
    runner = CliRunner()
    args = ["train", "--config", str(config), "-q", "--iterations", "3"]
    assert runner.invoke(main, args).exit_code == 0
    first = (tmp_path / "run" / "config.toml").read_bytes()
    result = runner.invoke(main, [*args[:-1], "6", "--resume", "--set", "optim.lr=1e-4"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "config.toml").read_bytes() == first
    change = (tmp_path / "run" / "config.00000003.toml").read_text()
    assert "lr = 0.0001" in change and "iterations = 6" in change
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2", "3", "4", "5", "6"]


def test_derain_refuses_frames_whose_outputs_clash(tmp_path, tiny_weights):
    folder = frames_folder(tmp_path / "frames")
    cv2.imwrite(str(folder / "0001.jpg"), NOISE[0])
    derain(
        tmp_path,
        folder,
        "--weights",
        tiny_weights,
        out="out",
        code=2,
        message="0001.jpg and 0001.png of",
    )
    assert not (tmp_path / "out").exists()


SMALL_BUILD = [
    "build",
    "--count",
    "2",
    "--frames",
    "2",
    "--size",
    "32x32",
    "--split",
    "1/1",
    "--presets",
    "light",
    "-j",
    "1",
    "-q",
]


def small_build(out: Path):
    return CliRunner().invoke(main, [*SMALL_BUILD, "--out", str(out)])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("split", "../../..", "split '../../..' is not a plain folder name"),
        ("name", "/etc", "name '/etc' is not a plain folder name"),
        ("preset", "heavy", "preset 'heavy' is not its folder's, 'light'"),
        ("shape", [2, "x", 32], "shape [2, 'x', 32] is not [frames, height, width]"),
    ],
)
def test_names_and_shapes_read_back_from_a_dataset_are_checked(tmp_path, key, value, message):
    out = tmp_path / "data"
    assert small_build(out).exit_code == 0
    clip = sorted(out.glob("*/*/*/clip.json"))[0]
    clip.write_text(json.dumps({**json.loads(clip.read_text()), key: value}))
    (out / "README.md").unlink()
    run(tmp_path, *SMALL_BUILD, "--out", out, code=2, message=message)
    run(
        tmp_path,
        "test",
        "--data",
        out,
        "--split",
        clip.parts[-4],
        "--method",
        "rain",
        "-q",
        code=2,
        message=message,
    )


def test_a_malformed_params_json_is_named(tmp_path):
    out = tmp_path / "data"
    assert small_build(out).exit_code == 0
    sorted(out.glob("*/*/*/params.json"))[0].write_text('{"preset": "../x"}')
    (out / "README.md").unlink()
    result = small_build(out)
    assert result.exit_code == 2 and "is not a valid params.json" in result.output


def forged_weights(path: Path, tensors: dict, config: dict) -> Path:
    metadata = {"format": "rainsynth-derain", "model_config": json.dumps(config), "iteration": "0"}
    save_file(tensors, str(path), metadata=metadata)
    return path


def test_weights_and_sizes_are_checked_before_anything_is_allocated(
    tmp_path, tiny_weights, dataset
):
    video = write_video(tmp_path / "in.mp4", NOISE)
    huge = forged_weights(
        tmp_path / "huge.safetensors", {}, {"size": "small", "base_channels": 4096}
    )
    assert huge.stat().st_size < 400
    for command in (["derain", video, "-o", tmp_path / "o.mp4"], ["test", "--data", dataset]):
        run(
            tmp_path,
            *command,
            "--weights",
            huge,
            code=1,
            message="base_channels must be an int from 1 to 256",
        )
    empty = forged_weights(tmp_path / "empty.safetensors", {}, TINY_MODEL)
    derain(tmp_path, video, "--weights", empty, code=1, message="does not match the network")
    for command in ("build", "preview"):
        run(
            tmp_path,
            command,
            "--size",
            "20000x20000",
            "-o",
            tmp_path / "x",
            code=2,
            message="integers from 8 to 4096",
        )
    derain(tmp_path, video, "--tile", "100000", code=2, message="'--tile'")


def test_tiling_that_cannot_cover_a_frame_and_nan_weights_are_errors(tmp_path, tiny_weights):
    video = write_video(tmp_path / "in.mp4", NOISE)
    derain(tmp_path, video, "--tile-overlap", "-10", code=2, message="'--tile-overlap'")
    derain(
        tmp_path,
        video,
        env={"RAINSYNTH_DERAIN_TILE_OVERLAP": "-10"},
        code=2,
        message="'--tile-overlap'",
    )
    model = build_model(TINY_MODEL)
    nan = {k: torch.full_like(v, float("nan")) for k, v in model.state_dict().items()}
    path = save_weights(tmp_path / "nan.safetensors", nan, model.config.to_dict())
    derain(tmp_path, video, "--weights", path, code=1, message="holds NaN or inf")
    assert not (tmp_path / "o.mp4").exists()


def test_build_on_error_skip_skips_videos_whose_header_cannot_be_read(tmp_path):
    videos = tmp_path / "videos"
    videos.mkdir()
    for name in ("a", "b"):
        write_video(videos / f"{name}.mp4", NOISE)
    data = (videos / "a.mp4").read_bytes()
    (videos / "cut.mp4").write_bytes(data[: len(data) // 2])
    (videos / "text.mp4").write_text("not a video\n")
    args = [
        "build",
        "--source",
        "videos",
        "--root",
        videos,
        "--frames",
        "2",
        "--size",
        "32x32",
        "--split",
        "1/1",
        "--presets",
        "light",
        "-j",
        "1",
        "-q",
        "--out",
    ]
    run(tmp_path, *args, tmp_path / "fail", code=2, message="cut.mp4")
    run(tmp_path, *args, tmp_path / "data", "--on-error", "skip", code=0, message="")
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    skipped = sorted(Path(record["file"]).name for record in manifest["skipped"])
    assert skipped == ["cut.mp4", "text.mp4"] and len(manifest["clips"]) == 2


def test_tracebacks_become_one_line_messages(tmp_path, tiny_weights, dataset):
    run(
        tmp_path,
        "build",
        "--scheduler",
        "notanaddress",
        "-o",
        tmp_path / "d",
        code=2,
        message="not a Dask scheduler address",
    )
    mixed = frames_folder(tmp_path / "mixed", sizes=[(32, 32), (24, 32)])
    derain(
        tmp_path,
        mixed,
        "--weights",
        tiny_weights,
        out="out",
        code=2,
        message="the frames of a folder must have one size",
    )
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".tmp-out*"))  # no leftovers
    run(tmp_path, "test", "--data", dataset, "--max-clips", "-1", code=2, message="'--max-clips'")
    run(tmp_path, "preview", "--frames", "1", code=2, message="2<=x")
    assert "2<=x" in CliRunner().invoke(main, ["preview", "-h"]).output


def test_outputs_under_a_file_or_in_a_read_only_folder_are_refused(
    tmp_path, tiny_weights, dataset, monkeypatch
):
    config = write_toml(tmp_path / "c.toml", tiny_config(dataset, tmp_path / "unused"))
    video = write_video(tmp_path / "in.mp4", NOISE)
    (tmp_path / "file").write_text("x")

    def commands(target: Path) -> list[list]:
        return [
            ["derain", video, "-o", target, "--weights", tiny_weights],
            ["train", "--config", config, "-o", target],
            ["pretrain-flow", "--config", config, "-o", target],
            ["preview", "-o", target],
            ["build", "-o", target],
            ["test", "--data", dataset, "--method", "rain", "-o", f"{target}.json"],
        ]

    for command in commands(tmp_path / "file" / "out.mp4"):
        run(tmp_path, *command, code=2, message="is a file, not a folder")
    access = os.access  # running as root, a read-only folder is still writable: pretend
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: not mode & os.W_OK and access(p, mode))
    for command in commands(tmp_path / "new" / "out.mp4"):
        result = run(tmp_path, *command, code=2, message="is not writable")
        assert "free the space" not in result.output


def test_outputs_follow_the_umask(tmp_path, tiny_weights):
    video = write_video(tmp_path / "in.mp4", NOISE)
    folder = frames_folder(tmp_path / "frames")
    old = os.umask(0o027)
    try:
        derain(tmp_path, video, "--weights", tiny_weights, "-q", code=0, message="")
        derain(tmp_path, folder, "--weights", tiny_weights, "-q", out="o", code=0, message="")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "o.mp4").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "o").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "o" / "0001.png").stat().st_mode) == 0o640


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_command_takes_q_and_h_and_writers_take_o(name):
    result = CliRunner().invoke(main, [name, "-h"])
    assert result.exit_code == 0 and "-q, --quiet" in result.output
    assert ("-o, --out" in result.output) == (name in WRITERS)


def test_exit_codes_are_documented_and_devices_checked(tmp_path, tiny_weights):
    text = CliRunner().invoke(main, ["-h"]).output
    assert "Exit codes:" in text and "RAINSYNTH_" in text
    video = write_video(tmp_path / "in.mp4", NOISE)
    derain(tmp_path, video, "--device", "gpu0", code=2, message="a torch device")
    if not torch.cuda.is_available():
        derain(tmp_path, video, "--device", "cuda:1", code=2, message="torch sees 0 cuda device(s)")


def test_the_papers_build_command_finds_its_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RAINSYNTH_ROOT", raising=False)
    paper = ["build", "--source", "vimeo90k", "--split", "900/100"]
    run(
        tmp_path,
        *paper,
        code=2,
        message="tried --root (not given), $RAINSYNTH_ROOT (not set), ./vimeo_septuplet (not found)",
    )
    run(
        tmp_path,
        *paper,
        env={"RAINSYNTH_ROOT": "elsewhere"},
        code=2,
        message="$RAINSYNTH_ROOT=elsewhere (not found)",
    )
    for key in ("00001/0001", "00002/0001"):
        folder = tmp_path / "vimeo_septuplet" / "sequences" / key
        folder.mkdir(parents=True)
        for t in range(1, 8):
            cv2.imwrite(str(folder / f"im{t}.png"), NOISE[t % 4])
    (tmp_path / "vimeo_septuplet" / "sep_trainlist.txt").write_text("00001/0001\n")
    (tmp_path / "vimeo_septuplet" / "sep_testlist.txt").write_text("00002/0001\n")
    run(tmp_path, *paper, code=2, message="asked for 100 test sequences")  # 2 here, not 1000
    small = [
        "build",
        "--source",
        "vimeo90k",
        "--split",
        "1/1",
        "--presets",
        "light",
        "-q",
        "-j",
        "1",
    ]
    run(tmp_path, *small, code=0, message="")
    assert (tmp_path / "out" / "vimeo90k" / "manifest.json").is_file()
