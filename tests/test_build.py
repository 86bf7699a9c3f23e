"""`rainsynth build` end to end: real processes, killed and resumed, compared byte for byte."""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import rainsynth
from rainsynth import dataset
from rainsynth.build import BuildOptions, build, make_plan
from rainsynth.build.output import LOCK
from rainsynth.build.plan import clip_name, unique_names
from rainsynth.build_cli import build_command
from rainsynth.dataset import read_dataset

pytestmark = pytest.mark.slow

# A small built-in build: 6 sequences (some synthetic with exact flow, some video windows),
# light and heavy: 12 clips of 5 frames, about 0.1 s each.
SMALL = [
    "--count", "5", "--split", "4/2", "--frames", "5", "--size", "96x160", "--seed", "3",
]  # fmt: skip
CLIPS = 12
RAINSYNTH = (
    [shutil.which("rainsynth")]
    if shutil.which("rainsynth")
    else [sys.executable, "-c", "from rainsynth.cli import main; main()"]
)


def rainsynth_build(*args: str, out: Path, wait: bool = True, check: bool = True, **kwargs):
    """Run `rainsynth build ... --out OUT` in a new process (Popen when not wait)."""
    command = [*RAINSYNTH, "build", *args, "--out", str(out)]
    if not wait:
        return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)
    done = subprocess.run(command, capture_output=True, text=True, timeout=240, **kwargs)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def hashes(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def clip_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.glob("*/*/*") if p.is_dir() and not p.name.startswith("."))


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """The small build, uninterrupted, one worker."""
    out = tmp_path_factory.mktemp("reference") / "data"
    rainsynth_build(*SMALL, "--workers", "1", "--quiet", out=out)
    return out


def test_reference_build_is_complete_and_reproducible(reference):
    manifest = json.loads((reference / "manifest.json").read_text())
    assert manifest["generator"] == f"rainsynth {rainsynth.__version__}"
    assert manifest["command"].startswith("rainsynth build --source builtin")
    assert "--seed 3" in manifest["command"] and "--workers" not in manifest["command"]
    assert manifest["counts"] == {
        "train": {"light": 4, "heavy": 4},
        "test": {"light": 2, "heavy": 2},
    }
    assert [r["clip"] for r in manifest["clips"]] == list(range(CLIPS))
    assert manifest["skipped"] == []
    card = (reference / "README.md").read_text()
    assert "| train | light | 4 | 20 |" in card and manifest["command"] in card
    for image in ("preview.png", "parameters.png"):
        assert cv2.imread(str(reference / image)) is not None
    clips = read_dataset(reference)
    assert len(clips) == CLIPS
    assert {c.path.relative_to(reference).as_posix() for c in clips} == {
        f"{r['split']}/{r['preset']}/{r['name']}" for r in manifest["clips"]
    }
    assert any(r["flow"] for r in manifest["clips"]) and not all(
        r["flow"] for r in manifest["clips"]
    )
    for clip, record in zip(read_dataset(reference), sorted_records(manifest), strict=True):
        assert (clip.num_frames, clip.height, clip.width) == (5, 96, 160)
        params = clip.params()
        assert params == rainsynth.sample_params(
            record["preset"], seed=3, shape=(5, 96, 160), clip=record["clip"]
        )
        flow = clip.flow()
        assert (flow is not None) == record["flow"]
        if flow is not None:
            assert flow.shape == (4, 96, 160, 2) and flow.dtype == np.float32
    # the stored rain is exactly what rendering the stored clean frames with params.json gives
    clip = clips[-1]
    clean = np.rint(clip.clean() * 255).astype(np.uint8)
    rain = rainsynth.render(clean, clip.params()).rain
    np.testing.assert_array_equal(dataset.to_uint8(rain), np.rint(clip.rain() * 255))


def sorted_records(manifest: dict) -> list[dict]:
    return sorted(manifest["clips"], key=lambda r: (r["split"], r["preset"], r["name"]))


def test_two_workers_give_the_same_bytes(reference, tmp_path):
    out = tmp_path / "data"
    rainsynth_build(*SMALL, "--workers", "2", "--quiet", out=out)
    assert hashes(out) == hashes(reference)


def test_rerunning_a_finished_build_renders_nothing(reference, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(reference, out)
    times = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    done = rainsynth_build(*SMALL, "--workers", "1", out=out)
    assert f"{CLIPS} clips already built; nothing to render" in done.stderr
    assert "clip/s" not in done.stderr  # no progress bar: no clip was rendered
    assert hashes(out) == hashes(reference)
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


def test_killed_builds_resume_to_the_same_bytes(reference, tmp_path):
    """SIGKILL during the first clip's write, after 1 and 5 clips, and while writing the card;
    a two-worker build killed too; the stale temporary folders go and the bytes end equal."""
    out = tmp_path / "data"
    expected = hashes(reference)

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


def test_dask_scheduler_gives_the_same_bytes(reference, tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, protocol="tcp", host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:  # fmt: skip
        out = tmp_path / "data"
        rainsynth_build(*SMALL, "--scheduler", cluster.scheduler_address, "--quiet", out=out)
    assert hashes(out) == hashes(reference)


@pytest.fixture
def frame_folders(tmp_path) -> Path:
    """A `frames` source: 4 sequences of 6 noise frames, 40x64."""
    rng = np.random.default_rng(0)
    root = tmp_path / "frames"
    for sequence in "abcd":
        (root / sequence).mkdir(parents=True)
        for t in range(1, 7):
            image = rng.integers(0, 256, (40, 64, 3), dtype=np.uint8)
            cv2.imwrite(str(root / sequence / f"{t:03d}.png"), image)
    return root


FRAMES = ["--source", "frames", "--frames", "3", "--split", "0.75/0.25", "--presets", "heavy"]


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


def test_test_groups_make_the_test_side(frame_folders):
    options = BuildOptions(source="frames", root=str(frame_folders), frames=3, presets=("dry",))
    plan, resolved = make_plan(replace(options, test_groups=("c", "a")))
    sides = {job.ref.key: job.split for job in plan.jobs}
    assert sides == {
        f"{g}@{s}": "test" if g in "ac" else "train" for g in "abcd" for s in ("0000", "0003")
    }
    assert resolved.split == "4/4" and "--test-groups c,a" in plan.header["command"]
    assert plan.header["build"] != make_plan(options)[0].header["build"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--presets", "light,hail"], "unknown preset 'hail'"),
        (["--test-groups", "nowhere"], "test group(s) ['nowhere'] are not in the source"),
        (["--split", "9x1"], "split '9x1'"),
        (["--split", "500/100"], "there are"),
        (["--source", "vimeo90k"], "needs a root"),
        (["--source", "vimeo90k", "--root", "no/such/folder"], "does not exist"),
        (["--size", "big"], "HEIGHTxWIDTH"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(args, message, tmp_path):
    done = rainsynth_build(*args, "--quiet", out=tmp_path / "data", check=False)
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "data" / "manifest.json").exists()


def test_out_must_be_new_empty_or_the_same_build(reference, tmp_path):
    runner = CliRunner()
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"x")
    result = runner.invoke(build_command, [*SMALL, "--out", str(other), "-q"])
    assert result.exit_code == 2 and "holiday.jpg, which rainsynth build does not" in result.output
    assert sorted(p.name for p in other.iterdir()) == ["holiday.jpg"]

    out = tmp_path / "data"
    shutil.copytree(reference, out)
    (out / "manifest.json").unlink()  # e.g. the disk filled up while it was written
    result = runner.invoke(build_command, [*SMALL, "--out", str(out), "-j", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert hashes(out) == hashes(reference)
    result = runner.invoke(build_command, [*SMALL, "--seed", "4", "--out", str(out), "-q"])
    assert result.exit_code == 2 and "another command" in result.output
    assert hashes(out) == hashes(reference)


def test_recipe_values_and_command_line_overrides(reference, tmp_path):
    recipe = tmp_path / "small.toml"
    recipe.write_text(
        'source = "builtin"\ncount = 5\nsplit = "4/2"\nframes = 5\nsize = [96, 160]\n'
        'seed = 9\npresets = ["light", "heavy"]\nout = "data"\nquiet = true\n'
    )
    result = CliRunner().invoke(build_command, ["--recipe", str(recipe), "--seed", "3", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert hashes(tmp_path / "data") == hashes(reference)  # out relative to the recipe
    recipe.write_text('source = "builtin"\nshade = 3\n')
    result = CliRunner().invoke(build_command, ["--recipe", str(recipe), "--out", "x"])
    assert result.exit_code == 2 and "unknown key(s) ['shade']" in result.output


@pytest.mark.parametrize("name", ["rainsynall100.toml", "builtin_small.toml"])
def test_shipped_recipes_are_valid(name):
    path = Path(__file__).resolve().parents[1] / "datasets" / name
    ctx = build_command.make_context("build", ["--recipe", str(path), "--out", "x"])
    assert ctx.params["presets"] == ("light", "heavy") and ctx.params["frames"] == 7


def test_disk_full_is_a_clear_error_and_resumes(reference, tmp_path, monkeypatch):
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
    assert hashes(out) == hashes(reference)


def _small_options() -> BuildOptions:
    return BuildOptions(count=5, split="4/2", frames=5, size=(96, 160), seed=3)


def test_clip_names_are_folder_safe_and_unique():
    assert clip_name("00001/0001") == "00001_0001"
    assert clip_name("bikes.mp4@0014") == "bikes.mp4@0014"
    assert clip_name("../x y") == "_x_y"
    names = unique_names(["a/b", "a_b", "c"])
    assert len(set(names)) == 3 and names[2] == "c" and names[0].startswith("a_b-")


def test_help_teaches_with_examples():
    result = CliRunner().invoke(build_command, ["--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "--source vimeo90k" in result.output


def test_progress_bar_counts_clips_per_second(reference, tmp_path):
    out = tmp_path / "data"
    shutil.copytree(reference, out)
    shutil.rmtree(clip_folders(out)[0])
    done = rainsynth_build(*SMALL, "--workers", "1", out=out)
    assert "clip/s" in done.stderr and f"{CLIPS - 1} clips already built" in done.stderr
    assert hashes(out) == hashes(reference)


def test_a_second_build_into_the_same_folder_is_refused(reference, tmp_path):
    fcntl = pytest.importorskip("fcntl")
    out = tmp_path / "data"
    shutil.copytree(reference, out)
    with open(out / LOCK, "a+b") as held:  # a build in progress holds this lock
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        result = CliRunner().invoke(build_command, [*SMALL, "--out", str(out), "-j", "1", "-q"])
    assert result.exit_code == 2 and "another rainsynth build is writing" in result.output
