"""``rainsynth preview`` end to end, and the CLI's handling of bad input."""

from __future__ import annotations

import json

import cv2
import imageio_ffmpeg
import numpy as np
from click.testing import CliRunner

import rainsynth
from rainsynth.cli import main


def test_preview_on_the_builtin_clip_writes_sheet_video_and_params(tmp_path):
    result = CliRunner().invoke(
        main,
        [
            "preview",
            "--preset",
            "heavy",
            "--seed",
            "3",
            "--frames",
            "3",
            "--size",
            "64x96",
            "-o",
            str(tmp_path),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    sheet = cv2.imread(str(tmp_path / "contact_sheet.png"))
    assert sheet.shape == (3 * 64, 6 * 96, 3)
    params = rainsynth.RainParams.from_dict(json.loads((tmp_path / "params.json").read_text()))
    assert params.shape == (3, 64, 96) and params.seed == 3
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "side_by_side.mp4"))
    meta = next(reader)
    assert tuple(meta["size"]) == (2 * 96, 64)
    assert sum(1 for _ in reader) == 3


def test_preview_of_a_frame_folder(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        cv2.imwrite(str(frames / f"{i:03d}.png"), rng.integers(0, 255, (40, 60, 3), np.uint8))
    out = tmp_path / "out"
    result = CliRunner().invoke(
        main,
        [
            "preview",
            "--input",
            str(frames),
            "--frames",
            "4",
            "--size",
            "40x60",
            "-o",
            str(out),
        ],  # fmt: skip
    )
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(out / "contact_sheet.png")).shape == (4 * 40, 6 * 60, 3)


def test_bad_preset_is_a_clear_error_with_exit_code_2(tmp_path):
    result = CliRunner().invoke(main, ["preview", "--preset", "hail", "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert "unknown preset 'hail'" in result.output
    assert not (tmp_path / "contact_sheet.png").exists()


def test_bad_size_is_a_usage_error():
    result = CliRunner().invoke(main, ["preview", "--size", "256by448"])
    assert result.exit_code == 2
    assert "expected HxW" in result.output


def test_help_lists_every_subcommand_without_importing_torch():
    import subprocess
    import sys

    code = (
        "import sys; from click.testing import CliRunner; from rainsynth.cli import main; "
        "r = CliRunner().invoke(main, ['--help']); print(r.output); "
        "r = CliRunner().invoke(main, ['preview', '--help']); print(r.output); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    for name in ("preview", "build", "train", "test", "derain"):
        assert name in out.stdout
    assert "Examples" in out.stdout
    assert out.stdout.strip().endswith("False")


def test_import_rainsynth_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, rainsynth; rainsynth.sample_params('heavy', seed=0, shape=(1, 4, 4)); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
