"""Paired folders made elsewhere (rainsynth.paired) and `rainsynth test` on them."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from derain_helpers import make_dataset

from derain import evaluate
from rainsynth.dataset import DatasetClip
from rainsynth.errors import RainsynthError
from rainsynth.paired import read_clips, read_paired


def write_frames(folder: Path, count: int, level: int, ext: str = ".png") -> None:
    """Frames 1..count of 24x32, frame t filled with level + t."""
    folder.mkdir(parents=True, exist_ok=True)
    for t in range(1, count + 1):
        cv2.imwrite(str(folder / f"{t:04d}{ext}"), np.full((24, 32, 3), level + t, np.uint8))


def test_rain_and_gt_folders_pair_up(tmp_path):
    write_frames(tmp_path / "t1_Rain", 3, 100, ".jpg")
    write_frames(tmp_path / "t1_GT", 3, 50)
    write_frames(tmp_path / "unrelated", 3, 0)
    (clip,) = read_paired(tmp_path)
    assert (clip.preset, clip.name, clip.num_frames, clip.split) == ("t1", "t1", 3, "")
    assert clip.rain().shape == (3, 24, 32, 3) and clip.rain().dtype == np.float32
    np.testing.assert_allclose(clip.clean()[:, 0, 0, 0] * 255, [51, 52, 53], atol=1e-4)
    assert clip.layers() is None and clip.flow() is None


def test_basicsr_lq_gt_with_a_folder_per_clip(tmp_path):
    for name in ("000", "011"):
        write_frames(tmp_path / "LQ" / name, 4, 90)
        write_frames(tmp_path / "GT" / name, 4, 10)
    clips = read_paired(tmp_path)
    assert [(c.preset, c.name, c.num_frames) for c in clips] == [
        ("paired", "000", 4), ("paired", "011", 4)
    ]  # fmt: skip


def test_rain_and_clean_folders_at_any_depth(tmp_path):
    for name in ("a", "b"):
        write_frames(tmp_path / "set" / name / "rain", 2, 90)
        write_frames(tmp_path / "set" / name / "clean", 2, 10)
    clips = read_paired(tmp_path)
    assert [c.preset for c in clips] == ["set/a", "set/b"]
    assert Path(clips[1].rain_files[0]).parent == tmp_path / "set" / "b" / "rain"


def test_mismatched_and_duplicate_frames_are_named(tmp_path):
    write_frames(tmp_path / "x_rain", 3, 90)
    write_frames(tmp_path / "x_gt", 2, 10)
    with pytest.raises(RainsynthError, match=r"0003.png has no counterpart in .*x_gt"):
        read_paired(tmp_path)
    write_frames(tmp_path / "x_gt", 3, 10)
    write_frames(tmp_path / "x_gt", 1, 10, ".jpg")
    with pytest.raises(RainsynthError, match="two frames of one name"):
        read_paired(tmp_path)


def test_a_folder_without_pairs_says_what_is_accepted(tmp_path):
    write_frames(tmp_path / "rain", 2, 90)
    with pytest.raises(RainsynthError, match="X_Rain/ \\+ X_GT/"):
        read_clips(tmp_path)


def test_read_clips_reads_a_built_dataset_as_such(tmp_path):
    clips = read_clips(make_dataset(tmp_path / "data", clips=1), split="test")
    assert clips and all(isinstance(c, DatasetClip) and c.split == "test" for c in clips)


def test_test_command_scores_a_paired_folder(tmp_path):
    write_frames(tmp_path / "X_Rain", 3, 60)
    write_frames(tmp_path / "X_GT", 3, 50)
    done = CliRunner().invoke(evaluate.test_command, ["--data", str(tmp_path), "--method", "rain",
                                             "--no-progress", "--report", str(tmp_path / "r.json")])  # fmt: skip
    assert done.exit_code == 0, done.output
    # Y of a grey level g is 16 + 219 g / 255: 10 levels of grey are 8.59 levels of Y
    expected = 10 * np.log10(255**2 / (10 * 219 / 255) ** 2)
    assert f"PSNR {expected:6.2f} dB" in done.output and " X " in done.output
