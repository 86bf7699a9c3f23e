"""derain.inference: streaming equals the clip forward pass, tiles blend seamlessly, folders and
videos round-trip, memory stays flat on a 10x longer video."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from derain_helpers import write_video
from torch import nn

from derain.context import frame_context
from derain.inference import (
    FrameDerainer,
    blend_ramp,
    derain_command,
    read_video,
    tile_starts,
)
from derain.padding import InputPadder

REPO = Path(__file__).resolve().parents[1]


def _frames(count: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """(count, h, w, 3) uint8: a smooth pattern drifting right with light noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0 : w + count]
    base = (np.sin(x / 5.0)[..., None] * np.cos(y / 7.0)[..., None] * [90, 70, 50] + 128).astype(
        np.float32
    )
    frames = np.stack([base[:, i : i + w] for i in range(count)])
    return np.clip(frames + rng.normal(0, 4, frames.shape), 0, 255).astype(np.uint8)


def test_streaming_equals_the_clip_forward_pass_with_padding(tiny_model):
    model = tiny_model.eval()
    frames = _frames(4, 40, 56)  # not multiples of model.size_multiple: padded and cropped back
    derainer = FrameDerainer(model, torch.device("cpu"), tile=0)
    streamed = np.stack([derainer(f) for f in frames])
    clip = torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255).unsqueeze(0)
    padder = InputPadder(clip.shape, multiple=model.size_multiple)
    with torch.no_grad():
        expected = padder.unpad(model(padder.pad(clip))["B"]).clamp(0, 1)[0].permute(0, 2, 3, 1)
    assert streamed.shape == (4, 40, 56, 3)
    np.testing.assert_allclose(streamed, expected.numpy(), atol=1e-5)
    derainer.reset()
    np.testing.assert_allclose(derainer(frames[0]), streamed[0], atol=1e-6)
    with pytest.raises(ValueError, match="frame size changed"):
        derainer(frames[0][:32])


def test_stream_primes_the_state_with_the_second_frame(tiny_model):
    """FrameDerainer.stream: the second frame steps once first (output dropped), then every
    frame in order from there, so the first frame follows a frame of its own video."""
    frames = _frames(3, 32, 48)
    derainer = FrameDerainer(tiny_model.eval(), torch.device("cpu"), tile=0)
    streamed = list(derainer.stream(frames))
    derainer.reset()
    derainer(frames[1])
    expected = [derainer(f) for f in frames]
    assert len(streamed) == 3
    for got, want in zip(streamed, expected, strict=True):
        np.testing.assert_array_equal(got, want)
    derainer(frames[0])  # a state left over from another video is not carried into the next
    alone = list(derainer.stream(frames[:1]))
    derainer.reset()
    np.testing.assert_array_equal(alone[0], derainer(frames[0]))  # one frame: nothing to prime
    assert list(derainer.stream([])) == []


class _CountingNet(nn.Module):
    """Stand-in network: returns half its input plus 0.01 per frame its state has seen plus 0.1
    times each row's position in the whole frame; keeps the context each step was given."""

    size_multiple = 8

    def __init__(self):
        super().__init__()
        self.contexts = []

    def init_state(self, rain_t):
        return 0

    def step(self, rain_t, state, context, rows):
        self.contexts.append(context)
        return {"B": 0.5 * rain_t + 0.01 * (state + 1) + 0.1 * rows}, state + 1


def test_tiles_cover_blend_exactly_and_keep_their_own_state():
    assert tile_starts(100, 40, 8) == [0, 32, 60] and tile_starts(30, 40, 8) == [0]
    assert blend_ramp(10, 3).min() > 0 and blend_ramp(10, 3)[4] == 1
    frame = np.random.default_rng(0).random((50, 70, 3)).astype(np.float32)
    tiled = FrameDerainer(_CountingNet(), torch.device("cpu"), tile=24, overlap=6)
    whole = FrameDerainer(_CountingNet(), torch.device("cpu"), tile=0)
    for _ in range(3):  # a per-pixel network: tiling must change nothing, frame after frame
        out_tiled, out_whole = tiled(frame), whole(frame)
        np.testing.assert_allclose(out_tiled, out_whole, atol=1e-6)
    rows = np.linspace(0, 1, 50, dtype=np.float32)[:, None, None]  # each tile's rows, in the frame
    np.testing.assert_allclose(out_whole, 0.5 * frame + 0.03 + 0.1 * rows, atol=1e-6)
    assert len(tiled.states) == len(tile_starts(50, 24, 6)) * len(tile_starts(70, 24, 6))
    whole_context = frame_context(torch.from_numpy(frame).permute(2, 0, 1)[None])
    for context in tiled.model.contexts:  # every tile reads the whole frame's context
        torch.testing.assert_close(context, whole_context)


def test_tiled_network_output_is_close_to_untiled(tiny_model):
    model = tiny_model.eval()
    frames = _frames(3, 48, 80)
    whole = FrameDerainer(model, torch.device("cpu"), tile=0)
    tiled = FrameDerainer(model, torch.device("cpu"), tile=48, overlap=16)
    for frame in frames:
        a, b = whole(frame), tiled(frame)
    assert a.shape == b.shape == (48, 80, 3)
    assert np.abs(a - b).mean() < 0.05  # differences only from the network's limited context


def test_derain_folder_and_video_give_the_same_count_and_size(tiny_weights, tmp_path):
    frames = _frames(6, 40, 56)
    folder = tmp_path / "in"
    folder.mkdir()
    for i, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"frame{i + 1}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    runner = CliRunner()
    result = runner.invoke(
        derain_command,
        [
            str(folder),
            "-o",
            str(tmp_path / "out"),
            "--weights",
            str(tiny_weights),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in written] == [f"frame{i}.png" for i in range(1, 7)]
    assert all(cv2.imread(str(p)).shape == (40, 56, 3) for p in written)

    video = write_video(tmp_path / "in.mp4", frames)
    args = [str(video), "-o", str(tmp_path / "out.mp4"), "--weights", str(tiny_weights)]
    result = runner.invoke(derain_command, [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    meta, decoded = read_video(tmp_path / "out.mp4")
    decoded = list(decoded)
    assert len(decoded) == len(written) == 6
    assert decoded[0].shape == (40, 56, 3) and meta["fps"] == pytest.approx(12.0)
    assert not list(tmp_path.glob(".*"))  # no temporary files or folders left


def test_derain_command_rejects_mismatched_outputs(tiny_weights, tmp_path):
    runner = CliRunner()
    video = write_video(tmp_path / "in.mp4", _frames(2, 32, 32))
    result = runner.invoke(
        derain_command, [str(video), "-o", str(tmp_path / "x"), "--weights", str(tiny_weights)]
    )
    assert result.exit_code == 2 and "must be a video file" in result.output
    result = runner.invoke(derain_command, [str(tmp_path), "-o", str(tmp_path / "x.mp4")])
    assert result.exit_code == 2 and "must be a folder" in result.output
    result = runner.invoke(
        derain_command, [str(video), "-o", str(tmp_path / "o.mp4"), "--tile", "40"]
    )
    assert result.exit_code == 2 and "--tile" in result.output
    help_text = runner.invoke(derain_command, ["--help"]).output
    assert "Examples:" in help_text and "--tile" in help_text


_PEAK_RSS = textwrap.dedent(
    """
    import sys
    from derain.inference import derain_command

    def peak_kb():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM"))

    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # reset the peak: count from here, not the imports
    derain_command.main(sys.argv[1:], standalone_mode=False)
    print("PEAK_RSS_KB", peak_kb())
    """
)


def _peak_rss_mb(video: Path, out: Path, weights: Path) -> float:
    """Peak resident memory of `rainsynth derain` (after imports) in a fresh process, MB."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    args = [
        str(video),
        "-o",
        str(out),
        "--weights",
        str(weights),
        "--device",
        "cpu",
        "--no-progress",
    ]
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return int(result.stdout.split("PEAK_RSS_KB")[-1]) / 1024


@pytest.mark.skipif(
    not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux /proc peak-RSS reset"
)
def test_streaming_memory_does_not_grow_with_video_length(tiny_weights, tmp_path):
    """A 10x longer video needs no more memory: the whole output held in memory would add
    120 frames x 192x256x3 float32 = 71 MB, the frames decoded at once 18 MB."""
    short = write_video(tmp_path / "short.mp4", _frames(12, 192, 256))
    long = write_video(tmp_path / "long.mp4", _frames(120, 192, 256))
    peak_short = _peak_rss_mb(short, tmp_path / "s.mp4", tiny_weights)
    peak_long = _peak_rss_mb(long, tmp_path / "l.mp4", tiny_weights)
    assert peak_long - peak_short < 12, (peak_short, peak_long)
