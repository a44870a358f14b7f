"""Named models: the paper's four ImageNet sizes as released, their CIFAR variants, and a smoke-test model."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .config import HireMLPConfig
from .model import HireMLP

_SMALL_DIMS = (64, 128, 320, 512)
_LARGE_DIMS = (96, 192, 384, 768)
# A 32 px image through a 3x3 stride-1 stem keeps 32 px for stage 1: maps 32, 16, 8, 4. With the paper's regions
# (4, 3, 3, 2) every stage has at least two regions per axis, as at 224 px (56, 28, 14, 7), so every row of Tables
# 3-7 is a different network (`hiremlp.mixing_plan`), and stages 2 and 3 pad (2 and 1 rows; 224 px pads 2, 1, 1).
_CIFAR_STEM = dict(stem_kernel=3, stem_stride=1, stem_padding=1, num_classes=10, vip_image_size=32)
# The earlier 3x3 stride-2 stem (maps 16, 8, 4, 2, a quarter of the MACs): stage 4 is one region per axis, so
# Table 3's 3-3-3-2 / 3-3-3-3 and 4-3-3-2 / 4-3-3-3 are the same network, every stage-4 shift or shuffle is inert,
# and so is stage 3's roll by 4 (Table 4's 2-2-2-2 on a 4-row map, in the presets whose stage 3 has 3+ blocks).
# Kept under their own names (`*_s2`) for comparison with earlier runs. `vip_image_size`: the CIFAR presets are
# meant for 32 px, so a `mixer='vip'` model of them sizes its height/width weights for 32 px (the default, 224).
_CIFAR_STEM_S2 = dict(stem_kernel=3, stem_stride=2, stem_padding=1, num_classes=10, vip_image_size=32)

PRESETS: dict[str, HireMLPConfig] = {
    "tiny": HireMLPConfig(embed_dims=_SMALL_DIMS, depths=(2, 2, 4, 2)),
    "small": HireMLPConfig(embed_dims=_SMALL_DIMS, depths=(3, 4, 10, 3)),
    "base": HireMLPConfig(embed_dims=_SMALL_DIMS, depths=(4, 6, 24, 3)),
    "large": HireMLPConfig(embed_dims=_LARGE_DIMS, depths=(4, 6, 24, 3)),
    "cifar_tiny": HireMLPConfig(embed_dims=_SMALL_DIMS, depths=(2, 2, 4, 2), **_CIFAR_STEM),
    "cifar_small": HireMLPConfig(embed_dims=_SMALL_DIMS, depths=(3, 4, 10, 3), **_CIFAR_STEM),
    # The fewest blocks that keep the released schedule's steps: block 2 of every stage shifts by s, stage 3's third
    # block by 2s (with two blocks there the official and the paper's schedule would be the same network).
    "smoke": HireMLPConfig(embed_dims=(16, 32, 48, 64), depths=(2, 2, 3, 2), **_CIFAR_STEM),
    "cifar_tiny_s2": HireMLPConfig(embed_dims=_SMALL_DIMS, depths=(2, 2, 4, 2), **_CIFAR_STEM_S2),
    "cifar_small_s2": HireMLPConfig(embed_dims=_SMALL_DIMS, depths=(3, 4, 10, 3), **_CIFAR_STEM_S2),
    "smoke_s2": HireMLPConfig(embed_dims=(16, 32, 48, 64), depths=(2, 2, 2, 2), **_CIFAR_STEM_S2),  # the old smoke
}

#: The image size each preset is meant for.
PRESET_IMAGE_SIZE = {name: 224 if cfg.stem_stride == 4 else 32 for name, cfg in PRESETS.items()}


def get_config(name: str, **overrides: Any) -> HireMLPConfig:
    """The preset ``name`` with ``overrides`` applied (field names of :class:`HireMLPConfig`)."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} does not exist; allowed: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)


def row_config(preset: str, overrides: Mapping[str, Any] = (), *, drop_path: float | None = None,
               num_classes: int | None = None) -> HireMLPConfig:
    """The config of one table row: the preset, the row's ``overrides``, the training recipe's ``drop_path`` (the
    last block's rate; None keeps the preset's) and the dataset's ``num_classes`` (None keeps the preset's).

    Every place that builds a row's model calls this, so a dry run, a preflight check, a trial and a report build
    the same network; an unknown field or a bad value is one ValueError naming it.
    """
    overrides = dict(overrides)
    if drop_path is not None:
        if "drop_path_rate" in overrides:
            raise ValueError("give drop_path or model_overrides['drop_path_rate'], not both")
        overrides["drop_path_rate"] = drop_path
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    return get_config(preset, **overrides)


def create_model(name: str, *, num_classes: int = 1000, **overrides: Any) -> HireMLP:
    """Build the preset ``name`` with ``num_classes`` outputs; ``overrides`` are config fields."""
    return HireMLP(get_config(name, num_classes=num_classes, **overrides))
