"""Make the README's deraining pictures with the bundled model.

    python docs/derain_figures.py [--data data]

derain_test.png: heavy and streaks rain over held-out real footage (the test side of
datasets/real_frames.toml: Vid4's foliage, DAVIS's blackswan) and over the built-in source's
held-out photo: rain input | bundled model | ground truth, middle frame.
derain_dry.png: held-out real footage with no rain at all: input | bundled model | their
difference, amplified 8x around grey (a model that leaves clean video alone shows flat grey).
derain_real.png: a real rainy video (NTURain "ra1", in the checkout's sibling folder
shared/data/nturain_real_ra1): input | bundled model, two frames.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from derain.checkpoint import load_model, resolve_weights
from derain.evaluate import derain_clip
from derain.inference import FrameDerainer
from rainsynth.composite import to_uint8
from rainsynth.dataset import read_dataset
from rainsynth.fileio import draw_label, write_png
from rainsynth.preview import LABEL_SCALE

HERE = Path(__file__).resolve().parent
REAL = HERE.parents[1] / "shared" / "data" / "nturain_real_ra1"


def labelled_row(panels: list[np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    row = np.concatenate([to_uint8(p) for p in panels], axis=1)
    for i, name in enumerate(names):
        draw_label(row, name, (i * panels[0].shape[1] + 6, 18), LABEL_SCALE)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="folder holding real/ and builtin/")
    args = parser.parse_args()
    model, _ = load_model(resolve_weights(None))
    derainer = FrameDerainer(model, torch.device("cpu"))

    data = Path(args.data)
    rows = []
    for name, preset, clip in (
        ("real", "heavy", "vid4_foliage@0021"),
        ("real", "streaks", "davis2016_blackswan@0000"),
        ("builtin", "heavy", None),
    ):
        clips = read_dataset(data / name, split="test", preset=preset)
        chosen = next(c for c in clips if clip in (None, c.name))
        rain, clean = chosen.rain(), chosen.clean()
        out = derain_clip(derainer, rain)
        t = len(rain) // 2
        rows.append(labelled_row([rain[t], out[t], clean[t]], (preset, "bundled model", "clean")))
    write_png(HERE / "derain_test.png", np.concatenate(rows, axis=0))

    rows = []
    for clip in ("vid4_foliage@0021", "davis2016_kite-surf@0000"):
        (chosen,) = [c for c in read_dataset(data / "real", split="test", preset="dry")
                     if c.name == clip]  # fmt: skip
        clean = chosen.clean()
        out = derain_clip(derainer, clean)
        t = len(clean) // 2
        difference = np.clip(0.5 + 8 * (out[t] - clean[t]), 0, 1)
        rows.append(labelled_row([clean[t], out[t], difference], ("no rain", "bundled model",
                                                                 "difference x8")))  # fmt: skip
    write_png(HERE / "derain_dry.png", np.concatenate(rows, axis=0))

    frames = sorted(REAL.glob("*.jpg"))[:30]
    rain = np.stack([cv2.imread(str(f))[..., ::-1] for f in frames]).astype(np.float32) / 255
    out = derain_clip(derainer, rain)
    rows = [labelled_row([rain[t], out[t]], ("real rain", "bundled model")) for t in (10, 29)]
    write_png(HERE / "derain_real.png", np.concatenate(rows, axis=0))


if __name__ == "__main__":
    main()
