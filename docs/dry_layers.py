"""Which layer variable changes rain-free footage, and what a dead zone or a bound on S would do.

    python docs/dry_layers.py --data data/real --weights derain/weights/model.safetensors

Over the test clips of each preset asked for (every ``--every``-th clip, its first 4 frames),
the model runs as trained; Eq. 6 (derain.recovery.recover) is then evaluated again from its
final layers S^M, U^M, beta^M, A^M, R^M with one of them set to its rain-free value (S = 0,
U = 0, beta = 1, R = 0), and with S^M shrunk by a dead zone, S' = max(S - tau, 0); the last rows
run the same weights with ModelConfig.streak_bound (windows 1 and 3 px). Each row is the
median over clips of the mean Y PSNR (dB, frames 2-4) against the clean frames (for the `dry`
preset the clean frames are the input). The last line per preset gives the percentiles of S^M.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from derain.checkpoint import load_model
from derain.inference import FrameDerainer
from derain.metrics import psnr_y
from derain.model import build_model
from derain.recovery import recover
from rainsynth.dataset import read_dataset

NEUTRAL = {"S=0": ("S", 0.0), "U=0": ("U", 0.0), "beta=1": ("beta", 1.0), "R=0": ("R", 0.0)}
TAUS = (0.02, 0.04, 0.08)
BOUND_WINDOWS = (1, 3)


def scores(model, bounded: dict, clip, frames: int = 4) -> tuple[dict[str, float], np.ndarray]:
    """Y PSNR of each variant of Eq. 6 on one clip, and S^M's values."""
    window = slice(0, frames)
    rain8 = clip.stored_frames("rain", window)
    rain = torch.from_numpy(rain8.astype(np.float32) / 255).permute(0, 3, 1, 2)[None]
    clean = clip.stored_frames("clean", window).astype(np.float32) / 255
    with torch.no_grad():
        out = model(rain)
    layers = {k: out[f"{k}_M"][0] for k in ("S", "U", "beta", "A", "R")}

    def psnr(estimate: torch.Tensor) -> float:
        frames_ = estimate.clamp(0, 1).permute(0, 2, 3, 1).numpy()
        return float(np.mean([psnr_y(frames_[t], clean[t]) for t in range(1, frames)]))

    row = {"as trained": psnr(out["B"][0])}
    for name, (key, value) in NEUTRAL.items():
        row[name] = psnr(recover(rain[0], **{**layers, key: torch.full_like(layers[key], value)}))
    for tau in TAUS:
        shrunk = (layers["S"] - tau).clamp(min=0)
        row[f"S dead zone {tau}"] = psnr(recover(rain[0], **{**layers, "S": shrunk}))
    for window, net in bounded.items():
        with torch.no_grad():
            row[f"S bound {window} px"] = psnr(net(rain)["B"][0])
    return row, layers["S"].flatten().numpy()


def study_parser(description: str) -> argparse.ArgumentParser:
    """The options of the docs/ studies of a model on a dataset's test clips."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", default="data/real")
    parser.add_argument("--weights", default="derain/weights/model.safetensors")
    parser.add_argument("--presets", default="dry,streaks,light,heavy")
    parser.add_argument("--every", type=int, default=4)
    return parser


def study_inputs(args: argparse.Namespace) -> tuple[FrameDerainer, list]:
    """A one-thread, untiled FrameDerainer of ``--weights`` and the test clips of ``--data``."""
    torch.set_num_threads(1)
    derainer = FrameDerainer(load_model(args.weights)[0], torch.device("cpu"), tile=0)
    return derainer, read_dataset(args.data, split="test")


def main() -> None:
    args = study_parser(__doc__.splitlines()[0]).parse_args()
    torch.set_num_threads(1)
    model = load_model(args.weights)[0].eval()
    bounded = {w: build_model(model.config, streak_bound=w).eval() for w in BOUND_WINDOWS}
    for net in bounded.values():
        net.load_state_dict(model.state_dict())
    clips = read_dataset(args.data, split="test")
    for preset in args.presets.split(","):
        rows, values = [], []
        for clip in [c for c in clips if c.preset == preset][:: args.every]:
            row, s = scores(model, bounded, clip)
            rows.append(row)
            values.append(s)
        for name in rows[0]:
            print(f"{preset:8s} {name:18s} {np.median([r[name] for r in rows]):6.2f} dB")
        pct = np.percentile(np.concatenate(values), [50, 90, 99, 99.9])
        print(f"{preset:8s} S^M percentiles 50/90/99/99.9: {np.round(pct, 3).tolist()}")


if __name__ == "__main__":
    main()
