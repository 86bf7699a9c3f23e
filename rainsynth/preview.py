"""``rainsynth preview``: render rain over one clip and show every layer.

Writes a contact sheet (a row per frame: clean | rain | S | U | beta | alpha), a side-by-side MP4
(clean | rain) and the clip's params.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import imageio_ffmpeg
import numpy as np

import rainsynth
from rainsynth.cli import Command
from rainsynth.composite import RainClip
from rainsynth.errors import RainsynthError
from rainsynth.fileio import atomic_file, draw_label, parse_size, write_png
from rainsynth.outputs import check_output
from rainsynth.sources import open_source
from rainsynth.sources.base import MAX_FRAMES, MAX_SIDE

PANELS = ("clean", "rain", "S", "U", "beta", "alpha")
LABEL_SCALE = 0.5
"""Font scale of the contact sheet's labels."""


def contact_sheet(clean: np.ndarray, clip: RainClip, frames: int | None = None) -> np.ndarray:
    """A labelled grid, a row per frame: clean | rain | S | U | beta | alpha. (rows*H, 6*W, 3) uint8."""
    count = len(clean) if frames is None else min(frames, len(clean))
    scale = 1.0 / 255.0 if clean.dtype == np.uint8 else 1.0
    rows = []
    for t in range(count):
        panels = [clean[t] * scale, clip.rain[t]]
        panels += [np.broadcast_to(clip.layers[name][t], clean.shape[1:]) for name in PANELS[2:]]
        rows.append(np.concatenate(panels, axis=1))
    sheet = (np.clip(np.concatenate(rows, axis=0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    width = clean.shape[2]
    for i, name in enumerate(PANELS):
        draw_label(sheet, name, (i * width + 6, 18), LABEL_SCALE)
    for t in range(count):
        draw_label(sheet, f"t={t}", (6, t * clean.shape[1] + clean.shape[1] - 8), LABEL_SCALE)
    return sheet


def write_mp4(path: Path, frames: np.ndarray, fps: float = 8.0) -> None:
    """Write (T, H, W, 3) uint8 RGB frames as H.264 MP4 (even sizes; yuv420p plays everywhere),
    atomically."""
    height, width = frames.shape[1] // 2 * 2, frames.shape[2] // 2 * 2
    with atomic_file(path) as temp:
        writer = imageio_ffmpeg.write_frames(
            str(temp), (width, height), fps=fps, quality=8, macro_block_size=1
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame[:height, :width]))
        writer.close()


def preview_clip(
    source: str | None, *, frames: int, size: tuple[int, int], seed: int, index: int
) -> np.ndarray:
    """The clean clip to preview: (T, H, W, 3) uint8 from a video, a frame folder or the built-in source."""
    if source is None:
        opened = open_source("builtin", frames=frames, size=size, seed=seed, count=index + 1)
    else:
        kind = "frames" if Path(source).is_dir() else "videos"
        opened = open_source(kind, root=source, frames=frames, size=size)
    refs = opened.sequences()
    if index >= len(refs):
        raise RainsynthError(
            f"--clip {index} asked for, but {source or 'builtin'} has {len(refs)} clips"
        )
    return opened.read(refs[index]).frames


def _parse_size(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, int]:
    try:
        return parse_size(value)
    except ValueError:
        raise click.BadParameter(f"{value!r}: expected HxW, e.g. 256x448") from None


@click.command("preview", cls=Command)
@click.option("--preset", default="heavy", show_default=True,
              help="light, heavy, streaks, or the path of your own TOML preset.")  # fmt: skip
@click.option("--seed", default=0, show_default=True, type=click.IntRange(0), help="Random seed.")
@click.option("--input", "source", type=click.Path(exists=True, dir_okay=True), default=None,
              help="A video file or a folder of frames. Default: a built-in clip (camera motion "
                   "over a photo that ships inside scikit-image; nothing is downloaded).")  # fmt: skip
@click.option("--clip", "index", default=0, show_default=True, type=click.IntRange(0),
              help="Which clip (window) of the input to use.")  # fmt: skip
@click.option("--frames", default=7, show_default=True, type=click.IntRange(2, MAX_FRAMES),
              help="Frames T.")  # fmt: skip
@click.option("--size", default="256x448", show_default=True, callback=_parse_size,
              help="Frame size HxW (the input is scaled and centre-cropped to it), each side "
                   f"8 to {MAX_SIDE} px.")  # fmt: skip
@click.option("--depth", type=click.FloatRange(0.0, 1.0), default=None,
              help="Constant relative depth in [0, 1] (1 = far) instead of the default "
                   "horizon prior.")  # fmt: skip
@click.option("-o", "--out", default="out/preview", show_default=True, type=click.Path(),
              help="Output folder.")  # fmt: skip
@click.option("-q", "--quiet", is_flag=True, help="No status line.")
def preview_command(preset, seed, source, index, frames, size, depth, out, quiet):
    """Render rain over one clip and write what it looks like.

    \b
    Writes into OUT:
      contact_sheet.png   a row per frame: clean | rain | S | U | beta | alpha
      side_by_side.mp4    clean | rain, 8 frames/s
      params.json         the sampled parameters (rainsynth.RainParams.from_dict reads it)

    \b
    Examples:
      rainsynth preview --preset heavy --seed 0 -o out/preview
      rainsynth preview --preset light --input street.mp4 --frames 30 -o out/street
      rainsynth preview --preset my_storm.toml --input frames/ --size 512x896
    """
    folder = check_output(out, *([source] if source else []), what="--out")
    clean = preview_clip(source, frames=frames, size=size, seed=seed, index=index)
    params = rainsynth.sample_params(preset, seed=seed, shape=clean.shape[:3])
    clip = rainsynth.render(clean, params, depth=depth)
    folder.mkdir(parents=True, exist_ok=True)
    write_png(folder / "contact_sheet.png", contact_sheet(clean, clip))
    rain = (clip.rain * 255.0 + 0.5).astype(np.uint8)
    write_mp4(folder / "side_by_side.mp4", np.concatenate([clean, rain], axis=2))
    (folder / "params.json").write_text(json.dumps(params.to_dict(), indent=2) + "\n")
    if not quiet:
        click.echo(f"wrote {folder / 'contact_sheet.png'}, {folder / 'side_by_side.mp4'}, "
                   f"{folder / 'params.json'}")  # fmt: skip
