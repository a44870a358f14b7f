"""The inner-region MLP: mixes the ``p`` adjacent rows (height branch) or columns (width branch) of each region.

The released code rearranges ``(B, C, G*p, W)`` into ``(B, C*p, G, W)`` (channel index ``c*p + i``), applies
conv1x1 ``C*p -> C/2`` (no bias), BatchNorm, ReLU, conv1x1 ``C/2 -> C*p`` (bias) and rearranges back.

The same arithmetic without materialising the rearranged tensor: the first conv1x1 is a convolution with a
``(p, 1)`` kernel and stride ``(p, 1)`` on the padded map, and the second is the matching transposed convolution.
On a channels-last map the two convolutions become two matmuls over NHWC views (``forward_channels_last``),
which the BLAS runs faster than oneDNN runs the strided convolutions on small maps (``benchmarks/bench.py``).
Weights are stored in the convolution layout; ``reference`` re-views them as the released code's 1x1 weights,
so all paths share parameters and a test can hold one against the other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class InnerRegionMLP(nn.Module):
    """Bottleneck MLP over the ``region`` rows (``axis='h'``) or columns (``axis='w'``) of every region.

    Args:
        dim: channels C.
        region: rows/columns per region ``p``; 1 makes it a per-pixel MLP ("w/o inner-region rearrangement").
        axis: ``'h'`` or ``'w'``.
    """

    def __init__(self, dim: int, region: int, axis: str) -> None:
        super().__init__()
        self.dim, self.region, self.axis = dim, region, axis
        self.hidden = dim // 2
        self.kernel = (region, 1) if axis == "h" else (1, region)
        self.reduce = nn.Parameter(torch.empty(self.hidden, dim, *self.kernel))
        self.norm = nn.BatchNorm2d(self.hidden)
        self.act = nn.ReLU(inplace=True)
        self.expand = nn.Parameter(torch.empty(self.hidden, dim, *self.kernel))
        self.expand_bias = nn.Parameter(torch.zeros(dim, region))
        nn.init.trunc_normal_(self.reduce, std=0.02)
        nn.init.trunc_normal_(self.expand, std=0.02)

    def _bias_view(self) -> Tensor:
        shape = (1, self.dim, 1, self.region, 1) if self.axis == "h" else (1, self.dim, 1, 1, self.region)
        return self.expand_bias.view(shape)

    def forward(self, x: Tensor) -> Tensor:
        """``x``: padded NCHW whose branch axis is a multiple of ``region``."""
        if x.is_contiguous(memory_format=torch.channels_last):
            return self.forward_channels_last(x)
        y = self.act(self.norm(F.conv2d(x, self.reduce, stride=self.kernel)))
        z = F.conv_transpose2d(y, self.expand, stride=self.kernel)
        dim = 2 if self.axis == "h" else 3
        z.unflatten(dim, (-1, self.region)).add_(self._bias_view())
        return z

    def forward_channels_last(self, x: Tensor) -> Tensor:
        """The same arithmetic as two matmuls over NHWC views, for maps stored channels-last.

        A region's ``p`` pixels times ``C`` channels is one row of ``p*C`` numbers: a free view for the width
        branch, one transpose copy each way for the height branch. The (c, i)-ordered weights are re-viewed in the
        view's (i, c) order and the position bias rides in the second matmul.
        """
        b, c, h, w = x.shape
        p = self.region
        t = x.permute(0, 2, 3, 1)
        if self.axis == "w":
            t = t.reshape(b, h, w // p, p * c)
        else:
            t = t.reshape(b, h // p, p, w, c).transpose(2, 3).reshape(b, h // p, w, p * c)
        w_reduce = self.reduce.flatten(2).transpose(1, 2).reshape(self.hidden, p * c)
        w_expand = self.expand.flatten(2).permute(2, 1, 0).reshape(p * c, self.hidden)
        bias = self.expand_bias.t().reshape(p * c)
        y = F.linear(t, w_reduce).permute(0, 3, 1, 2)
        y = self.act(self.norm(y)).permute(0, 2, 3, 1)
        z = F.linear(y, w_expand, bias)
        if self.axis == "w":
            return z.reshape(b, h, w, c).permute(0, 3, 1, 2)
        z = z.reshape(b, h // p, w, p, c).transpose(2, 3).reshape(b, h, w, c)
        return z.permute(0, 3, 1, 2)

    def reference(self, x: Tensor) -> Tensor:
        """The released code's path: reshape/permute into channels, two 1x1 convs, permute back."""
        b, c, h, w = x.shape
        p = self.region
        if self.axis == "h":
            t = x.reshape(b, c, h // p, p, w).permute(0, 1, 3, 2, 4).reshape(b, c * p, h // p, w)
            w_expand = self.expand.permute(1, 2, 0, 3)
        else:
            t = x.reshape(b, c, h, w // p, p).permute(0, 1, 4, 2, 3).reshape(b, c * p, h, w // p)
            w_expand = self.expand.permute(1, 3, 0, 2)
        w_reduce = self.reduce.reshape(self.hidden, c * p, 1, 1)
        w_expand = w_expand.reshape(c * p, self.hidden, 1, 1)
        y = self.act(self.norm(F.conv2d(t, w_reduce)))
        z = F.conv2d(y, w_expand, self.expand_bias.reshape(c * p))
        if self.axis == "h":
            return z.reshape(b, c, p, h // p, w).permute(0, 1, 3, 2, 4).reshape(b, c, h, w)
        return z.reshape(b, c, p, h, w // p).permute(0, 1, 3, 4, 2).reshape(b, c, h, w)
