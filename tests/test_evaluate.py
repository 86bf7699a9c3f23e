"""derain.evaluate: `rainsynth test` reports exactly what the metric functions give."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from derain import evaluate
from derain.evaluate import median5, quantise
from derain.inference import FrameDerainer
from derain.metrics import psnr_y, ssim_y, temporal_consistency
from rainsynth.dataset import read_dataset


def _expected(clips, outputs):
    rows = []
    for clip, output in zip(clips, outputs, strict=True):
        clean = clip.clean()
        rows.append(
            {
                "psnr": np.mean([psnr_y(o, c) for o, c in zip(output, clean, strict=True)]),
                "ssim": np.mean([ssim_y(o, c) for o, c in zip(output, clean, strict=True)]),
                "tc": temporal_consistency(output, clean, clip.flow()),
            }
        )
    return rows


def _run(args):
    result = CliRunner().invoke(evaluate.test_command, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    return result


def test_rain_and_median5_reports_equal_the_metric_functions(dataset, tmp_path):
    clips = read_dataset(dataset, split="test")
    for method, make in (("rain", lambda c: c.rain()), ("median5", lambda c: median5(c.rain()))):
        report = tmp_path / f"{method}.json"
        _run(["--data", str(dataset), "--method", method, "--report", str(report)])
        data = json.loads(report.read_text())
        expected = _expected(clips, [quantise(make(c)) for c in clips])
        assert [(r["preset"], r["name"]) for r in data["clips"]] == [
            (c.preset, c.name) for c in clips
        ]
        for row, want in zip(data["clips"], expected, strict=True):
            for key in ("psnr", "ssim", "tc"):
                assert row[key] == pytest.approx(want[key], abs=1e-12)
        assert data["mean"]["psnr"] == pytest.approx(np.mean([w["psnr"] for w in expected]))
        heavy = [w["ssim"] for c, w in zip(clips, expected, strict=True) if c.preset == "heavy"]
        assert data["per_preset"]["heavy"]["ssim"] == pytest.approx(np.mean(heavy))
        assert data["mean"]["dry_error"] == "nan"  # haze covers every pixel of these presets


def test_model_report_equals_streamed_outputs_scored_by_hand(
    dataset, tiny_model, tiny_weights, tmp_path
):
    model, weights = tiny_model.eval(), tiny_weights
    report = tmp_path / "model.csv"
    frames = tmp_path / "frames"
    args = ["--data", str(dataset), "--weights", str(weights), "--presets", "light"]
    result = _run([*args, "--report", str(report), "--save-frames", str(frames)])
    assert "PSNR" in result.output
    clips = read_dataset(dataset, split="test", preset="light")
    derainer = FrameDerainer(model, torch.device("cpu"))
    outputs = []
    for clip in clips:  # primed with the second frame, as FrameDerainer.stream does
        derainer.reset()
        derainer(clip.rain()[1])
        outputs.append(quantise(np.stack([derainer(f) for f in clip.rain()])))
    expected = _expected(clips, outputs)
    with open(report, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["name"] for r in rows] == [c.name for c in clips] + ["mean", "mean"]
    for row, want in zip(rows, expected, strict=False):
        for key in ("psnr", "ssim", "tc"):
            assert float(row[key]) == pytest.approx(want[key], abs=1e-9)
    saved = sorted((frames / "test" / "light" / clips[0].name).glob("*.png"))
    assert len(saved) == clips[0].num_frames


def test_median5_takes_the_median_of_five_frames_cut_at_the_ends():
    frames = np.zeros((6, 2, 2, 3), np.float32)
    frames[2] = 1.0  # one bright frame: a streak that does not persist
    out = median5(frames)
    assert out.shape == frames.shape and not out.any()
    ramp = np.arange(6, dtype=np.float32)[:, None, None, None] * np.ones((6, 2, 2, 3), np.float32)
    assert median5(ramp)[0, 0, 0, 0] == 1.0  # median of frames 0, 1, 2
    assert median5(ramp)[3, 0, 0, 0] == 3.0  # median of frames 1..5


def test_missing_weights_and_bad_report_are_clear(dataset, tmp_path):
    runner = CliRunner()
    result = runner.invoke(
        evaluate.test_command,
        ["--data", str(dataset), "--weights", str(tmp_path / "none.safetensors")],
    )
    assert result.exit_code != 0
    assert "does not exist" in str(result.exception) + result.output
    result = runner.invoke(
        evaluate.test_command,
        ["--data", str(dataset), "--method", "rain", "--report", str(tmp_path / "r.txt")],
    )
    assert result.exit_code != 0 and ".json or .csv" in str(result.exception) + result.output
    assert "Examples:" in runner.invoke(evaluate.test_command, ["--help"]).output
