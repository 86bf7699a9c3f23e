"""``rainsynth build``: the command line of :mod:`rainsynth.build`, with its TOML recipes."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path

import click

from rainsynth import browser, card, dataset
from rainsynth.build import MANIFEST, BuildOptions, build, counts, locked
from rainsynth.build.executors import cores
from rainsynth.build.plan import ON_ERROR
from rainsynth.cli import Command
from rainsynth.errors import RainsynthError, SourceError
from rainsynth.fileio import parse_size
from rainsynth.presets import PRESETS
from rainsynth.sources import SOURCES
from rainsynth.sources.base import MAX_FRAMES
from rainsynth.tomlfile import load_toml

ROOT_ENV = "RAINSYNTH_ROOT"
DEFAULT_ROOTS = {"vimeo90k": "vimeo_septuplet"}
"""Where a source's root is looked for when neither --root nor $RAINSYNTH_ROOT gives it."""
RECIPE_KEYS = (*(f.name for f in fields(BuildOptions)), "out", "workers", "scheduler", "quiet")
"""The keys of a recipe: the options of `rainsynth build`, as in BuildOptions."""

EXAMPLES = """\b
Examples:
  rainsynth build --out out/data
      built-in offline source (camera motion over bundled photos, with exact
      flow, and short bundled videos), light and heavy rain, split 0.9/0.1
  rainsynth build --source vimeo90k --split 900/100
      a RainSynAll100-style dataset from ./vimeo_septuplet (or --root PATH, or
      $RAINSYNTH_ROOT) into out/vimeo90k; test clips come from sep_testlist.txt
  rainsynth build --recipe datasets/rainsynall100.toml --root vimeo_septuplet \\
      --out out/rainsynall100
      the same from a recipe; command-line options override recipe values
  rainsynth build --source videos --root clips/ --frames 7 --stride 14 \\
      --size 256x448 --on-error skip --out out/videos
  rainsynth build --out out/data --scheduler tcp://10.0.0.5:8786
      run the jobs on a Dask cluster (every worker must see --out)

\b
Run the same command again to resume an interrupted build: finished clips
are kept, unfinished ones are redone, and the output is byte-identical to an
uninterrupted build whatever the number of workers. The dataset card is
OUT/README.md; open OUT/index.html in a web browser to look at the clips;
read them with rainsynth.dataset.read_dataset(OUT).
"""


def _load_recipe(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Eager --recipe callback: the recipe's values become the defaults of the other options."""
    if value is None:
        return None
    path = Path(value)
    try:
        recipe = load_toml(path)
    except RainsynthError as error:
        raise click.BadParameter(
            f"cannot read recipe {path}: {error.__cause__}", ctx, param
        ) from None
    recipe = {key.replace("-", "_"): v for key, v in recipe.items()}
    unknown = sorted(set(recipe) - set(RECIPE_KEYS))
    if unknown:
        raise click.BadParameter(
            f"recipe {path} has unknown key(s) {unknown}; allowed: {', '.join(RECIPE_KEYS)}",
            ctx,
            param,
        )
    for key in ("root", "out"):  # relative paths are relative to the recipe file
        if isinstance(recipe.get(key), str):
            recipe[key] = str(path.parent / recipe[key])
    for key, sep in (("presets", ","), ("test_groups", ","), ("size", "x")):  # as typed
        if isinstance(recipe.get(key), list):
            recipe[key] = sep.join(map(str, recipe[key]))
    ctx.default_map = {**(ctx.default_map or {}), **recipe}
    return value


def _parse_size(ctx: click.Context, param: click.Parameter, value) -> tuple[int, int] | None:
    try:
        return None if value is None else parse_size(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not HEIGHTxWIDTH, e.g. 256x448", ctx, param
        ) from None


def _parse_names(ctx: click.Context, param: click.Parameter, value) -> tuple[str, ...]:
    """Comma-separated names as a tuple: "a, b,c" -> ("a", "b", "c"); --presets needs one."""
    names = tuple(part.strip() for part in str(value or "").split(",") if part.strip())
    if not names and param.name == "presets":
        raise click.BadParameter("give at least one preset, e.g. light,heavy", ctx, param)
    return names


@click.command("build", cls=Command, epilog=EXAMPLES)
@click.option("--recipe", type=click.Path(exists=True, dir_okay=False), is_eager=True,
              expose_value=False, callback=_load_recipe,
              help="TOML file of option values (keys = option names, e.g. "
              "datasets/rainsynall100.toml). Command-line options override it; relative paths in "
              "it are relative to the file.")  # fmt: skip
@click.option("--source", type=click.Choice(SOURCES), default="builtin", show_default=True,
              help="Where clean clips come from: vimeo90k (septuplet layout), videos (files "
              "decoded with ffmpeg), frames (folders of images), builtin (offline, ships with the "
              "package).")  # fmt: skip
@click.option("--root", help=f"Path of the source (not for builtin) [default: ${ROOT_ENV}, else "
              "./vimeo_septuplet for vimeo90k].")  # fmt: skip
@click.option("--split", help="TRAIN/TEST sequences as counts (900/100) or fractions (0.9/0.1), "
              "seeded, never one source video on both sides. Default: every sequence (Vimeo's "
              "own lists, else 0.9/0.1).")  # fmt: skip
@click.option("--presets", default="light,heavy", show_default=True, callback=_parse_names,
              help=f"Comma-separated rain presets: {', '.join(PRESETS)} or paths of preset TOML "
              "files.")  # fmt: skip
@click.option("--frames", type=click.IntRange(2, MAX_FRAMES), default=7, show_default=True,
              help="Frames per clip.")  # fmt: skip
@click.option("--stride", type=click.IntRange(min=1),
              help="Frames between clip starts in long sources [default: --frames].")  # fmt: skip
@click.option("--size", callback=_parse_size,
              help="HEIGHTxWIDTH of the clips, e.g. 256x448 [default: the source's].")  # fmt: skip
@click.option("--resize", type=click.Choice(["crop", "scale"]), default="crop", show_default=True,
              help="crop: cover the size and cut the centre; scale: plain resize.")  # fmt: skip
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Seed of the split and of every rain draw.")  # fmt: skip
@click.option("--count", type=click.IntRange(min=0),
              help="builtin only: number of synthetic camera-motion clips [default: 48].")  # fmt: skip
@click.option("-o", "--out", type=click.Path(file_okay=False),
              help="Dataset folder to create or resume [default: out/<source>].")  # fmt: skip
@click.option("--workers", "-j", type=click.IntRange(min=1),
              help="Local worker processes [default: all cores].")  # fmt: skip
@click.option("--scheduler", metavar="ADDRESS",
              help="Run on the Dask cluster at ADDRESS (tcp://host:8786) instead.")  # fmt: skip
@click.option("--test-groups", callback=_parse_names,
              help="Comma-separated groups (frame folders, video files) that form the test side, "
              "all others the train side; the split then counts within each side "
              "[default: every clip of each].")  # fmt: skip
@click.option("--on-error", type=click.Choice(ON_ERROR), default="fail", show_default=True,
              help="Unreadable source frames: fail (exit naming the file) or skip the sequence "
              "and record it in the manifest.")  # fmt: skip
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or status lines.")
def build_command(
    out: str | None, workers: int | None, scheduler: str | None, quiet: bool, **options
) -> None:
    """Build a paired rain/clean video dataset.

    Each clip becomes OUT/<split>/<preset>/<clip>/ with rain/ and clean/ PNG frames, the rain
    layers (layers.npz), the sampled parameters (params.json), the exact optical flow where the
    source knows it (flow.npz) and its source reference (clip.json). OUT/manifest.json records
    the command, seed and every clip; OUT/README.md is the dataset card and OUT/index.html a
    page to look at the clips, their layers and parameters in a web browser, opened from disk.
    """
    source = options["source"]
    if source != "builtin" and options["root"] is None:
        env, default = os.environ.get(ROOT_ENV), DEFAULT_ROOTS.get(source)
        options["root"] = env or default
        if not os.path.exists(options["root"] or ""):
            tried = [
                "--root (not given)",
                f"${ROOT_ENV}={env} (not found)" if env else f"${ROOT_ENV} (not set)",
            ]
            tried += [f"./{default} (not found)"] if default and not env else []
            raise SourceError(
                f"the {source} source needs a root (its folder); tried {', '.join(tried)}: "
                "pass --root PATH"
            )
    echo = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    try:
        build(
            BuildOptions(**options),
            out or os.path.join("out", source),
            workers=workers or cores(),
            scheduler=scheduler,
            progress=not quiet,
            echo=echo,
        )
    except OSError as error:
        raise click.ClickException(
            f"{error}. The unfinished clip was removed and finished clips are kept: free "
            "the space (or fix the problem) and run the same command again to resume."
        ) from None


@click.command("card", cls=Command)
@click.argument("out", type=click.Path(exists=True, file_okay=False))
@click.option("-q", "--quiet", is_flag=True, help="No status lines.")
def card_command(out: str, quiet: bool) -> None:
    """Write the dataset card and the dataset browser of the built dataset OUT again.

    \b
    Rewrites, from OUT/manifest.json:
      README.md, preview.png, parameters.png   the dataset card
      index.html                               the dataset browser (open it from disk)

    It makes the browser previews (OUT/browser/) of the clips that have none, e.g. in a dataset
    built by an earlier version; previews already there are kept. Clips and manifest stay as
    they are.

    \b
    Example:
      rainsynth card out/data && xdg-open out/data/index.html
    """
    folder = Path(out)
    if not (folder / MANIFEST).is_file():
        raise RainsynthError(
            f"{folder} has no {MANIFEST}: it is not a finished rainsynth dataset (run the "
            "command that built it again to finish it)"
        )
    with locked(folder):
        manifest = dataset.read_json(folder / MANIFEST)
        if not isinstance(manifest.get("clips"), list):
            raise RainsynthError(f"{folder / MANIFEST} has no list of clips: not a manifest")
        # presets in the order their first clips come, then any without clips, and the counts
        # in the build's order (manifest.json sorts its keys): the build's bytes of the card
        order = list(dict.fromkeys(item["preset"] for item in manifest["clips"]))
        order += [name for name in manifest["presets"] if name not in order]
        manifest["presets"] = {name: manifest["presets"][name] for name in order}
        manifest["counts"] = counts(manifest["clips"])
        missing = len(browser.missing_previews(folder, manifest["clips"]))
        if missing and not quiet:
            click.echo(f"making the browser previews of {missing} clips", err=True)
        card.write_card(folder, manifest)
    if not quiet:
        click.echo(f"wrote {folder / card.CARD} and {folder / browser.PAGE}", err=True)
