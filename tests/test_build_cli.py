"""`rainsynth build`'s options, recipes, help and the folders it accepts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from rainsynth_helpers import SMALL, hashes, rainsynth_build

from rainsynth.build_cli import build_command

pytestmark = pytest.mark.slow


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


def test_out_must_be_new_empty_or_the_same_build(small_build, tmp_path):
    runner = CliRunner()
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"x")
    result = runner.invoke(build_command, [*SMALL, "--out", str(other), "-q"])
    assert result.exit_code == 2 and "holiday.jpg, which rainsynth build does not" in result.output
    assert sorted(p.name for p in other.iterdir()) == ["holiday.jpg"]

    out = tmp_path / "data"
    shutil.copytree(small_build, out)
    (out / "manifest.json").unlink()  # e.g. the disk filled up while it was written
    result = runner.invoke(build_command, [*SMALL, "--out", str(out), "-j", "1", "-q"])
    assert result.exit_code == 0, result.output
    assert hashes(out) == hashes(small_build)
    result = runner.invoke(build_command, [*SMALL, "--seed", "4", "--out", str(out), "-q"])
    assert result.exit_code == 2 and "another command" in result.output
    assert hashes(out) == hashes(small_build)


def test_recipe_values_and_command_line_overrides(small_build, tmp_path):
    recipe = tmp_path / "small.toml"
    recipe.write_text(
        'source = "builtin"\ncount = 5\nsplit = "4/2"\nframes = 5\nsize = [96, 160]\n'
        'seed = 9\npresets = ["light", "heavy"]\nout = "data"\nquiet = true\n'
    )
    result = CliRunner().invoke(build_command, ["--recipe", str(recipe), "--seed", "3", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert hashes(tmp_path / "data") == hashes(small_build)  # out relative to the recipe
    recipe.write_text('source = "builtin"\nshade = 3\n')
    result = CliRunner().invoke(build_command, ["--recipe", str(recipe), "--out", "x"])
    assert result.exit_code == 2 and "unknown key(s) ['shade']" in result.output


@pytest.mark.parametrize("name", ["rainsynall100.toml", "builtin_small.toml"])
def test_shipped_recipes_are_valid(name):
    path = Path(__file__).resolve().parents[1] / "datasets" / name
    ctx = build_command.make_context("build", ["--recipe", str(path), "--out", "x"])
    assert ctx.params["presets"] == ("light", "heavy") and ctx.params["frames"] == 7


def test_help_teaches_with_examples():
    result = CliRunner().invoke(build_command, ["--help"])
    assert result.exit_code == 0
    assert "Examples:" in result.output and "--source vimeo90k" in result.output
