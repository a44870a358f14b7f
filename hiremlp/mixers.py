"""The token mixer each block puts between its first norm and residual: Hire-MLP's, or another for comparison.

``HireMLPConfig.mixer`` chooses; stem, stages, channel MLP, norms, drop path and recipe stay the same, so the
mixers study compares token mixers in one network. ``hire`` builds exactly the Hire module the model always
built. The two controls are defined here: ``dwconv``, a 3x3 depthwise convolution (with bias), the plainest
local mixing, and ``channel_only``, a 1x1 convolution (with bias): no spatial mixing in the blocks at all, so the
network mixes space only in its stem and its stride-2 downsampling convolutions.
"""

from __future__ import annotations

from torch import Tensor, nn

from .axial_shift import AxialShiftMixer
from .config import HireMLPConfig
from .counting import map_sizes
from .cycle_fc import CycleMixer
from .hire_module import HireModule
from .matmul_conv import pointwise
from .permute_mlp import PermuteMLPMixer

#: What each mixer is, for tables and ``--list``.
MIXER_SOURCES = {
    "hire": "Hire-MLP's Hire module (ggjy/Hire-Wave-MLP.pytorch, arXiv 2108.13341)",
    "as_mlp": "AS-MLP's axial shift (svip-lab/AS-MLP, arXiv 2107.08391)",
    "vip": "ViP's Weighted Permute-MLP (houqb/VisionPermutator, arXiv 2106.12368)",
    "cycle": "CycleMLP's Cycle FC mixer (ShoufaChen/CycleMLP, arXiv 2107.10224)",
    "dwconv": "3x3 depthwise convolution (control)",
    "channel_only": "1x1 convolution, no spatial mixing in the blocks (control)",
}


class DepthwiseMixer(nn.Conv2d):
    """A 3x3 depthwise convolution with bias."""

    def __init__(self, dim: int) -> None:
        super().__init__(dim, dim, 3, padding=1, groups=dim)

    def branch_outputs(self, x: Tensor) -> dict[str, Tensor]:
        return {"dw": self(x)}


class ChannelOnlyMixer(nn.Module):
    """A 1x1 convolution with bias: each pixel's channels mixed, nothing across pixels."""

    def __init__(self, dim: int, impl: str = "fast") -> None:
        super().__init__()
        self.in_channels = dim
        self.fc = pointwise(dim, dim, impl)

    def branch_outputs(self, x: Tensor) -> dict[str, Tensor]:
        return {"c": self.fc(x)}

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(x)


def make_mixer(cfg: HireMLPConfig, stage: int, step: int, where: str = "") -> nn.Module:
    """The token mixer of a block of ``stage`` (0-based) whose cross-region step is ``step`` (Hire only)."""
    dim = cfg.embed_dims[stage]
    if cfg.mixer == "hire":
        return HireModule(
            dim, region_size=cfg.region_sizes[stage], shift=(step, step), padding=cfg.padding,
            cross_region=cfg.cross_region, branches=cfg.branches, fusion=cfg.fusion,
            inner_region=cfg.inner_region, impl=cfg.impl, where=where)
    if cfg.mixer == "as_mlp":
        return AxialShiftMixer(dim, cfg.shift_size, cfg.impl)
    if cfg.mixer == "vip":
        return PermuteMLPMixer(dim, map_sizes(cfg, cfg.vip_image_size)[stage], cfg.impl, where)
    if cfg.mixer == "cycle":
        return CycleMixer(dim, cfg.impl)
    if cfg.mixer == "dwconv":
        return DepthwiseMixer(dim)
    return ChannelOnlyMixer(dim, cfg.impl)
