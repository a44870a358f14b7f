"""Hire-MLP: stem, four stages of Hire blocks with downsampling between them, norm, pooled linear head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import HireMLPConfig
from .matmul_conv import PatchConv, pointwise
from .mixers import make_mixer


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (the paper text's norm)."""

    def forward(self, x: Tensor) -> Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


def make_norm(kind: str, dim: int) -> nn.Module:
    return nn.BatchNorm2d(dim) if kind == "batch" else LayerNorm2d(dim)


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch of a sample with probability ``rate`` while training."""

    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = rate

    def forward(self, x: Tensor) -> Tensor:
        if self.rate == 0.0 or not self.training:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"rate={self.rate:.3f}"


class ChannelMLP(nn.Module):
    def __init__(self, dim: int, ratio: float, impl: str = "fast") -> None:
        super().__init__()
        hidden = int(dim * ratio)
        self.fc1 = pointwise(dim, hidden, impl)
        self.act = nn.GELU()
        self.fc2 = pointwise(hidden, dim, impl)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ConvNormAct(nn.Sequential):
    """Conv, BatchNorm, ReLU: the released stem and downsampling layer."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int, impl: str = "fast") -> None:
        conv = (nn.Conv2d(cin, cout, kernel, stride, padding) if impl == "reference"
                else PatchConv(cin, cout, kernel, stride, padding))
        super().__init__(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class HireBlock(nn.Module):
    """``x + DropPath(mixer(norm(x)))``, then ``x + DropPath(ChannelMLP(norm(x)))``.

    The mixer is the Hire module unless ``cfg.mixer`` chooses another (``hiremlp.mixers``).
    """

    def __init__(self, cfg: HireMLPConfig, stage: int, block: int, step: int, drop_path: float) -> None:
        super().__init__()
        dim = cfg.embed_dims[stage]
        self.norm1 = make_norm(cfg.norm, dim)
        self.mixer = make_mixer(cfg, stage, step, where=f"stage {stage + 1} block {block + 1}: ")
        self.drop_path = DropPath(drop_path)
        self.norm2 = make_norm(cfg.norm, dim)
        self.mlp = ChannelMLP(dim, cfg.mlp_ratio, cfg.impl)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.drop_path(self.mixer(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class HireStage(nn.Module):
    """Optional downsampling (3x3 stride-2 conv, BN, ReLU) followed by the stage's blocks."""

    def __init__(self, cfg: HireMLPConfig, stage: int, drop_paths: list[float]) -> None:
        super().__init__()
        dims = cfg.embed_dims
        self.downsample = (ConvNormAct(dims[stage - 1], dims[stage], 3, 2, 1, cfg.impl) if stage > 0
                           else nn.Identity())
        steps = cfg.block_steps(stage)
        self.blocks = nn.Sequential(*[
            HireBlock(cfg, stage, i, steps[i], drop_paths[i]) for i in range(cfg.depths[stage])
        ])

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class HireMLP(nn.Module):
    """The whole network, built from one :class:`HireMLPConfig`; NCHW images in, logits out."""

    def __init__(self, cfg: HireMLPConfig) -> None:
        super().__init__()
        self.config = cfg
        self.num_classes = cfg.num_classes
        # the stem's map is never small enough for the matmul path: it stays the released convolution
        self.stem = ConvNormAct(cfg.in_chans, cfg.embed_dims[0], cfg.stem_kernel, cfg.stem_stride,
                                cfg.stem_padding, impl="reference")
        total = sum(cfg.depths)
        rates = [cfg.drop_path_rate * k / max(total - 1, 1) for k in range(total)]
        starts = [sum(cfg.depths[:i]) for i in range(cfg.num_stages)]
        self.stages = nn.Sequential(*[
            HireStage(cfg, i, rates[starts[i]:starts[i] + cfg.depths[i]]) for i in range(cfg.num_stages)
        ])
        self.num_features = cfg.embed_dims[-1]
        self.norm = make_norm(cfg.norm, self.num_features)
        self.head = nn.Linear(self.num_features, cfg.num_classes)
        self.apply(_init_weights)

    def forward_features(self, x: Tensor) -> Tensor:
        """Stem, stages and final norm: the last stage's map, NCHW."""
        return self.norm(self.stages(self.stem(x)))

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """Global average pool, then the linear classifier (skipped when ``pre_logits``)."""
        x = x.mean((2, 3))
        return x if pre_logits else self.head(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.head = nn.Linear(self.num_features, num_classes)
        _init_weights(self.head)

    @torch.no_grad()
    def stage_outputs(self, x: Tensor) -> list[Tensor]:
        """The map after each stage, for looking at what the switches change."""
        outs = []
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
            outs.append(x)
        return outs


def build_model(cfg: HireMLPConfig) -> HireMLP:
    return HireMLP(cfg)
