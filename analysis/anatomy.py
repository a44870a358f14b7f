"""Tables describing the models themselves: presets (size, cost), what each stage sees at an input size, and
what each block's branches mix.

They answer "what does the padding switch touch at 32 px?" before any training is spent on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd


def presets_table(names: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per preset: dims, depths, regions, steps, params (M) and MACs (G) at its intended size."""
    import hiremlp

    rows = []
    for name in names or list(hiremlp.PRESETS):
        cfg = hiremlp.PRESETS[name]
        size = hiremlp.PRESET_IMAGE_SIZE[name]
        model = hiremlp.build_model(cfg)
        flat = cfg.to_flat()
        rows.append({
            "preset": name, "image size": size, "embed dims": flat["embed_dims"], "depths": flat["depths"],
            "regions": flat["region_sizes"], "shift steps": flat["shift_steps"], "classes": cfg.num_classes,
            "params (M)": round(hiremlp.count_params(model) / 1e6, 2),
            "MACs (G)": round(hiremlp.count_macs(model, size) / 1e9, 3),
        })
    return pd.DataFrame(rows).set_index("preset")


def stage_table(cfg: Any, image_sizes: Sequence[int]) -> pd.DataFrame:
    """Per input size and stage: map size, region, padding rows/cols, and why it cannot run (if it cannot)."""
    import hiremlp

    rows = []
    for size in image_sizes:
        for plan in hiremlp.stage_plan(cfg, size):
            rows.append({
                "input": size, "stage": plan.stage, "map": f"{plan.map_size[0]}x{plan.map_size[1]}",
                "region": f"{plan.region_size[0]}x{plan.region_size[1]}", "pad rows": plan.pad_rows,
                "pad cols": plan.pad_cols, "steps per block": ",".join(map(str, cfg.block_steps(plan.stage - 1))),
                "cannot run because": plan.reason or "",
            })
    return pd.DataFrame(rows).set_index(["input", "stage"])


def mixing_table(cfg: Any, image_size: int) -> pd.DataFrame:
    """Per stage and block: the step, how regions talk, and the regions each branch mixes (`hiremlp.mixing_plan`).

    A region lists true rows (columns) in the order the inner-region MLP sees them; ``r'`` is a padding copy of row
    r, ``_`` a zero. ``inert`` names the branches whose step mixes exactly what step 0 would.
    """
    from hiremlp.mixing_plan import is_inert, mixing_plan

    rows = []
    for blocks in mixing_plan(cfg, image_size):
        for block in blocks:
            plans = block.branches()
            rows.append({
                "stage": block.stage, "block": block.block, "step": block.step,
                "manner": next((p.manner for p in plans.values()), "none"),
                "h regions": plans["h"].text() if "h" in plans else "off",
                "w regions": plans["w"].text() if "w" in plans else "off",
                "inert": ",".join(axis for axis, p in plans.items() if is_inert(p)),
            })
    return pd.DataFrame(rows).set_index(["stage", "block"])
