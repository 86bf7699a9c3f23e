"""Make the README's deraining pictures with the bundled model.

    python docs/derain_figures.py [--data data]

derain_test.png: held-out heavy test clips (built-in source and the Vimeo-90K sample, see
derain/weights/MODEL_CARD.md): rain input | bundled model | ground truth, middle frame.
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
from derain.inference import FrameDerainer, to_uint8
from rainsynth.dataset import read_dataset
from rainsynth.preview import _label, write_png

HERE = Path(__file__).resolve().parent
REAL = HERE.parents[1] / "shared" / "data" / "nturain_real_ra1"


def labelled_row(panels: list[np.ndarray], names: tuple[str, ...]) -> np.ndarray:
    row = np.concatenate([to_uint8(p) for p in panels], axis=1)
    for i, name in enumerate(names):
        _label(row, name, (i * panels[0].shape[1] + 6, 18))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data", help="folder holding builtin/ and vimeo_sample/")
    args = parser.parse_args()
    model, _ = load_model(resolve_weights(None))
    derainer = FrameDerainer(model, torch.device("cpu"))

    rows = []
    for name in ("builtin", "vimeo_sample"):
        clip = read_dataset(Path(args.data) / name, split="test", preset="heavy")[0]
        rain, clean = clip.rain(), clip.clean()
        out = derain_clip(derainer, rain)
        t = len(rain) // 2
        rows.append(labelled_row([rain[t], out[t], clean[t]], ("rain", "bundled model", "clean")))
    write_png(HERE / "derain_test.png", np.concatenate(rows, axis=0))

    frames = sorted(REAL.glob("*.jpg"))[:30]
    rain = np.stack([cv2.imread(str(f))[..., ::-1] for f in frames]).astype(np.float32) / 255
    out = derain_clip(derainer, rain)
    rows = [labelled_row([rain[t], out[t]], ("real rain", "bundled model")) for t in (10, 29)]
    write_png(HERE / "derain_real.png", np.concatenate(rows, axis=0))


if __name__ == "__main__":
    main()
