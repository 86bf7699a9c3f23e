"""rainsynth.build: the lock of a dataset folder, what a rerun removes, the counts."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner
from rainsynth_helpers import SMALL

from rainsynth.build import LOCK, counts, locked, record, remove_temp_files
from rainsynth.build_cli import build_command
from rainsynth.errors import RainsynthError
from rainsynth.fileio import TEMP_PREFIX


def test_a_second_build_into_the_same_folder_is_refused(small_build, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "data"
    shutil.copytree(small_build, out)
    with open(out / LOCK, "a+b") as held:  # a build in progress holds this lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = CliRunner().invoke(build_command, [*SMALL, "--out", str(out), "-j", "1", "-q"])
    assert result.exit_code == 2 and "another rainsynth build is writing" in result.output


def test_a_folder_that_is_not_a_dataset_is_refused_and_left_alone(tmp_path):
    (tmp_path / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(RainsynthError, match="holiday.jpg, which rainsynth build does not write"):
        with locked(tmp_path):
            pass
    assert [p.name for p in tmp_path.iterdir()] == ["holiday.jpg"]


def test_the_lock_goes_when_the_block_ends_even_on_an_error(tmp_path):
    with pytest.raises(KeyError):
        with locked(tmp_path / "data"):
            assert (tmp_path / "data" / LOCK).exists()
            raise KeyError("stop")
    assert list((tmp_path / "data").iterdir()) == []


def test_remove_temp_files_takes_what_a_killed_build_left_and_nothing_else(tmp_path):
    left = [
        tmp_path / f"{TEMP_PREFIX}manifest-12.json",
        tmp_path / "browser" / f"{TEMP_PREFIX}0003-12.jpg",
        tmp_path / "train" / "light" / f"{TEMP_PREFIX}clip-12" / "rain" / "0001.png",
    ]
    kept = [tmp_path / "manifest.json", tmp_path / "browser" / "0003.jpg"]
    for path in left + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    removed = remove_temp_files(tmp_path)
    assert sorted(removed) == sorted([*left[:2], left[2].parents[1]])
    assert all(p.exists() for p in kept) and not any(p.exists() for p in left)


def test_counts_keep_the_order_records_come_in():
    records = [
        {"split": "train", "preset": "heavy"},
        {"split": "train", "preset": "light"},
        {"split": "test", "preset": "heavy"},
        {"split": "train", "preset": "heavy"},
    ]
    found = counts(records)
    assert found == {"train": {"heavy": 2, "light": 1}, "test": {"heavy": 1}}
    assert list(found) == ["train", "test"] and list(found["train"]) == ["heavy", "light"]
    assert record({"build": "abc", "clip": 3}) == {"clip": 3}
