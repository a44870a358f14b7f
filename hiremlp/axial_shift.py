"""AS-MLP's axial shift block (Lian et al., arXiv 2107.08391) as a token mixer in the Hire module's place.

Written from the released code (svip-lab/AS-MLP, ``models/as_mlp.py``, ``AxialShift``; its shift is a CUDA kernel,
``models/shift_cuda.py``, whose pure-torch twin is kept there too): 1x1 conv, GroupNorm(1), GELU; then the
channels, cut into ``shift_size`` groups of ``ceil(C / shift_size)``, are shifted by -k..k (k = shift_size // 2)
along the width in one branch and along the height in the other, zeros entering at the borders; a 1x1 conv and
GELU per branch, their sum, GroupNorm(1), a 1x1 conv. Group g at output position i reads input position
i + k - g (the kernel's ``s = -(g - shift / 2)``). The in-block norms are the released GroupNorm(1) (AS-MLP's
``MyNorm``); the block around the mixer keeps this network's norms, as every mixer does.

GroupNorm(1) normalises each sample over all channels and pixels, so through its statistics every output pixel
depends a little on every input pixel; the mixing itself (what the receptive-field tests measure, with those
statistics held fixed) is the cross of 2k + 1 pixels along each axis that the paper draws.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .matmul_conv import pointwise


def axial_shift(x: Tensor, shift_size: int, dim: int) -> Tensor:
    """Channel group g of ``x`` moved by g - shift_size // 2 along ``dim`` (2: height, 3: width), zero-filled."""
    k = shift_size // 2
    if k == 0:
        return x
    n = x.shape[dim]
    size = math.ceil(x.shape[1] / shift_size)
    pad = (0, 0, k, k) if dim == 2 else (k, k)
    padded = F.pad(x, pad)
    groups = torch.split(padded, size, dim=1)
    return torch.cat([g.narrow(dim, 2 * k - i, n) for i, g in enumerate(groups)], dim=1)


class AxialShiftMixer(nn.Module):
    """The released ``AxialShift`` (bias on every 1x1 conv, ``as_bias=True``), NCHW in and out."""

    def __init__(self, dim: int, shift_size: int = 5, impl: str = "fast") -> None:
        super().__init__()
        if shift_size < 1 or shift_size % 2 == 0:
            raise ValueError(f"shift_size={shift_size!r} is not allowed: an odd integer >= 1")
        self.in_channels, self.shift_size = dim, shift_size
        self.conv1 = pointwise(dim, dim, impl)
        self.norm1 = nn.GroupNorm(1, dim)
        self.act = nn.GELU()
        self.conv2_w = pointwise(dim, dim, impl)  # released conv2_1: the branch shifted along the width
        self.conv2_h = pointwise(dim, dim, impl)  # released conv2_2: along the height
        self.norm2 = nn.GroupNorm(1, dim)
        self.conv3 = pointwise(dim, dim, impl)

    def extra_repr(self) -> str:
        return f"dim={self.in_channels}, shift_size={self.shift_size}"

    def branch_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """The width- and height-shifted branches after their conv and GELU, before the sum."""
        x = self.act(self.norm1(self.conv1(x)))
        return {"w": self.act(self.conv2_w(axial_shift(x, self.shift_size, 3))),
                "h": self.act(self.conv2_h(axial_shift(x, self.shift_size, 2)))}

    def forward(self, x: Tensor) -> Tensor:
        outs = self.branch_outputs(x)
        return self.conv3(self.norm2(outs["w"] + outs["h"]))
