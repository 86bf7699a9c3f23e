"""rainsynth.build: `rainsynth build` end to end (real processes, killed and resumed, compared byte
for byte); the lock of a dataset folder, what a rerun removes, the counts."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import signal
import subprocess
import time

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from rainsynth_helpers import CLIPS, SMALL, clip_folders, hashes, rainsynth_build

import rainsynth
from rainsynth import dataset
from rainsynth.build import LOCK, BuildOptions, build, counts, locked, record, remove_temp_files
from rainsynth.build_cli import build_command
from rainsynth.dataset import read_dataset
from rainsynth.errors import RainsynthError
from rainsynth.fileio import TEMP_PREFIX

FRAMES = ["--source", "frames", "--frames", "3", "--split", "0.75/0.25", "--presets", "heavy"]


@pytest.mark.slow
def test_reference_build_is_complete_and_reproducible(small_build):
    manifest = json.loads((small_build / "manifest.json").read_text())
    assert manifest["generator"] == f"rainsynth {rainsynth.__version__}"
    assert manifest["command"].startswith("rainsynth build --source builtin")
    assert "--seed 3" in manifest["command"] and "--workers" not in manifest["command"]
    assert manifest["counts"] == {
        "train": {"light": 4, "heavy": 4},
        "test": {"light": 2, "heavy": 2},
    }
    assert [r["clip"] for r in manifest["clips"]] == list(range(CLIPS))
    assert manifest["skipped"] == []
    card = (small_build / "README.md").read_text()
    assert "| train | light | 4 | 20 |" in card and manifest["command"] in card
    for image in ("preview.png", "parameters.png"):
        assert cv2.imread(str(small_build / image)) is not None
    clips = read_dataset(small_build)
    assert len(clips) == CLIPS
    assert {c.path.relative_to(small_build).as_posix() for c in clips} == {
        f"{r['split']}/{r['preset']}/{r['name']}" for r in manifest["clips"]
    }
    assert any(r["flow"] for r in manifest["clips"]) and not all(
        r["flow"] for r in manifest["clips"]
    )
    for clip, entry in zip(read_dataset(small_build), sorted_records(manifest), strict=True):
        assert (clip.num_frames, clip.height, clip.width) == (5, 96, 160)
        params = clip.params()
        assert params == rainsynth.sample_params(
            entry["preset"], seed=3, shape=(5, 96, 160), clip=entry["clip"]
        )
        flow = clip.flow()
        assert (flow is not None) == entry["flow"]
        if flow is not None:
            assert flow.shape == (4, 96, 160, 2) and flow.dtype == np.float32
    # the stored rain is exactly what rendering the stored clean frames with params.json gives
    clip = clips[-1]
    clean = np.rint(clip.clean() * 255).astype(np.uint8)
    rain = rainsynth.render(clean, clip.params()).rain
    np.testing.assert_array_equal(dataset.to_uint8(rain), np.rint(clip.rain() * 255))


def sorted_records(manifest: dict) -> list[dict]:
    return sorted(manifest["clips"], key=lambda r: (r["split"], r["preset"], r["name"]))


@pytest.mark.slow
def test_two_workers_give_the_same_bytes(small_build, tmp_path):
    out = tmp_path / "data"
    rainsynth_build(*SMALL, "--workers", "2", "--quiet", out=out)
    assert hashes(out) == hashes(small_build)


@pytest.mark.slow
def test_rerunning_a_finished_build_renders_nothing(small_build, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(small_build, out)
    times = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    done = rainsynth_build(*SMALL, "--workers", "1", out=out)
    assert f"{CLIPS} clips already built; nothing to render" in done.stderr
    assert "clip/s" not in done.stderr  # no progress bar: no clip was rendered
    assert hashes(out) == hashes(small_build)
    assert len(times) >= 13 * CLIPS  # 10 PNGs, layers, params, clip.json (, flow) per clip
    assert all(p.stat().st_mtime_ns == times[p] for p in times)  # nothing rewritten


def kill_when(process: subprocess.Popen, condition, timeout: float = 120) -> None:
    """SIGKILL `process` as soon as `condition()` holds (polled every 2 ms)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, "the build finished before the kill"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    process.send_signal(signal.SIGKILL)
    process.wait()


@pytest.mark.slow
def test_killed_builds_resume_to_the_same_bytes(small_build, tmp_path):
    """SIGKILL during the first clip's write, after 1 and 5 clips, and while writing the card;
    a two-worker build killed too; the stale temporary folders go and the bytes end equal."""
    out = tmp_path / "data"
    expected = hashes(small_build)

    def temp_folder_exists():
        return any(out.glob(f"*/*/{dataset.TEMP_PREFIX}*"))

    def clips_at_least(n):
        return lambda: len(clip_folders(out)) >= n

    def card_started():
        return (out / "parameters.png").exists()

    moments = [
        ("1", temp_folder_exists),
        ("1", clips_at_least(1)),
        ("2", clips_at_least(5)),
        ("1", card_started),
    ]
    for workers, condition in moments:
        process = rainsynth_build(*SMALL, "--workers", workers, out=out, wait=False)
        kill_when(process, condition)
        assert not (out / "manifest.json").exists()
        # every clip visible after a kill is complete: byte-identical to the reference's
        for folder in clip_folders(out):
            for path in folder.rglob("*"):
                if path.is_file():
                    key = str(path.relative_to(out))
                    assert hashlib.sha256(path.read_bytes()).hexdigest() == expected[key]
    stale = out / "test" / "heavy" / f"{dataset.TEMP_PREFIX}junk-999"
    stale.mkdir(parents=True, exist_ok=True)
    (stale / "0001.png").write_bytes(b"half a frame")
    done = rainsynth_build(*SMALL, "--workers", "1", out=out)
    assert "removed" in done.stderr and "clips already built" in done.stderr
    assert hashes(out) == expected


@pytest.mark.slow
def test_dask_scheduler_gives_the_same_bytes(small_build, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:  # fmt: skip
        out = tmp_path / "data"
        rainsynth_build(*SMALL, "--scheduler", cluster.scheduler_address, "--quiet", out=out)
    assert hashes(out) == hashes(small_build)


@pytest.mark.slow
def test_unreadable_frame_fails_naming_the_file_or_is_skipped(frame_folders, tmp_path):
    broken = frame_folders / "b" / "005.png"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated
    out = tmp_path / "fail"
    args = [*FRAMES, "--root", str(frame_folders), "--quiet"]
    for workers in ("1", "2"):
        done = rainsynth_build(*args, "--workers", workers, out=out, check=False)
        assert done.returncode == 2
        assert str(broken) in done.stderr and "--on-error skip" in done.stderr
        assert "Traceback" not in done.stderr
        assert not (out / "manifest.json").exists()
        for folder in clip_folders(out):  # what was built is complete
            assert (folder / dataset.CLIP_FILE).exists()

    done = rainsynth_build(*args, "--workers", "1", "--on-error", "skip", out=out, check=False)
    assert done.returncode == 0, done.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    (skip,) = manifest["skipped"]
    assert skip["source"]["key"] == "b@0003" and str(broken) in skip["error"]
    built = {r["source"]["key"] for r in manifest["clips"]}
    assert built == {f"{name}@{start}" for name in "abcd" for start in ("0000", "0003")} - {
        "b@0003"
    }
    assert "skipped" in (out / "README.md").read_text()
    assert len(read_dataset(out)) == len(manifest["clips"])


@pytest.mark.slow
def test_disk_full_is_a_clear_error_and_resumes(small_build, tmp_path, monkeypatch):
    """ENOSPC while writing the fourth clip: a clear error, no partial clip, a clean resume."""
    out = tmp_path / "data"
    write_npz = dataset.write_npz
    calls = []

    def full_disk(path, arrays):
        calls.extend([path] if path.name == dataset.LAYERS_FILE else [])
        if len(calls) == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        write_npz(path, arrays)

    monkeypatch.setattr(dataset, "write_npz", full_disk)
    result = CliRunner().invoke(build_command, [*SMALL, "--out", str(out), "-j", "1", "-q"])
    assert result.exit_code == 1
    assert (
        "No space left on device" in result.output and "run the same command again" in result.output
    )
    assert len(clip_folders(out)) == 3  # the clips before it; nothing of the failed one
    assert not list(out.glob(f"*/*/{dataset.TEMP_PREFIX}*"))
    monkeypatch.setattr(dataset, "write_npz", write_npz)
    manifest = build(_small_options(), out, workers=1, progress=False, echo=lambda _: None)
    assert len(manifest["clips"]) == CLIPS
    assert hashes(out) == hashes(small_build)


def _small_options() -> BuildOptions:
    return BuildOptions(count=5, split="4/2", frames=5, size=(96, 160), seed=3)


@pytest.mark.slow
def test_progress_bar_counts_clips_per_second(small_build, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(small_build, out)
    shutil.rmtree(clip_folders(out)[0])
    done = rainsynth_build(*SMALL, "--workers", "1", out=out)
    assert "clip/s" in done.stderr and f"{CLIPS - 1} clips already built" in done.stderr
    assert hashes(out) == hashes(small_build)


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
