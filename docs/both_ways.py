"""What deraining a video both ways does: forward, backward, and their per-pixel max and mean.

    python docs/both_ways.py --data data/real --weights derain/weights/model.safetensors

Over every ``--every``-th test clip of each preset, the model derains the clip forward
(FrameDerainer.stream) and backward (the same on the frames reversed, outputs put back in
order). With additive rain (model.additive_rain) each output is the input less the rain the
model found, and each pass bounds its streaks by a different neighbour (the previous frame
forward, the next one backward), so the per-pixel max of the two outputs keeps only the rain
that both neighbours vouch for: a bound against both. Prints the median over clips of the mean
Y PSNR (dB, all frames, outputs not quantised) of forward, backward, max, mean and min; on
``dry`` clips against the input.
"""

from __future__ import annotations

import numpy as np
from dry_layers import study_inputs, study_parser

from derain.inference import FrameDerainer
from derain.metrics import psnr_y


def outputs(derainer: FrameDerainer, rain: np.ndarray) -> dict[str, np.ndarray]:
    """rain (T, H, W, 3) uint8 -> each combination's output (T, H, W, 3) float32 in [0, 1]."""
    forward = np.stack(list(derainer.stream(rain)))
    backward = np.stack(list(derainer.stream(rain[::-1])))[::-1]
    return {
        "forward": forward,
        "backward": backward,
        "max": np.maximum(forward, backward),
        "mean": (forward + backward) / 2,
        "min": np.minimum(forward, backward),
    }


def main() -> None:
    args = study_parser(__doc__.splitlines()[0]).parse_args()
    derainer, clips = study_inputs(args)
    for preset in args.presets.split(","):
        scores: dict[str, list[float]] = {}
        for clip in [c for c in clips if c.preset == preset][:: args.every]:
            rain = clip.stored_frames("rain", slice(0, clip.num_frames))
            target = (
                rain if preset == "dry" else clip.stored_frames("clean", slice(0, clip.num_frames))
            )
            for name, out in outputs(derainer, rain).items():
                psnr = np.mean([psnr_y(o, c) for o, c in zip(out, target, strict=True)])
                scores.setdefault(name, []).append(psnr)
        row = "  ".join(f"{name} {np.median(s):6.2f}" for name, s in scores.items())
        print(f"{preset:8s} {row} dB")


if __name__ == "__main__":
    main()
