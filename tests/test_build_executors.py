"""rainsynth.build.executors: the in-process run, the scheduler address check and the cores."""

from __future__ import annotations

import pytest

from rainsynth.build.executors import check_scheduler, cores, run_jobs
from rainsynth.build.plan import BuildOptions, make_plan
from rainsynth.errors import RainsynthError


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
