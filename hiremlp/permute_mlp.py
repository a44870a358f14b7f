"""ViP's Weighted Permute-MLP (Hou et al., arXiv 2106.12368) as a token mixer in the Hire module's place.

Written from the released code (houqb/VisionPermutator, ``models/vip.py``, ``WeightedPermuteMLP``): the channels
are cut into contiguous segments of S channels; the height branch mixes, for each segment and column, the H x S
values of that column with one linear map (no bias), the width branch likewise along the rows, the channel branch
is a linear map over the channels (no bias); split attention (the pooled sum through an MLP C -> C/4 -> 3C, a
softmax over the three branches per channel) weighs them, and a linear projection (with bias) follows.

The released model sizes these weights by the map: its ``segment_dim`` (the number of segments) equals the map
side, so that the mixed vector H x S is C long and every weight is C x C. A map side that does not divide the
channels, or one larger than them (this network's 32 x 32 stage-1 map of 16 channels in the ``smoke`` preset),
has no released form; here S is then the largest divisor of C not above max(1, C // H) and the weights are
(H S) x (H S), which is the released layer whenever H divides C. The layer is therefore tied to one map size
(``HireMLPConfig.vip_image_size``): another input size is an error naming the stage and both sizes.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .hire_module import SplitAttention
from .matmul_conv import pointwise


def segment_channels(dim: int, side: int) -> int:
    """S: channels per segment for a map side ``side`` (C // side when ``side`` divides C, as released)."""
    target = max(1, dim // side)
    return max(s for s in range(1, target + 1) if dim % s == 0)


class PermuteMLPMixer(nn.Module):
    """Height, width and channel branches over channel segments, fused by split attention, NCHW in and out.

    Args:
        dim: channels.
        map_size: the ``(H, W)`` the height and width weights are sized for.
        where: a label such as ``"stage 3 block 1: "`` put in front of error messages.
    """

    def __init__(self, dim: int, map_size: tuple[int, int], impl: str = "fast", where: str = "") -> None:
        super().__init__()
        self.in_channels, self.map_size, self.where = dim, tuple(map_size), where
        h, w = self.map_size
        self.seg_h, self.seg_w = segment_channels(dim, h), segment_channels(dim, w)
        self.mlp_h = nn.Linear(h * self.seg_h, h * self.seg_h, bias=False)
        self.mlp_w = nn.Linear(w * self.seg_w, w * self.seg_w, bias=False)
        self.mlp_c = pointwise(dim, dim, impl, bias=False)
        self.reweight = SplitAttention(dim, 3, impl)
        self.proj = pointwise(dim, dim, impl)

    def extra_repr(self) -> str:
        return f"dim={self.in_channels}, map_size={self.map_size}, segment_channels=({self.seg_h}, {self.seg_w})"

    def _check(self, x: Tensor) -> None:
        if tuple(x.shape[2:]) != self.map_size:
            h, w = self.map_size
            raise ValueError(f"{self.where}vip: map {x.shape[2]}x{x.shape[3]}, but its height/width weights are "
                             f"sized for {h}x{w} (set vip_image_size to the input size)")

    def _height(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        s = self.seg_h
        t = x.reshape(b, c // s, s, h, w).permute(0, 1, 4, 3, 2).reshape(b, c // s, w, h * s)
        t = F.linear(t, self.mlp_h.weight).reshape(b, c // s, w, h, s)
        return t.permute(0, 1, 4, 3, 2).reshape(b, c, h, w)

    def _width(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        s = self.seg_w
        t = x.reshape(b, c // s, s, h, w).permute(0, 3, 1, 4, 2).reshape(b, h, c // s, w * s)
        t = F.linear(t, self.mlp_w.weight).reshape(b, h, c // s, w, s)
        return t.permute(0, 2, 4, 1, 3).reshape(b, c, h, w)

    def branch_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """Each branch's output, aligned with the input, before fusion."""
        self._check(x)
        return {"h": self._height(x), "w": self._width(x), "c": self.mlp_c(x)}

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.reweight(list(self.branch_outputs(x).values())))
