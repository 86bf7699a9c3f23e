"""What priming the recurrence with a video's second frame does (FrameDerainer.stream).

    python docs/priming.py --data data/real --weights derain/weights/model.safetensors

Over every ``--every``-th test clip of each preset, the model runs frame by frame from a fresh
state (unprimed) and through FrameDerainer.stream (primed: the second frame is stepped once,
its output dropped, before the first). Prints the median over clips of the mean Y PSNR (dB,
all frames, outputs not quantised) both ways, and the median PSNR of each frame unprimed.
"""

from __future__ import annotations

import numpy as np
from dry_layers import study_inputs, study_parser

from derain.inference import FrameDerainer
from derain.metrics import psnr_y


def frame_scores(derainer: FrameDerainer, clip) -> tuple[list[float], list[float]]:
    """Y PSNR of each frame of one clip, unprimed and primed."""
    rain = clip.stored_frames("rain", slice(0, clip.num_frames))
    clean = clip.stored_frames("clean", slice(0, clip.num_frames))
    derainer.reset()
    unprimed = [derainer(frame) for frame in rain]
    primed = list(derainer.stream(rain))
    return (
        [psnr_y(o, c) for o, c in zip(unprimed, clean, strict=True)],
        [psnr_y(o, c) for o, c in zip(primed, clean, strict=True)],
    )


def main() -> None:
    args = study_parser(__doc__.splitlines()[0]).parse_args()
    derainer, clips = study_inputs(args)
    for preset in args.presets.split(","):
        chosen = [c for c in clips if c.preset == preset][:: args.every]
        scores = [frame_scores(derainer, clip) for clip in chosen]
        unprimed = np.median([np.mean(u) for u, _ in scores])
        primed = np.median([np.mean(p) for _, p in scores])
        per_frame = np.round(np.median([u for u, _ in scores], axis=0), 2).tolist()
        print(
            f"{preset:8s} unprimed {unprimed:6.2f}  primed {primed:6.2f} dB  per frame {per_frame}"
        )


if __name__ == "__main__":
    main()
