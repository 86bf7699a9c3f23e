"""Print README's results table from `rainsynth test --report` JSON files.

    python docs/results_table.py "rain input=runs/scores/real-rain.json" \
        "v5 full model=runs/scores/real-v5.json" ...

One row per NAME=REPORT, one column per preset in the order light, heavy, streaks, dry (those
present). A rain preset's cell: median Y PSNR over the clips in dB / mean SSIM / mean temporal
consistency error; the dry preset's (no rain: the clean frame is the input): median Y PSNR of the
output against the input / mean share of the fine detail kept.
"""

from __future__ import annotations

import argparse
import json
import math

ORDER = ("light", "heavy", "streaks", "dry")


def cell(means: dict, dry: bool) -> str:
    """One table cell from a report's per-preset means."""
    psnr = float(means["psnr_median"])
    shown = "identical" if math.isinf(psnr) else f"{psnr:.2f}"
    if dry:
        return f"{shown} / {float(means['dry_detail']):.3f}"
    return f"{shown} / {float(means['ssim']):.4f} / {float(means['tc']):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rows", nargs="+", metavar="NAME=REPORT.json")
    args = parser.parse_args()
    reports = [row.split("=", 1) for row in args.rows]
    presets = [
        p for p in ORDER if any(p in json.load(open(path))["per_preset"] for _, path in reports)
    ]
    print("| method | " + " | ".join(presets) + " |")
    print("| --- |" + " --- |" * len(presets))
    for name, path in reports:
        per_preset = json.load(open(path))["per_preset"]
        cells = [cell(per_preset[p], p == "dry") if p in per_preset else "" for p in presets]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
