"""The 1x1 convolution, run as the matmul it is when the map is stored channels-last.

A 1x1 convolution of an NHWC-stored map is ``(B*H*W, C_in) @ (C_in, C_out)``. Called as a convolution, oneDNN
runs it well on large maps but poorly on small ones: on Hire-MLP's 2x2 stage-4 maps (batch 64, 512 -> 2048) its
forward + backward ran at 52 GFLOP/s on one core here, against 184 GFLOP/s for the same product as ``F.linear``.
The whole-model effect is in ``benchmarks/bench.py``. The weight keeps the Conv2d shape ``(C_out, C_in, 1, 1)``,
so state dicts and the released checkpoints' layout are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PointwiseConv(nn.Conv2d):
    """``nn.Conv2d(cin, cout, 1)`` that runs as ``F.linear`` over the channels of a channels-last map.

    Args:
        max_linear_rows: batches of at most this many pixels (B*H*W, the matmul's rows) take the matmul; larger
            ones, and maps not stored channels-last, take the convolution. ``0`` always convolves.
    """

    def __init__(self, cin: int, cout: int, bias: bool = True, max_linear_rows: int = 8192) -> None:
        super().__init__(cin, cout, 1, bias=bias)
        self.max_linear_rows = max_linear_rows

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] * x.shape[2] * x.shape[3] > self.max_linear_rows or not x.is_contiguous(
                memory_format=torch.channels_last):
            return super().forward(x)
        y = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)
        return y.permute(0, 3, 1, 2)


def pointwise(cin: int, cout: int, impl: str = "fast") -> nn.Conv2d:
    """A 1x1 convolution layer: the released code's ``nn.Conv2d`` for ``impl='reference'``, else the matmul form."""
    return nn.Conv2d(cin, cout, 1) if impl == "reference" else PointwiseConv(cin, cout)
