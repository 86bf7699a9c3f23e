"""Deraining speed: seconds per frame, training iterations per second, streaming memory.

    python benchmarks/derain_speed.py                      # CPU (and CUDA when present)
    python benchmarks/derain_speed.py --sizes small --resolutions 448x256 --memory

Inference: the network streamed frame by frame as ``rainsynth derain`` runs it
(VideoDerainer.step with its recurrent state; bf16 autocast on CUDA), median seconds per frame
over ``--frames`` frames after one warm-up frame, with the network derain/configs/<size>.toml
configures and randomly initialised weights (speed does not depend on their values). Each row
prints the ratio to the paper's 0.90 s per 832x512 frame (a 2019 GPU): above 1x beats it. CPU
runs use as many torch threads as cores (--threads to change).

Training: median seconds per iteration of derain.loop.train_step (forward over the clip, the
full loss, backward, AdamW) on a batch shaped as derain/configs/<size>.toml says (batch, frames,
crop), from synthetic tensors so data loading is not timed.

Memory (--memory): peak resident memory of ``rainsynth derain`` on a 448x256 video of N frames
and of 10 N frames, each in a fresh process, counted after imports.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from derain.checkpoint import save_weights  # noqa: E402
from derain.config import TrainConfig  # noqa: E402
from derain.context import CONTEXT_SIZE, row_positions  # noqa: E402
from derain.loop import make_optimizer, train_step  # noqa: E402
from derain.model import build_model  # noqa: E402
from derain.runtime import autocast  # noqa: E402
from derain.train import DerainRecipe  # noqa: E402

PAPER_SECONDS_PER_FRAME = 0.90  # 832x512, the paper's Sec. 5 timing on a 2019 GPU


def _config(size: str) -> TrainConfig:
    """The shipped config of a size, derain/configs/<size>.toml."""
    return TrainConfig.load(REPO / "derain" / "configs" / f"{size}.toml")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def seconds_per_frame(
    size: str, height: int, width: int, device: torch.device, frames: int
) -> float:
    """Median seconds of one recurrent step at (height, width), after one warm-up frame."""
    torch.manual_seed(0)
    model = build_model(_config(size).model).to(device).eval()
    video = torch.rand(frames + 1, 1, 3, height, width, device=device)
    times = []
    with torch.inference_mode():
        state = model.init_state(video[0])
        for t in range(frames + 1):
            _sync(device)
            start = time.perf_counter()
            with autocast(device):
                out, state = model.step(video[t], state)
            out["B"].float().clamp(0, 1).cpu()
            times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def seconds_per_iteration(size: str, device: torch.device, iterations: int) -> tuple[float, str]:
    """Median seconds of one training iteration with the shipped config's batch shape."""
    config = _config(size)
    data = config.data
    n, t, (h, w) = data.batch_size, data.frames, data.crop
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=g).to(device)

    batch = {
        "rain": rand(n, t, 3, h, w),
        "clean": rand(n, t, 3, h, w),
        **{k: rand(n, t, 1, h, w) for k in ("S", "U", "beta", "alpha")},
        **{k: rand(n, t, 3, 1, 1) for k in ("A", "M")},
        "flow": rand(n, t - 1, 2, h, w) * 4 - 2,
    }
    if config.model.frame_context:
        batch["rain_context"] = rand(n, t, 3, CONTEXT_SIZE, CONTEXT_SIZE)
    if config.model.row_position:
        rows = row_positions(0, h, 2 * h).view(1, 1, 1, h, 1).expand(n, t, 1, h, 1)
        batch["rows"] = rows.to(device)
    recipe = DerainRecipe(config)
    torch.manual_seed(0)
    model = recipe.network().to(device).train()
    optimizer, _ = make_optimizer(model, config.optim)
    times = []
    for _ in range(iterations + 1):
        _sync(device)
        start = time.perf_counter()
        train_step(model, batch, recipe, optimizer, device)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), f"batch {n} x {t} frames x {h}x{w}"


_PEAK = textwrap.dedent(
    """
    import sys
    from derain.inference import derain_command

    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # count the peak from here, not the imports
    derain_command.main(sys.argv[1:], standalone_mode=False)
    with open("/proc/self/status") as status:
        print("PEAK_KB", next(int(l.split()[1]) for l in status if l.startswith("VmHWM")))
    """
)


def streaming_memory(frames: int) -> list[tuple[int, float, float]]:
    """(frame count, peak MB, seconds) of `rainsynth derain` on 448x256 videos of N and 10 N."""
    import imageio_ffmpeg

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        torch.manual_seed(0)
        model = build_model(_config("small").model)
        weights = save_weights(folder / "w.safetensors", model.state_dict(), model.config.to_dict())
        rng = np.random.default_rng(0)
        for count in (frames, 10 * frames):
            video = folder / f"in{count}.mp4"
            writer = imageio_ffmpeg.write_frames(str(video), (448, 256), fps=25, macro_block_size=1)
            writer.send(None)
            for _ in range(count):
                writer.send(rng.integers(0, 256, (256, 448, 3), np.uint8).tobytes())
            writer.close()
            args = [str(video), "-o", str(folder / f"out{count}.mp4"), "--weights", str(weights)]
            args += ["--device", "cpu", "--no-progress"]
            env = {**os.environ, "PYTHONPATH": str(REPO)}
            start = time.perf_counter()
            result = subprocess.run(
                [sys.executable, "-c", _PEAK, *args], env=env, capture_output=True, text=True
            )
            if result.returncode:
                raise RuntimeError(result.stdout + result.stderr)
            peak = int(result.stdout.split("PEAK_KB")[-1]) / 1024
            rows.append((count, peak, time.perf_counter() - start))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="small,paper")
    parser.add_argument("--resolutions", default="448x256,832x512", help="WxH list")
    parser.add_argument("--frames", type=int, default=5, help="timed frames per row")
    parser.add_argument("--iterations", type=int, default=3, help="timed training iterations")
    parser.add_argument(
        "--cpu-train-sizes", default="small", help="sizes to time training for on the CPU"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count() or 1,
        help="torch CPU threads (default: cores)",
    )
    parser.add_argument("--memory", action="store_true", help="also measure streaming memory")
    parser.add_argument("--memory-frames", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [s for s in args.sizes.split(",") if s]
    resolutions = [tuple(int(v) for v in r.split("x")) for r in args.resolutions.split(",")]
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(
        f"torch {torch.__version__}, {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}"
    )
    if torch.cuda.is_available():
        print(f"CUDA: {torch.cuda.get_device_name()} (bf16 autocast)")
    print(f"reference: the paper's {PAPER_SECONDS_PER_FRAME} s per 832x512 frame")
    print("\ninference (streamed, recurrent state)")
    print("vs paper = 0.90 s / (s/frame): above 1x is faster than the paper's GPU timing")
    print(
        f"{'device':6s} {'size':6s} {'WxH':>8s} {'s/frame':>9s} {'frames/s':>9s} {'vs paper':>9s}"
    )
    for device in devices:
        for size in sizes:
            for width, height in resolutions:
                seconds = seconds_per_frame(size, height, width, device, args.frames)
                ratio = PAPER_SECONDS_PER_FRAME / seconds
                print(
                    f"{device.type:6s} {size:6s} {width:>4d}x{height:<3d} {seconds:9.4f} "
                    f"{1 / seconds:9.2f} {ratio:8.2f}x",
                    flush=True,
                )
    print("\ntraining (train_step: forward, full loss, backward, AdamW)")
    for device in devices:
        train_sizes = sizes if device.type == "cuda" else args.cpu_train_sizes.split(",")
        for size in [s for s in train_sizes if s in sizes]:
            seconds, shape = seconds_per_iteration(size, device, args.iterations)
            print(
                f"{device.type:6s} {size:6s} {seconds:8.3f} s/it  {1 / seconds:7.3f} it/s  ({shape})",
                flush=True,
            )
    if args.memory:
        print("\nstreaming memory of `rainsynth derain` (small size, CPU, 448x256 video)")
        rows = streaming_memory(args.memory_frames)
        for count, peak, seconds in rows:
            print(f"{count:5d} frames: peak {peak:7.1f} MB after imports  ({seconds:.1f} s)")
        print(f"10x longer video: peak memory x{rows[1][1] / rows[0][1]:.3f}")


if __name__ == "__main__":
    main()
