"""rainsynth.build.executors: one job's clip (an unreadable sequence skipped or named), the
in-process run, the scheduler address check and the cores."""

from __future__ import annotations

import json

import pytest

from rainsynth import dataset
from rainsynth.build.executors import build_clip, check_scheduler, cores, run_jobs
from rainsynth.build.plan import BuildOptions, make_plan
from rainsynth.errors import RainsynthError, SourceError


def test_a_clip_is_its_folder_and_its_browser_previews(tmp_path):
    plan, options = make_plan(BuildOptions(count=1, split="1/0", frames=2, size=(16, 24)))
    job = plan.jobs[0]
    result = build_clip(job, options, str(tmp_path))
    info = json.loads((job.folder(tmp_path) / dataset.CLIP_FILE).read_text())
    assert result == {"built": info}
    assert info["build"] == plan.header["build"] and info["shape"] == [2, 16, 24]
    assert list((tmp_path / "browser").iterdir())


def test_an_unreadable_sequence_is_skipped_or_named(frame_folders, tmp_path):
    broken = frame_folders / "b" / "002.png"
    broken.write_bytes(b"not a png")
    options = BuildOptions(source="frames", root=str(frame_folders), frames=3, presets=("dry",))
    plan, options = make_plan(options)
    (job,) = [job for job in plan.jobs if job.ref.key == "b@0000"]
    with pytest.raises(SourceError, match="--on-error skip") as error:
        build_clip(job, options, str(tmp_path))
    assert str(broken) in str(error.value) and "cannot build clip" in str(error.value)
    plan, options = make_plan(BuildOptions(**{**vars(options), "on_error": "skip"}))
    (job,) = [job for job in plan.jobs if job.ref.key == "b@0000"]
    skip = build_clip(job, options, str(tmp_path))["skipped"]
    assert skip["source"]["key"] == "b@0000" and str(broken) in skip["error"]
    assert not job.folder(tmp_path).exists()


def test_one_worker_runs_the_jobs_in_order_in_this_process(tmp_path):
    plan, options = make_plan(BuildOptions(count=2, split="1/1", frames=2, size=(16, 24)))
    results = list(run_jobs(plan.jobs, options, tmp_path, workers=1, scheduler=None))
    assert [r["built"]["clip"] for r in results] == [job.index for job in plan.jobs]
    assert all((job.folder(tmp_path) / "clip.json").exists() for job in plan.jobs)


def test_a_bad_scheduler_address_is_named():
    pytest.importorskip("distributed")
    with pytest.raises(RainsynthError, match="--scheduler 'xx' is not a Dask scheduler address"):
        check_scheduler("xx")
    check_scheduler("tcp://127.0.0.1:8786")


def test_cores_counts_at_least_one():
    assert cores() >= 1
