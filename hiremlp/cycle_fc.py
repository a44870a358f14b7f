"""CycleMLP's token mixer (Chen et al., arXiv 2107.10224) in the Hire module's place, without deformable conv.

The released code (ShoufaChen/CycleMLP, ``cycle_mlp.py``) writes Cycle FC as torchvision's ``deform_conv2d``
with a 1x1 kernel, one offset group per input channel and a fixed offset buffer: input channel c is read at
offset ((c + k // 2) mod k) - k // 2 along one axis (0, +1, -1, 0, ... for k = 3). With integer offsets the
bilinear sampling reads exactly one pixel, and a sample outside the map is zero, so Cycle FC *is* a per-channel
shift with zero fill followed by a 1x1 convolution: that is how it is written here, and it is exact, not an
approximation (the offsets are a buffer, never learned). Note the released names: ``sfc_h`` has kernel (1, 3),
so it moves along the *width*; ``sfc_w`` (3, 1) along the height; both keep their names and order here.

The mixer as released (``CycleMLP``): ``sfc_h`` and ``sfc_w`` (Cycle FCs with bias), a channel linear map without
bias, split attention over the three (as ViP and Hire-MLP's released code), a linear projection with bias.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from .hire_module import SplitAttention
from .matmul_conv import pointwise


def cycle_offsets(channels: int, kernel: int) -> list[int]:
    """The released ``gen_offset``: channel c reads position + ((c + kernel // 2) % kernel - kernel // 2)."""
    return [(c + kernel // 2) % kernel - kernel // 2 for c in range(channels)]


def cycle_shift(x: Tensor, kernel: int, dim: int) -> Tensor:
    """Channel c of ``x`` read at its cycle offset along ``dim`` (2: height, 3: width), zeros beyond the map."""
    k = kernel // 2
    if k == 0:
        return x
    n = x.shape[dim]
    padded = F.pad(x, (0, 0, k, k) if dim == 2 else (k, k))
    out = x.new_empty(x.shape)
    for phase, offset in enumerate(cycle_offsets(min(kernel, x.shape[1]), kernel)):  # channels phase mod kernel
        out[:, phase::kernel] = padded[:, phase::kernel].narrow(dim, k + offset, n)
    return out


class CycleFC(nn.Module):
    """Cycle FC with a ``(1, kernel)`` (width) or ``(kernel, 1)`` (height) stepsize: cycle shift, then 1x1 conv."""

    def __init__(self, dim: int, kernel_size: tuple[int, int], impl: str = "fast") -> None:
        super().__init__()
        if 1 not in kernel_size:
            raise ValueError(f"kernel_size={kernel_size!r} is not allowed: (1, k) or (k, 1), as released")
        self.kernel_size = tuple(kernel_size)
        self.axis = 3 if kernel_size[0] == 1 else 2
        self.kernel = kernel_size[1] if self.axis == 3 else kernel_size[0]
        self.fc = pointwise(dim, dim, impl)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}"

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(cycle_shift(x, self.kernel, self.axis))


class CycleMixer(nn.Module):
    """The released ``CycleMLP`` token mixer, NCHW in and out."""

    def __init__(self, dim: int, impl: str = "fast") -> None:
        super().__init__()
        self.in_channels = dim
        self.mlp_c = pointwise(dim, dim, impl, bias=False)
        self.sfc_h = CycleFC(dim, (1, 3), impl)
        self.sfc_w = CycleFC(dim, (3, 1), impl)
        self.reweight = SplitAttention(dim, 3, impl)
        self.proj = pointwise(dim, dim, impl)

    def branch_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """``sfc_h`` (along the width), ``sfc_w`` (along the height) and the channel branch, before fusion."""
        return {"sfc_h": self.sfc_h(x), "sfc_w": self.sfc_w(x), "c": self.mlp_c(x)}

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(self.reweight(list(self.branch_outputs(x).values())))

