"""``rainsynth test``: score deraining on a built dataset or a plain paired folder made elsewhere
(rainsynth.paired: rain and clean frames side by side): Y PSNR/SSIM, temporal consistency.

Methods: "model" (the network, streamed frame by frame as ``rainsynth derain`` runs it),
"rain" (the rain input itself: the floor any method must beat) and "median5" (:func:`median5`).
Outputs are rounded to 8 bits before scoring, as saved frames are.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import click
import numpy as np
from tqdm import tqdm

from derain.checkpoint import atomic_write, load_model, resolve_weights
from derain.inference import MAX_TILE, OVERLAP, FrameDerainer, check_tiling, tile_option
from derain.metrics import psnr_y, rain_free_change, rain_free_mask, ssim_y, temporal_consistency
from derain.runtime import WEIGHTS_OPTION, device_option, pick_device, progress_options
from rainsynth.cli import Command
from rainsynth.composite import to_uint8
from rainsynth.errors import RainsynthError
from rainsynth.fileio import write_png
from rainsynth.outputs import check_output
from rainsynth.paired import read_clips

METHODS = ("model", "rain", "median5")
METRICS = ("psnr", "ssim", "tc", "dry_error", "dry_detail")


def median5(rain: np.ndarray) -> np.ndarray:
    """Temporal median of frames t-2..t+2 (cut at the ends): (T,H,W,3) -> (T,H,W,3)."""
    t = len(rain)
    return np.stack([np.median(rain[max(i - 2, 0) : min(i + 3, t)], axis=0) for i in range(t)])


def quantise(frames: np.ndarray) -> np.ndarray:
    """Round to the 8-bit values a saved frame would hold, back in [0, 1] float32."""
    return to_uint8(frames).astype(np.float32) / np.float32(255)


def _means(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Mean of each metric over the clips that have it (nan where none has), and the median
    PSNR ("psnr_median")."""
    means: dict[str, float] = {"clips": len(rows)}
    for key in (k for k in METRICS if k in rows[0]):
        values = [r[key] for r in rows if not math.isnan(r[key])]
        means[key] = float(np.mean(values)) if values else float("nan")
    means["psnr_median"] = float(np.median([r["psnr"] for r in rows]))
    return means


def score_dataset(
    data: str | Path,
    *,
    split: str = "test",
    presets: tuple[str, ...] = (),
    method: str = "model",
    derainer: FrameDerainer | None = None,
    save_frames: str | Path | None = None,
    max_clips: int | None = None,
    consistency: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``method`` on the clips of a built dataset or a paired folder (``split`` is for
    built datasets): a report of every clip, the means over clips per preset (a paired folder's
    pairs stand for presets) and over all clips, with the median PSNR beside each mean.

    Per clip: PSNR and SSIM, means over its frames (derain.metrics.psnr_y / ssim_y); with
    ``consistency``, temporal consistency "tc" (derain.metrics.temporal_consistency with the
    dataset's exact flow when stored, else flow estimated on the ground truth); "dry_error"
    and "dry_detail" (derain.metrics.rain_free_change), how much the method changed the pixels
    without rain, where it should change nothing (nan for clips that have none, e.g. under
    haze; absent for paired folders, whose rain layers are unknown).

    derainer: the network for method "model". presets: keep these (empty = all).
    save_frames: write the output frames as PNG under DIR/<split>/<preset>/<clip>/.
    max_clips: score only N clips, evenly spaced over the dataset's (preset, name) order.
    """
    clips = [c for c in read_clips(data, split=split) if not presets or c.preset in presets]
    if not clips:
        raise RainsynthError(f"{data} has no {split} clips of presets {list(presets)}")
    if max_clips and max_clips < len(clips):  # spread over presets and clips, deterministically
        clips = [clips[i] for i in np.linspace(0, len(clips) - 1, max_clips).round().astype(int)]
    if method == "model" and derainer is None:
        raise RainsynthError("method 'model' needs a model")
    rows = []
    for clip in tqdm(clips, disable=not progress, unit="clip"):
        rain, clean = clip.rain(), clip.clean()
        if rain.shape != clean.shape:
            raise RainsynthError(
                f"clip {clip.name}: rain frames {rain.shape[1:3]} and clean frames "
                f"{clean.shape[1:3]} differ in size"
            )
        if method == "rain":
            output = rain
        elif method == "median5":
            output = median5(rain)
        else:
            output = np.stack(list(derainer.stream(rain)))
        output = quantise(output)
        if save_frames is not None:
            folder = Path(save_frames) / clip.split / clip.preset / clip.name
            folder.mkdir(parents=True, exist_ok=True)
            for t, frame in enumerate(to_uint8(output), 1):
                write_png(folder / f"{t:04d}.png", frame)
        pairs = list(zip(output, clean, strict=True))
        scores = {
            "psnr": float(np.mean([psnr_y(o, c) for o, c in pairs])),
            "ssim": float(np.mean([ssim_y(o, c) for o, c in pairs])),
        }
        if consistency:
            scores["tc"] = temporal_consistency(output, clean, clip.flow())
        layers = clip.layers()
        if layers is not None:
            dry = rain_free_mask(layers)
            scores["dry_error"], scores["dry_detail"] = rain_free_change(output, clean, dry)
        rows.append({"preset": clip.preset, "name": clip.name, "frames": clip.num_frames, **scores})
    per_preset = {
        p: _means([r for r in rows if r["preset"] == p])
        for p in sorted({r["preset"] for r in rows})
    }
    return {
        "data": str(data),
        "split": split,
        "method": method,
        "clips": rows,
        "per_preset": per_preset,
        "mean": _means(rows),
    }


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report as JSON (.json) or CSV (.csv: one row per clip, then the means)."""
    path = check_report_path(path)
    if path.suffix.lower() == ".json":
        text = json.dumps(_finite(report), indent=2) + "\n"
        return atomic_write(path, lambda temp: Path(temp).write_text(text, encoding="utf-8"))
    fields = ["preset", "name", "frames", *(k for k in METRICS if k in report["mean"])]
    rows = [{k: r[k] for k in fields} for r in report["clips"]]
    for preset, means in [*report["per_preset"].items(), ("all", report["mean"])]:
        picked = {k: means[k] for k in fields if k in METRICS}
        rows.append({"preset": preset, "name": "mean", "frames": "", **picked})

    def write(temp: str) -> None:
        with open(temp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fields)
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write)


def check_report_path(path: str | Path) -> Path:
    """``path`` as a Path; RainsynthError unless it ends in .json or .csv."""
    path = Path(path)
    if path.suffix.lower() not in (".json", ".csv"):
        raise RainsynthError(f"report {path} must end in .json or .csv")
    return path


def _finite(value: Any) -> Any:
    """JSON has no inf: an identical frame's PSNR is written as the string "inf"."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


_EPILOG = """\b
Examples:
  rainsynth test --data data/rain                               # bundled weights, test split
  rainsynth test --data data/rain --weights runs/small/model.safetensors --report scores.json
  rainsynth test --data data/rain --method rain --presets heavy # the rain input's scores
  rainsynth test --data data/rain --method median5 --report median5.csv
  rainsynth test --data NTURain/test                            # X_Rain/ + X_GT/ folders
  rainsynth test --data REDS_rain                               # BasicSR's LQ/ + GT/
"""


@click.command("test", cls=Command, epilog=_EPILOG)
@click.option(
    "--data",
    required=True,
    type=click.Path(exists=True, file_okay=False),
    help="A dataset folder written by `rainsynth build`, or a paired folder: X_Rain/ + X_GT/, "
    "LQ/<clip>/ + GT/<clip>/ (BasicSR), <clip>/rain/ + <clip>/clean/.",
)
@WEIGHTS_OPTION
@click.option("--split", default="test", show_default=True,
              help="Which split of a built dataset to score.")  # fmt: skip
@click.option("--presets", default="", help="Comma-separated presets to score (default: all).")
@click.option(
    "--method",
    type=click.Choice(METHODS),
    default="model",
    show_default=True,
    help="model: the network; rain: the rain input; median5: 5-frame temporal median.",
)
@device_option("auto", "")
@tile_option(f"Tile frames larger than this (px per side, at most {MAX_TILE}); 0 = never.")
@click.option(
    "--save-frames",
    type=click.Path(file_okay=False),
    help="Write the output frames as PNG under this folder.",
)
@click.option(
    "-o",
    "--out",
    "--report",
    "report",
    type=click.Path(dir_okay=False),
    help="Write the scores to this .json or .csv file.",
)
@click.option(
    "--max-clips",
    type=click.IntRange(min=1),
    help="Score only N clips, spread evenly over the presets.",
)
@progress_options("No progress bar or score lines.")
def test_command(
    data,
    weights,
    split,
    presets,
    method,
    device,
    tile,
    save_frames,
    report,
    max_clips,
    progress,
    quiet,
):
    """Score deraining on a built dataset or a paired folder made elsewhere (rain and clean
    frames side by side, no layers): Y PSNR/SSIM (as MATLAB/BasicSR) and temporal
    consistency (lower is better), per clip and mean, per preset and overall. Where a clip has
    pixels without rain (the streaks preset), also how much the method changed them (mean |dY|
    in 8-bit levels) and the share of their fine detail it kept (1 = all)."""
    check_tiling(tile, OVERLAP)
    for path in (p for p in (report, save_frames) if p is not None):
        check_output(path, data)
    if report:
        check_report_path(report)
    torch_device = pick_device(device)
    derainer = None
    if method == "model":
        path = resolve_weights(weights)
        derainer = FrameDerainer(load_model(path, torch_device)[0], torch_device, tile)
    result = score_dataset(
        data,
        split=split,
        presets=tuple(p for p in presets.split(",") if p),
        method=method,
        derainer=derainer,
        save_frames=save_frames,
        max_clips=max_clips,
        progress=progress and not quiet,
    )
    if derainer is not None:
        result["weights"] = str(path)
    echo = (lambda line: None) if quiet else click.echo
    for preset, means in [*result["per_preset"].items(), ("all", result["mean"])]:
        echo(
            f"{method:8s} {preset:8s} {means['clips']:4d} clips  PSNR {means['psnr']:6.2f} dB "
            f"(median {means['psnr_median']:6.2f})  "
            f"SSIM {means['ssim']:.4f}  TC {means['tc']:.3f}"
            + (
                f"  rain-free: change {means['dry_error']:.2f} levels, detail {means['dry_detail']:.3f}"
                if not math.isnan(means.get("dry_error", math.nan))
                else ""
            )
        )
    if report:
        echo(f"wrote {write_report(result, report)}")
