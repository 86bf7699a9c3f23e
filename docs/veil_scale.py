"""How a trained model sees the veil: the per-frame scale k, a probe, and the rain-free pixels.

    python docs/veil_scale.py --weights runs/a/model.safetensors runs/b/model.safetensors

For each weights file it prints

- the mean raw veil scale k of SF-DerainNet (beta = exp(-k d), derain.heads) per preset over every
  frame of the test clips (k <= 0 switches the veil off; streaks-only rain should get k <= 0);
- a linear probe: ridge regression from SF-DerainNet's pooled coarsest features of random square
  crops of the training clips, with the whole frame's context vector when the model has one (what
  the head reads k from), to the crop's veil
  1 - mean(beta), fitted on four clips in five and scored on the fifth (R^2, and the mean
  prediction against the mean truth per preset), for each crop size asked for;
- what changes the rain-free pixels of the streaks test clips (derain.metrics.rain_free_mask):
  the transmission there of each stage, beta^S and beta^M, and their change in 8-bit levels / the
  share of their fine detail kept (derain.metrics.rain_free_change) as the model leaves them, with
  beta^M set to 1 in Eq. 6 (without haze removal) and with S^M set to 0 (without the streak layer).

The README's paragraph on the spread over training seeds quotes these figures.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from derain.checkpoint import load_model, resolve_weights
from derain.context import row_positions
from derain.evaluate import quantise
from derain.metrics import rain_free_change, rain_free_mask
from derain.recovery import recover
from rainsynth.dataset import DatasetClip, read_dataset
from rainsynth.errors import RainsynthError

CROPS_PER_CLIP = 4
RIDGE = 1e-2


def _frames(clip: DatasetClip, count: int | None = None) -> torch.Tensor:
    """The clip's first ``count`` rain frames (all if None) as (T,3,H,W) float32."""
    rain = clip.rain(slice(0, count))
    return torch.from_numpy(rain).permute(0, 3, 1, 2).float()


def mean_veil_scale(model, clips: list[DatasetClip]) -> dict[str, float]:
    """Mean raw k of SF-DerainNet over every frame of the clips, per preset."""
    per_preset: dict[str, list[float]] = {}
    for clip in clips:
        frames = _frames(clip)
        k = model.sf(frames, model.position_map(frames), model.context_vector(frames))["k"]
        per_preset.setdefault(clip.preset, []).append(float(k.mean()))
    return {p: float(np.mean(v)) for p, v in sorted(per_preset.items())}


def rain_free_sources(
    model, clips: list[DatasetClip]
) -> tuple[tuple[float, float], dict[str, tuple[float, float]]]:
    """Over the rain-free pixels of the clips: mean beta^S and beta^M, and for Eq. 6's output as it
    is, with beta^M = 1 and with S^M = 0 (the model's final layers otherwise), the change in levels
    and the share of fine detail kept, name -> (change, detail)."""
    if not model.config.use_recovery:
        raise RainsynthError(
            "this network has no inverse recovery (ablation v3): no Eq. 6 to split"
        )
    betas: list[tuple[float, float]] = []
    changes: dict[str, list[tuple[float, float]]] = {}
    for clip in clips:
        dry = rain_free_mask(clip.layers())
        if not dry.any():
            continue
        rain, clean = _frames(clip)[None], clip.clean()
        layers = {k: v[0] for k, v in model(rain).items()}  # (T,...) of the one clip
        S, U, beta, A, R = (layers[f"{k}_M"] for k in ("S", "U", "beta", "A", "R"))
        outputs = {
            "as is": layers["B"],
            "beta = 1": recover(rain[0], S, U, torch.ones_like(beta), A, R),
            "S = 0": recover(rain[0], torch.zeros_like(S), U, beta, A, R),
        }
        for name, out in outputs.items():
            image = quantise(out.permute(0, 2, 3, 1).numpy())  # as rainsynth test scores it
            changes.setdefault(name, []).append(rain_free_change(image, clean, dry))
        dry_pixels = torch.from_numpy(dry)
        betas.append(tuple(float(layers[k][:, 0][dry_pixels].mean()) for k in ("beta_S", "beta_M")))
    if not betas:
        raise RainsynthError("no test clip has rain-free pixels (build the streaks preset)")
    means = {k: tuple(np.mean(v, axis=0)) for k, v in changes.items()}
    return tuple(np.mean(betas, axis=0)), means


def crop_features(model, clips: list[DatasetClip], crop: int, seed: int):
    """What the head reads k from, the pooled coarsest features and (with frame_context) the whole
    frame's context vector (N,C), and the veil 1 - mean(beta) (N,) of random crops of the clips'
    first frames, CROPS_PER_CLIP per clip, with each crop's clip index and preset."""
    rng = np.random.default_rng(seed)
    features, veil, index, presets = [], [], [], []
    for i, clip in enumerate(clips):
        frame, beta = _frames(clip, 1)[0], clip.layers()["beta"][0, ..., 0]
        h, w = beta.shape
        if h < crop or w < crop:
            raise RainsynthError(f"clip {clip.path} is {h}x{w}, smaller than the crop {crop}")
        crops, rows = [], []
        for _ in range(CROPS_PER_CLIP):
            y, x = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
            crops.append(frame[:, y : y + crop, x : x + crop])
            rows.append(row_positions(y, crop, h).view(1, crop, 1))
            veil.append(1.0 - float(beta[y : y + crop, x : x + crop].mean()))
        crops = torch.stack(crops)
        where = model.position_map(crops, torch.stack(rows))
        pooled = model.sf.encode(crops, where)[-1].mean(dim=(2, 3))
        context = model.context_vector(frame[None]).expand(len(crops), -1)
        features.append(torch.cat([pooled, context], dim=1))
        index += [i] * CROPS_PER_CLIP
        presets += [clip.preset] * CROPS_PER_CLIP
    return torch.cat(features).double(), torch.tensor(veil).double(), np.array(index), presets


def probe(features: torch.Tensor, veil: torch.Tensor, held_out: np.ndarray):
    """Ridge regression on the standardised features; (R^2 on held_out, predictions)."""
    fit = torch.from_numpy(~held_out)
    mean, std = features[fit].mean(0), features[fit].std(0) + 1e-6
    z = torch.cat([(features - mean) / std, torch.ones(len(features), 1).double()], dim=1)
    a = z[fit]
    gram = a.T @ a + RIDGE * len(a) * torch.eye(a.shape[1], dtype=a.dtype)
    pred = z @ torch.linalg.solve(gram, a.T @ veil[fit])
    test = torch.from_numpy(held_out)
    r2 = 1.0 - float(((pred[test] - veil[test]) ** 2).mean() / veil[test].var())
    return r2, pred


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", nargs="+", default=[None], help="default: the bundled model")
    parser.add_argument(
        "--data",
        default="data/builtin",
        help="a dataset built by rainsynth, by default the bundled model's built-in one "
        "(rainsynth build --recipe datasets/bundled_builtin.toml --out data/builtin)",
    )
    parser.add_argument("--crops", default="64,96,192", help='probe crop sizes, px ("" = no probe)')
    parser.add_argument("--seed", type=int, default=0, help="seed of the crop positions")
    args = parser.parse_args()
    try:
        report(args.weights, args.data, [int(c) for c in args.crops.split(",") if c], args.seed)
    except RainsynthError as error:  # a missing dataset or weights file, a wrong network
        raise SystemExit(f"error: {error}") from None


def report(weights_files: list[str | None], data: str, crops: list[int], seed: int) -> None:
    """Print k per preset and the probe for each crop size, for each weights file."""
    test_clips = read_dataset(data, split="test")
    train_clips = read_dataset(data, split="train")
    torch.set_grad_enabled(False)
    for weights in weights_files:
        path = resolve_weights(weights)
        model, _ = load_model(path)
        if model.sf is None:
            raise RainsynthError(f"{path}: this network has no SF-DerainNet (ablation v1)")
        print(path)
        scales = mean_veil_scale(model, test_clips)
        print("  mean raw k, test clips: " + ", ".join(f"{p} {k:.3f}" for p, k in scales.items()))
        for crop in crops:
            features, veil, index, presets = crop_features(model, train_clips, crop, seed)
            held_out = index % 5 == 0
            r2, pred = probe(features, veil, held_out)
            rows = []
            for p in sorted(set(presets)):
                mask = torch.from_numpy(held_out & (np.array(presets) == p))
                rows.append(f"{p} {float(pred[mask].mean()):.3f} vs {float(veil[mask].mean()):.3f}")
            print(
                f"  probe {crop}x{crop}: R^2 {r2:.2f}; predicted vs true veil: " + ", ".join(rows)
            )
        beta, dry = rain_free_sources(model, [c for c in test_clips if c.preset == "streaks"])
        changes = ", ".join(f"{k} {e:.2f} / {d:.3f}" for k, (e, d) in dry.items())
        print(
            f"  rain-free streaks pixels: beta^S {beta[0]:.3f}, beta^M {beta[1]:.3f}; "
            f"change (levels) / detail {changes}"
        )


if __name__ == "__main__":
    main()
