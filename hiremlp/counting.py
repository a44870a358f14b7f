"""Parameters, multiply-accumulates and per-stage map geometry, for the columns of every ablation table."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .config import HireMLPConfig
from .cross_region import pad_amount, padding_problem


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _size2(image_size: int | tuple[int, int]) -> tuple[int, int]:
    return (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)  # type: ignore


@torch.no_grad()
def count_macs(model: nn.Module, image_size: int | tuple[int, int] = 224) -> int:
    """Multiply-accumulates of one image's forward pass, counted over convolutions and matmuls.

    ``FlopCounterMode`` counts 2 FLOPs per multiply-accumulate; the paper's "FLOPs" are MACs, hence the halving.
    """
    h, w = _size2(image_size)
    in_chans = getattr(getattr(model, "config", None), "in_chans", 3)
    param = next(model.parameters())
    x = torch.zeros(1, in_chans, h, w, device=param.device, dtype=param.dtype)
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class StagePlan:
    """What a stage sees at one input size: its map, its regions, the padding each branch adds."""

    stage: int
    map_size: tuple[int, int]
    region_size: tuple[int, int]
    pad_rows: int
    pad_cols: int
    reason: str | None

    @property
    def pads(self) -> bool:
        return bool(self.pad_rows or self.pad_cols)


def map_sizes(cfg: HireMLPConfig, image_size: int | tuple[int, int]) -> list[tuple[int, int]]:
    """Each stage's (H, W) for an input of ``image_size``: the stem, then a 3x3 stride-2 conv per later stage."""
    h, w = _size2(image_size)
    k, s, p = cfg.stem_kernel, cfg.stem_stride, cfg.stem_padding
    h, w = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
    sizes = [(h, w)]
    for _ in range(1, cfg.num_stages):
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        sizes.append((h, w))
    return sizes


def stage_plan(cfg: HireMLPConfig, image_size: int | tuple[int, int]) -> list[StagePlan]:
    """Per stage: map size, region size, rows/columns of padding, and why it cannot run (None if it can).

    Regions and padding are the Hire module's: under another ``mixer`` regions are 1x1 and nothing pads."""
    plans = []
    hire = cfg.mixer == "hire"
    vip_maps = map_sizes(cfg, cfg.vip_image_size) if cfg.mixer == "vip" else None
    for i, (h, w) in enumerate(map_sizes(cfg, image_size)):
        rh, rw = cfg.region_sizes[i] if cfg.inner_region and hire else (1, 1)
        reasons = []
        if h < 1 or w < 1:
            reasons.append(f"the input is too small: stage {i + 1} map would be {h}x{w}")
        elif vip_maps is not None and vip_maps[i] != (h, w):
            reasons.append(f"stage {i + 1} vip: map {h}x{w}, but its height/width weights are sized for "
                           f"{vip_maps[i][0]}x{vip_maps[i][1]} (vip_image_size={cfg.vip_image_size})")
        elif hire:
            for branch, n, r, side in (("h", h, rh, "height"), ("w", w, rw, "width")):
                problem = padding_problem(n, r, cfg.padding) if branch in cfg.branches else None
                if problem:
                    reasons.append(f"stage {i + 1} {side} branch: map {side} {n} with region {r}, "
                                   f"padding={cfg.padding!r}: {problem}")
        pad_rows = pad_amount(h, rh) if hire and "h" in cfg.branches and h > 0 else 0
        pad_cols = pad_amount(w, rw) if hire and "w" in cfg.branches and w > 0 else 0
        plans.append(StagePlan(i + 1, (h, w), (rh, rw), pad_rows, pad_cols, "; ".join(reasons) or None))
    return plans


def check_input_size(cfg: HireMLPConfig, image_size: int | tuple[int, int]) -> None:
    """Raise ValueError naming stage, map size, region size and padding mode if the size cannot be honoured."""
    for plan in stage_plan(cfg, image_size):
        if plan.reason:
            raise ValueError(f"input {image_size}: {plan.reason}")
