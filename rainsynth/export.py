"""``rainsynth export``: a built dataset in another toolkit's folder layout.

``basicsr``, the paired video layout of BasicSR and mmagic (REDS style):

    OUT/GT/<clip>/00000000.png ...     clean frames B, numbered from 0
    OUT/LQ/<clip>/00000000.png ...     rainy frames O~
    OUT/meta_info.txt                  one line per clip: "<clip> <frames> (<H>,<W>,<C>)"

``<clip>`` is ``<split>_<preset>_<name>``. The PNGs are hard links to the dataset's frames where
the file system allows, copies otherwise. The folder is written under a temporary name next to
OUT and renamed when complete, so OUT is never half-written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import click

from rainsynth.cli import Command
from rainsynth.dataset import DatasetClip, read_dataset
from rainsynth.errors import RainsynthError
from rainsynth.fileio import TEMP_PREFIX, atomic_folder

FORMATS = ("basicsr",)
META_INFO = "meta_info.txt"


def export_basicsr(
    root: str | os.PathLike,
    out: str | os.PathLike,
    *,
    split: str | None = None,
    preset: str | None = None,
) -> list[str]:
    """Write the clips of the dataset at `root` to `out` in the BasicSR layout.

    Args:
        root: a dataset built by ``rainsynth build``.
        out: the folder to create; an existing one must be empty.
        split, preset: export only this split / preset (None: all).

    Returns:
        The lines of meta_info.txt.

    Raises RainsynthError when `out` holds files or `root` holds no such clips.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise RainsynthError(f"{out} exists and is not an empty folder; export into a new one")
    clips = read_dataset(root, split=split, preset=preset)
    for stale in out.parent.glob(f"{TEMP_PREFIX}{out.name}-*"):
        shutil.rmtree(stale)
    with atomic_folder(out) as temp:
        lines = [_export_clip(clip, temp) for clip in clips]
        (temp / META_INFO).write_text("\n".join(lines) + "\n", encoding="utf-8")
        if out.exists():
            out.rmdir()
    return lines


def _export_clip(clip: DatasetClip, out: Path) -> str:
    """Link (or copy) one clip's frames into out/GT and out/LQ; returns its meta_info line."""
    name = f"{clip.split}_{clip.preset}_{clip.name}"
    for kind, folder in (("clean", "GT"), ("rain", "LQ")):
        target = out / folder / name
        target.mkdir(parents=True)
        for t in range(clip.num_frames):
            _link_or_copy(clip.path / kind / f"{t + 1:04d}.png", target / f"{t:08d}.png")
    return f"{name} {clip.num_frames} ({clip.height},{clip.width},3)"


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


EXAMPLES = """\b
Examples:
  rainsynth export out/data -o out/basicsr
  rainsynth export out/data --split train --preset heavy -o out/heavy_train

\b
In a BasicSR options file:
  dataroot_gt: out/basicsr/GT
  dataroot_lq: out/basicsr/LQ
  meta_info_file: out/basicsr/meta_info.txt
"""


@click.command("export", cls=Command, epilog=EXAMPLES)
@click.argument("dataset", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--format", "format_", type=click.Choice(FORMATS), default="basicsr", show_default=True,
    help="Target layout: BasicSR / mmagic paired video folders (GT, LQ, meta_info.txt).",
)  # fmt: skip
@click.option("-o", "--out", required=True, type=click.Path(), help="New (or empty) folder.")
@click.option("--split", default=None, help="Export only this split (train, test).")
@click.option("--preset", default=None, help="Export only this preset (light, heavy, ...).")
@click.option("--quiet", "-q", is_flag=True, help="No status line.")
def export_command(
    dataset: str, format_: str, out: str, split: str | None, preset: str | None, quiet: bool
):
    """Export a built dataset to another toolkit's layout (hard links where possible)."""
    lines = export_basicsr(dataset, out, split=split, preset=preset)
    if not quiet:
        click.echo(f"exported {len(lines)} clips to {out} ({format_}: GT/, LQ/, {META_INFO})")
