"""rainsynth.build.plan: clip folder names, test groups and the manifest's command line."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rainsynth.build.plan import BuildOptions, clip_name, command_line, make_plan, unique_names
from rainsynth.errors import RainsynthError


def test_test_groups_make_the_test_side(frame_folders):
    options = BuildOptions(source="frames", root=str(frame_folders), frames=3, presets=("dry",))
    plan, resolved = make_plan(replace(options, test_groups=("c", "a")))
    sides = {job.ref.key: job.split for job in plan.jobs}
    assert sides == {
        f"{g}@{s}": "test" if g in "ac" else "train" for g in "abcd" for s in ("0000", "0003")
    }
    assert resolved.split == "4/4" and "--test-groups c,a" in plan.header["command"]
    assert plan.header["build"] != make_plan(options)[0].header["build"]


def test_clip_names_are_folder_safe_and_unique():
    assert clip_name("00001/0001") == "00001_0001"
    assert clip_name("bikes.mp4@0014") == "bikes.mp4@0014"
    assert clip_name("../x y") == "_x_y"
    names = unique_names(["a/b", "a_b", "c"])
    assert len(set(names)) == 3 and names[2] == "c" and names[0].startswith("a_b-")


@pytest.mark.parametrize(
    ("options", "command"),
    [
        (
            BuildOptions(split="0.9/0.1"),
            "rainsynth build --source builtin --split 0.9/0.1 --presets light,heavy --frames 7 "
            "--resize crop --seed 0 --on-error fail",
        ),
        (
            BuildOptions(
                source="videos",
                root="/a b",
                split="4/2",
                presets=("light", "my storm.toml"),
                frames=5,
                stride=3,
                size=(96, 160),
                resize="scale",
                seed=3,
                count=2,
                on_error="skip",
                test_groups=("x", "y z"),
            ),  # fmt: skip
            "rainsynth build --source videos --root '/a b' --split 4/2 --presets "
            "'light,my storm.toml' --frames 5 --stride 3 --size 96x160 --resize scale --seed 3 "
            "--count 2 --test-groups 'x,y z' --on-error skip",
        ),
    ],
)
def test_command_line_lists_the_options_that_decide_the_bytes(options, command):
    assert command_line(options) == command


def test_plan_orders_jobs_train_then_test_presets_then_sequences():
    plan, resolved = make_plan(BuildOptions(count=3, split="2/1", frames=3, size=(32, 48)))
    assert [job.index for job in plan.jobs] == list(range(len(plan.jobs)))
    sides = [job.split for job in plan.jobs]
    assert sides == sorted(sides, key=["train", "test"].index)
    train = [job for job in plan.jobs if job.split == "train"]
    assert [job.preset.name for job in train] == ["light"] * 2 + ["heavy"] * 2
    assert plan.header["command"] == command_line(resolved) and resolved.split == "2/1"
    assert plan.header["build"] == make_plan(resolved)[0].header["build"]


def test_bad_presets_and_on_error_are_named():
    with pytest.raises(RainsynthError, match="on_error must be one of"):
        make_plan(BuildOptions(on_error="ignore"))
    with pytest.raises(RainsynthError, match="no presets given"):
        make_plan(BuildOptions(presets=()))
    with pytest.raises(RainsynthError, match="the same folder name twice"):
        make_plan(BuildOptions(presets=("light", "light")))
