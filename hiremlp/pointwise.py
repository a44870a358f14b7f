"""The 1x1 convolution, run as the matmul it is when the map is stored channels-last.

A 1x1 convolution of an NHWC-stored map is ``(B*H*W, C_in) @ (C_in, C_out)``. Called as a convolution, oneDNN
picks a convolution kernel whose efficiency falls with the map's spatial size; on a 2x2 or 4x4 map (Hire-MLP's
late stages) its backward runs at a third of the speed of the same product handed to the BLAS as ``F.linear``.
``benchmarks/bench.py --kernels`` measures both for every 1x1 layer of a preset. The weight keeps the Conv2d shape
``(C_out, C_in, 1, 1)``, so state dicts and the released checkpoints' layout are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PointwiseConv(nn.Conv2d):
    """``nn.Conv2d(cin, cout, 1)`` that runs as ``F.linear`` over the channels of a channels-last map.

    Args:
        max_linear_pixels: maps with at most this many pixels (H*W) take the matmul; larger maps, and maps not
            stored channels-last, take the convolution. ``0`` always convolves, a huge value always multiplies.
    """

    def __init__(self, cin: int, cout: int, bias: bool = True, max_linear_pixels: int = 64) -> None:
        super().__init__(cin, cout, 1, bias=bias)
        self.max_linear_pixels = max_linear_pixels

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[2] * x.shape[3] > self.max_linear_pixels or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        y = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)
        return y.permute(0, 3, 1, 2)


def pointwise(cin: int, cout: int, impl: str = "fast") -> nn.Conv2d:
    """A 1x1 convolution layer: the released code's ``nn.Conv2d`` for ``impl='reference'``, else the matmul form."""
    return nn.Conv2d(cin, cout, 1) if impl == "reference" else PointwiseConv(cin, cout)
