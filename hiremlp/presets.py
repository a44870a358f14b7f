"""Named models: the paper's four ImageNet sizes as released, their CIFAR variants, and a smoke-test model."""

from __future__ import annotations

from typing import Any

from .config import HireMLPConfig
from .model import HireMLP

_SMALL_DIMS = (64, 128, 320, 512)
_LARGE_DIMS = (96, 192, 384, 768)
# A 32 px image through a 3x3 stride-2 stem gives stage maps 16, 8, 4, 2: with the paper's regions (4, 3, 3, 2)
# stages 2 and 3 need padding, as stages 2-4 do at 224 px (56, 28, 14, 7), so the padding switch matters.
_CIFAR_STEM = dict(stem_kernel=3, stem_stride=2, stem_padding=1, num_classes=10)

PRESETS: dict[str, HireMLPConfig] = {
    "tiny": HireMLPConfig(embed_dims=_SMALL_DIMS, depths=(2, 2, 4, 2)),
    "small": HireMLPConfig(embed_dims=_SMALL_DIMS, depths=(3, 4, 10, 3)),
    "base": HireMLPConfig(embed_dims=_SMALL_DIMS, depths=(4, 6, 24, 3)),
    "large": HireMLPConfig(embed_dims=_LARGE_DIMS, depths=(4, 6, 24, 3)),
    "cifar_tiny": HireMLPConfig(embed_dims=_SMALL_DIMS, depths=(2, 2, 4, 2), **_CIFAR_STEM),
    "cifar_small": HireMLPConfig(embed_dims=_SMALL_DIMS, depths=(3, 4, 10, 3), **_CIFAR_STEM),
    # Two blocks per stage: block 2 of every stage shifts under the official schedule, stages 2 and 3 pad.
    "smoke": HireMLPConfig(embed_dims=(16, 32, 48, 64), depths=(2, 2, 2, 2), **_CIFAR_STEM),
}

#: The image size each preset is meant for.
PRESET_IMAGE_SIZE = {name: 224 if cfg.stem_stride == 4 else 32 for name, cfg in PRESETS.items()}


def get_config(name: str, **overrides: Any) -> HireMLPConfig:
    """The preset ``name`` with ``overrides`` applied (field names of :class:`HireMLPConfig`)."""
    if name not in PRESETS:
        raise ValueError(f"preset={name!r} does not exist; allowed: {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides)


def create_model(name: str, *, num_classes: int = 1000, **overrides: Any) -> HireMLP:
    """Build the preset ``name`` with ``num_classes`` outputs; ``overrides`` are config fields."""
    return HireMLP(get_config(name, num_classes=num_classes, **overrides))
