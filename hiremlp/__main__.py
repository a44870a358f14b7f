"""``python -m hiremlp``: the presets at their image size: params, MACs, stage maps, regions and padding.

``python -m hiremlp --plan smoke`` prints what every block's h and w branches mix (``hiremlp.mixing_plan``).
"""

from __future__ import annotations

import argparse
import sys

import torch

from . import PRESET_IMAGE_SIZE, PRESETS, count_macs, count_params, create_model, stage_plan
from .mixing_plan import inert_steps, plan_text


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
            "regions per axis": " ".join(f"{_regions(p.map_size[0], p.region_size[0])}/"
                                         f"{_regions(p.map_size[1], p.region_size[1])}" for p in plans),
            "inert steps": _inert_summary(cfg, size),
        })
    return rows


def _regions(length: int, region: int) -> int:
    return -(-length // region)


def _inert_summary(cfg, size: int) -> str:
    """Stages whose cross-region step does nothing at ``size`` ("-" when every step acts)."""
    try:
        stages = sorted({s.stage for s in inert_steps(cfg, size)})
    except ValueError:
        return "cannot run"
    return ",".join(f"stage {s}" for s in stages) or "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hiremlp", description=__doc__)
    parser.add_argument("--image-size", type=int, default=None, help="override every preset's image size")
    parser.add_argument("--plan", metavar="PRESET", default=None,
                        help="print what each block's h and w branches mix for this preset")
    args = parser.parse_args(argv)
    if args.image_size is not None and args.image_size < 1:
        parser.exit(2, f"error: --image-size={args.image_size} is not allowed: a positive integer\n")
    if args.plan is not None:
        if args.plan not in PRESETS:
            parser.exit(2, f"error: --plan={args.plan!r} is not allowed: one of {', '.join(PRESETS)}\n")
        size = args.image_size or PRESET_IMAGE_SIZE[args.plan]
        try:
            print(f"{args.plan} " + plan_text(PRESETS[args.plan], size))
        except ValueError as e:
            parser.exit(2, f"error: {e}\n")
        return 0
    rows = preset_rows(args.image_size)
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    print("  ".join("-" * widths[c] for c in cols))
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in cols).rstrip())
    print("padding rows/cols: rows added for the height branch / columns for the width branch, per stage")
    print("regions per axis: regions of the height / width branch per stage (one region mixes the whole axis)")
    print("inert steps: stages with a cross-region step that changes nothing the block mixes (hiremlp.mixing_plan)")
    print("python -m hiremlp --plan PRESET prints what every block mixes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
