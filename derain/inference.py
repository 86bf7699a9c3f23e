"""``rainsynth derain``: remove rain from a video file or a folder of frames, streaming one
frame at a time with the network's recurrent state (FrameDerainer), so memory does not grow
with the length of the video."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from pathlib import Path

import click
import imageio_ffmpeg
import numpy as np
import torch
from tqdm import tqdm

from derain.checkpoint import atomic_write, load_model, resolve_weights
from derain.context import frame_context, row_positions
from derain.model import VideoDerainer
from derain.padding import InputPadder
from derain.runtime import WEIGHTS_OPTION, autocast, device_option, pick_device, progress_options
from rainsynth.cli import Command
from rainsynth.composite import to_uint8
from rainsynth.errors import RainsynthError, SourceError
from rainsynth.fileio import VIDEO_EXTENSIONS, atomic_folder, write_png
from rainsynth.outputs import check_output
from rainsynth.sources.base import IMAGE_EXTENSIONS, natural_key, read_image

MAX_TILE = 4096
"""Largest tile side, px (--tile)."""
OVERLAP = 32
"""Default overlap of neighbouring tiles, px."""


def check_tiling(tile: int, overlap: int) -> None:
    """RainsynthError unless tile is 0 (off) or in (2 * overlap, MAX_TILE] and overlap >= 0."""
    if overlap < 0:
        raise RainsynthError(f"--tile-overlap must be >= 0 px, got {overlap}")
    if tile != 0 and not 2 * overlap < tile <= MAX_TILE:
        raise RainsynthError(
            f"--tile must be 0 (off) or larger than 2 * --tile-overlap ({2 * overlap}) and at "
            f"most {MAX_TILE}, got {tile}"
        )


def tile_option(help: str):
    """The --tile option of the commands that run the network (0 = never tile)."""
    return click.option(
        "--tile", type=click.IntRange(0, MAX_TILE), default=1024, show_default=True, help=help
    )


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of ``tile`` px covering ``length`` px with >= ``overlap`` overlap."""
    return [0] if length <= tile else [*range(0, length - tile, tile - overlap), length - tile]


def blend_ramp(length: int, overlap: int) -> np.ndarray:
    """(length,) weights rising linearly over ``overlap`` px at both ends, 1 inside, never 0."""
    i = np.arange(length, dtype=np.float32)
    edge = np.minimum(i + 1, length - i) / np.float32(overlap + 1)
    return np.minimum(edge, 1.0) if overlap > 0 else np.ones(length, np.float32)


class FrameDerainer:
    """Derain a video one frame at a time (VideoDerainer.step), keeping the recurrent state.

    Each frame is padded to a multiple of ``model.size_multiple`` (InputPadder, replicate) and
    cropped back. Frames larger than ``tile`` px on a side (0 = never tile; the default 1024
    keeps the paper's 832x512 frames whole) are cut into tiles overlapping by ``overlap`` px;
    each tile position keeps its own state across frames, and the tiles are blended with
    weights that fall off linearly over the overlap, so no seam shows. Every tile reads the
    whole frame's context and its own rows' positions in the whole frame (derain.context), so
    all tiles of a frame see the same veil. amp: bf16 autocast on CUDA. Call :meth:`reset`
    between videos.
    """

    def __init__(
        self,
        model: VideoDerainer,
        device: torch.device,
        tile: int = 1024,
        overlap: int = OVERLAP,
        amp: bool = True,
    ):
        check_tiling(tile, overlap)
        self.model, self.device, self.amp = model, device, amp
        self.tile, self.overlap = tile, overlap
        self.reset()

    def reset(self) -> None:
        """Forget the recurrent state: the next frame starts a new video."""
        self.states: dict[tuple[int, int], object] = {}
        self.shape: tuple[int, int] | None = None

    @torch.inference_mode()
    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """frame: (H, W, 3) uint8 or float in [0, 1] -> derained (H, W, 3) float32 in [0, 1]."""
        h, w = frame.shape[:2]
        if self.shape not in (None, (h, w)):
            raise SourceError(f"frame size changed from {self.shape} to {(h, w)} within one video")
        self.shape = (h, w)
        image = torch.from_numpy(np.require(frame, requirements=["C", "W"])).to(self.device)
        image = image.permute(2, 0, 1).unsqueeze(0).float()
        if frame.dtype == np.uint8:
            image = image / 255.0
        size = self.tile or max(h, w)
        th, tw = min(size, h), min(size, w)
        ys, xs = tile_starts(h, size, self.overlap), tile_starts(w, size, self.overlap)
        context = frame_context(image)  # the whole frame's, shared by its tiles
        if len(ys) == len(xs) == 1:
            out = self._tile(image, (0, 0), context)
        else:
            ramp_y, ramp_x = (torch.from_numpy(blend_ramp(n, self.overlap)) for n in (th, tw))
            weight = (ramp_y[:, None] * ramp_x[None, :]).to(self.device)
            total = torch.zeros(1, 3, h, w, device=self.device)
            norm = torch.zeros(1, 1, h, w, device=self.device)
            for y in ys:
                for x in xs:
                    crop = image[..., y : y + th, x : x + tw]
                    total[..., y : y + th, x : x + tw] += self._tile(crop, (y, x), context) * weight
                    norm[..., y : y + th, x : x + tw] += weight
            out = total / norm
        return out.clamp(0, 1)[0].permute(1, 2, 0).cpu().numpy()

    def stream(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """Derain one video's frames in order, from a fresh state: each output as __call__'s.

        The recurrence is primed with the second frame before the first (its output dropped), so
        that the first frame, too, follows a frame of the same scene: the state a video's later
        frames see (ModelConfig.streak_bound: the first frame's streaks are bounded as theirs).
        """
        self.reset()
        frames = iter(frames)
        head = list(itertools.islice(frames, 2))
        if len(head) == 2:
            self(head[1])
        for frame in itertools.chain(head, frames):
            yield self(frame)

    def _tile(
        self, image: torch.Tensor, key: tuple[int, int], context: torch.Tensor
    ) -> torch.Tensor:
        """One tile (1,3,h,w) at frame position ``key`` (top, left), with the frame's context
        (1,3,64,64) -> its clean estimate (1,3,h,w) float32, advancing its state."""
        padder = InputPadder(image.shape, multiple=self.model.size_multiple)
        padded = padder.pad(image)
        rows = padded.shape[-2]  # their positions in the whole frame, (1,1,rows,1)
        positions = row_positions(key[0] - padder.pads[2], rows, self.shape[0])
        positions = positions.to(self.device).view(1, 1, rows, 1)
        state = self.states[key] if key in self.states else self.model.init_state(padded)
        with autocast(self.device, self.amp):
            out, self.states[key] = self.model.step(padded, state, context, positions)
        return padder.unpad(out["B"].float())


def list_frames(folder: Path) -> list[Path]:
    """Image files of a folder in natural order (frame2 before frame10); SourceError when there
    are none, or when two share a name but for the extension (their outputs would be one)."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()]
    if not files:
        raise SourceError(f"{folder} holds no image frames ({', '.join(IMAGE_EXTENSIONS)})")
    files.sort(key=lambda p: natural_key(p.name))
    seen: dict[str, Path] = {}
    for path in files:
        other = seen.setdefault(path.stem, path)
        if other is not path:
            raise SourceError(
                f"frames {other.name} and {path.name} of {folder} would both be written as "
                f"{path.stem}.png; rename one of them"
            )
    return files


def read_video(path: Path) -> tuple[dict, Iterator[np.ndarray]]:
    """(metadata with "fps", "size" (W, H) and "nframes", frames (H, W, 3) uint8 one at a time)."""
    reader = imageio_ffmpeg.read_frames(str(path))
    try:
        meta = next(reader)
    except (RuntimeError, OSError, StopIteration) as exc:
        raise SourceError(f"video {path} cannot be decoded: {exc}") from None
    width, height = meta["size"]

    def frames() -> Iterator[np.ndarray]:
        try:
            for raw in reader:
                yield np.frombuffer(raw, np.uint8).reshape(height, width, 3)
        finally:
            reader.close()

    return meta, frames()


def derain_video(
    source: Path, target: Path, derainer: FrameDerainer, progress: bool = True, quality: int = 8
) -> int:
    """Derain a video file into another (same fps; H.264 for .mp4), written atomically;
    returns the frame count."""
    meta, frames = read_video(source)
    size = width, height = meta["size"]
    pixels = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    try:
        total = imageio_ffmpeg.count_frames_and_secs(str(source))[0]
    except (RuntimeError, OSError):
        total = None
    count = 0

    def write(temp: str) -> None:
        nonlocal count
        writer = imageio_ffmpeg.write_frames(
            temp, size, fps=meta["fps"], quality=quality, macro_block_size=1, pix_fmt_out=pixels
        )
        try:
            writer.send(None)
            outputs = derainer.stream(frames)
            for output in tqdm(outputs, total=total, disable=not progress, unit="frame"):
                writer.send(to_uint8(output).tobytes())
                count += 1
        finally:
            writer.close()
        if count == 0:
            raise SourceError(f"video {source} has no frames")

    atomic_write(target, write)
    return count


def _same_size_images(files: list[Path]) -> Iterator[np.ndarray]:
    """The images of ``files`` in order; SourceError naming the first whose size differs."""
    size = None
    for path in files:
        image = read_image(str(path))
        size = size or image.shape[:2]
        if image.shape[:2] != size:
            raise SourceError(
                f"frame {path} is {image.shape[1]}x{image.shape[0]}, but {files[0].name} is "
                f"{size[1]}x{size[0]}: the frames of a folder must have one size"
            )
        yield image


def derain_folder(
    source: Path, target: Path, derainer: FrameDerainer, progress: bool = True
) -> int:
    """Derain a folder of frames, all of one size, into a new folder of PNGs with the same
    names, written atomically; returns the count."""
    files = list_frames(source)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise SourceError(
            f"output folder {target} exists and is not an empty folder; choose a new one"
        )
    with atomic_folder(target) as temp:
        outputs = derainer.stream(_same_size_images(files))
        steps = tqdm(
            zip(files, outputs, strict=True), total=len(files), disable=not progress, unit="frame"
        )
        for path, output in steps:
            write_png(temp / f"{path.stem}.png", to_uint8(output))
        if target.exists():
            target.rmdir()
    return len(files)


_EPILOG = """\b
Examples:
  rainsynth derain rainy.mp4 -o clean.mp4                  # bundled weights
  rainsynth derain frames/ -o clean_frames/ --weights runs/small/model.safetensors
  rainsynth derain 4k.mp4 -o clean.mp4 --device cuda --tile 768   # less GPU memory
"""


@click.command("derain", cls=Command, epilog=_EPILOG)
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--out",
    "--output",
    "output",
    required=True,
    type=click.Path(path_type=Path),
    help="Output video file (for a video INPUT) or new folder of PNGs (for a folder INPUT); "
    "never INPUT itself.",
)
@WEIGHTS_OPTION
@device_option("auto", "")
@tile_option(
    f"Cut frames larger than this (px per side, at most {MAX_TILE}) into overlapping tiles; "
    "0 = never."
)
@click.option(
    "--tile-overlap",
    type=click.IntRange(0, MAX_TILE // 2),
    default=OVERLAP,
    show_default=True,
    help="Overlap of neighbouring tiles, px (less than half of --tile).",
)
@progress_options()
def derain_command(input_path, output, weights, device, tile, tile_overlap, progress, quiet):
    """Remove rain from INPUT, a video file or a folder of frames, into OUTPUT (the same kind).

    Streams frame by frame with the network's recurrent state: memory stays constant whatever
    the video's length. Video output keeps the input's frame rate (no audio).
    """
    check_tiling(tile, tile_overlap)
    check_output(output, input_path, what="OUTPUT")
    folder, video = input_path.is_dir(), output.suffix.lower() in VIDEO_EXTENSIONS
    if folder and video:
        raise click.BadParameter(
            f"INPUT is a folder of frames, so OUTPUT must be a folder, got {output}"
        )
    if not folder and (not video or output.is_dir()):
        raise click.BadParameter(
            f"INPUT is a video, so OUTPUT must be a video file ({', '.join(VIDEO_EXTENSIONS)}), got {output}"
        )
    torch_device = pick_device(device)
    model, _ = load_model(resolve_weights(weights), torch_device)
    derainer = FrameDerainer(model, torch_device, tile, tile_overlap)
    output.parent.mkdir(parents=True, exist_ok=True)
    derain = derain_folder if folder else derain_video
    count = derain(input_path, output, derainer, progress and not quiet)
    if not quiet:
        click.echo(f"wrote {count} frames to {output}")
