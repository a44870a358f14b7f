"""``python -m hiremlp``: the presets at their image size: params, MACs, stage maps and the padding they need."""

from __future__ import annotations

import argparse
import sys

import torch

from . import PRESET_IMAGE_SIZE, PRESETS, count_macs, count_params, create_model, stage_plan


def preset_rows(image_size: int | None = None) -> list[dict[str, str]]:
    rows = []
    for name, cfg in PRESETS.items():
        size = image_size or PRESET_IMAGE_SIZE[name]
        with torch.device("meta"):  # shapes only: counting needs no real weights
            model = create_model(name, num_classes=cfg.num_classes)
        plans = stage_plan(cfg, size)
        rows.append({
            "preset": name,
            "image": f"{size}px",
            "classes": str(cfg.num_classes),
            "params (M)": f"{count_params(model) / 1e6:.2f}",
            "MACs (G)": f"{count_macs(model, size) / 1e9:.3f}",
            "stage maps": " ".join(f"{p.map_size[0]}x{p.map_size[1]}" for p in plans),
            "regions": " ".join(f"{p.region_size[0]}x{p.region_size[1]}" for p in plans),
            "padding rows/cols": " ".join(f"{p.pad_rows}/{p.pad_cols}" for p in plans),
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hiremlp", description=__doc__)
    parser.add_argument("--image-size", type=int, default=None, help="override every preset's image size")
    args = parser.parse_args(argv)
    if args.image_size is not None and args.image_size < 1:
        parser.exit(2, f"error: --image-size={args.image_size} is not allowed: a positive integer\n")
    rows = preset_rows(args.image_size)
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    print("  ".join("-" * widths[c] for c in cols))
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in cols).rstrip())
    print("padding rows/cols: rows added for the height branch / columns for the width branch, per stage")
    return 0


if __name__ == "__main__":
    sys.exit(main())
