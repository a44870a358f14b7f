"""Convolutions run as the matmuls they are, where oneDNN's convolution kernels are slow: on small maps.

A 1x1 convolution of an NHWC-stored map is ``(B*H*W, C_in) @ (C_in, C_out)``. Called as a convolution, oneDNN
runs it well on large maps but poorly on small ones: on Hire-MLP's 2x2 stage-4 maps (batch 64, 512 -> 2048) its
forward + backward ran at 52 GFLOP/s on one core here, against 184 GFLOP/s for the same product as ``F.linear``.
Likewise the 3x3 stride-2 downsampling into the 2x2 stage-4 map: 26 ms as a convolution, 11 ms as an im2col
matmul (batch 64, both directions, 2 cores). The whole-model effect is in ``benchmarks/bench.py``. Weights keep
the Conv2d shape, so state dicts and the released checkpoints' layout are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _channels_last(x: Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last)


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
        if x.shape[0] * x.shape[2] * x.shape[3] > self.max_linear_rows or not _channels_last(x):
            return super().forward(x)
        y = F.linear(x.permute(0, 2, 3, 1), self.weight.flatten(1), self.bias)
        return y.permute(0, 3, 1, 2)


class PatchConv(nn.Conv2d):
    """``nn.Conv2d(cin, cout, kernel, stride, padding)`` that runs as im2col + ``F.linear`` into tiny maps.

    The patches are cut from the NHWC view (pad, two ``unfold``s, one copy) in the weight's ``(c, kh, kw)``
    order. Only output maps of at most ``max_out_pixels`` take this path: into a 4x4 map the convolution was
    already faster here, since the im2col copy and its backward grow with the map.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, padding: int,
                 max_out_pixels: int = 4) -> None:
        super().__init__(cin, cout, kernel, stride, padding)
        self.max_out_pixels = max_out_pixels

    def forward(self, x: Tensor) -> Tensor:
        (k, _), (s, _), (p, _) = self.kernel_size, self.stride, self.padding
        out_h, out_w = ((n + 2 * p - k) // s + 1 for n in x.shape[2:])
        if out_h * out_w > self.max_out_pixels or not _channels_last(x):
            return super().forward(x)
        t = F.pad(x.permute(0, 2, 3, 1), (0, 0, p, p, p, p)) if p else x.permute(0, 2, 3, 1)
        patches = t.unfold(1, k, s).unfold(2, k, s)  # (B, out_h, out_w, C, k, k)
        y = F.linear(patches.reshape(x.shape[0], out_h, out_w, -1), self.weight.flatten(1), self.bias)
        return y.permute(0, 3, 1, 2)


def pointwise(cin: int, cout: int, impl: str = "fast", bias: bool = True) -> nn.Conv2d:
    """A 1x1 convolution layer: the released code's ``nn.Conv2d`` for ``impl='reference'``, else the matmul form."""
    return nn.Conv2d(cin, cout, 1, bias=bias) if impl == "reference" else PointwiseConv(cin, cout, bias=bias)
