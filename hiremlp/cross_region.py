"""Cross-region communication and the padding that makes a map divisible into regions.

Both act on one axis of an NCHW tensor (``dim=2`` for the height branch, ``dim=3`` for the width branch) and both
are undone after the branch, so the branch output lines up with its input pixel for pixel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_TORCH_PAD_MODE = {"zero": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}


def pad_amount(size: int, region: int) -> int:
    """Rows (or columns) to add so ``size`` becomes a multiple of ``region``; 0 when it already is."""
    return (region - size % region) % region


def padding_problem(size: int, region: int, mode: str) -> str | None:
    """Why ``mode`` cannot pad a ``size``-long axis to a multiple of ``region``, or None when it can."""
    pad = pad_amount(size, region)
    if mode == "reflect" and pad >= size:
        return f"reflect padding needs the pad ({pad}) smaller than the map ({size})"
    if mode == "circular" and pad > size:
        return f"circular padding needs the pad ({pad}) no larger than the map ({size})"
    return None


def _end_pad(dim: int, pad: int) -> tuple[int, int, int, int]:
    """``F.pad`` spec adding ``pad`` rows (``dim=2``) or columns (``dim=3``) at the end of that axis only."""
    return (0, 0, 0, pad) if dim == 2 else (0, pad, 0, 0)


def pad_axis(x: Tensor, dim: int, pad: int, mode: str) -> Tensor:
    """Pad ``pad`` rows/columns at the end (bottom or right) of axis ``dim`` only."""
    if pad == 0:
        return x
    if mode == "circular":  # F.pad's circular mode returns NCHW even for a channels-last input; cat keeps it
        return torch.cat([x, x.narrow(dim, 0, pad)], dim)
    return F.pad(x, _end_pad(dim, pad), mode=_TORCH_PAD_MODE[mode])


class _CropEnd(torch.autograd.Function):
    """``x.narrow(dim, 0, n)`` whose backward zero-pads the gradient with ``F.pad``, which keeps a channels-last
    layout; autograd's own slice backward returns NCHW and sends the whole branch's backward down slower paths."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int, n: int) -> Tensor:
        ctx.dim, ctx.pad = dim, x.shape[dim] - n
        return x.narrow(dim, 0, n)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        return F.pad(grad, _end_pad(ctx.dim, ctx.pad)), None, None


def crop_end(x: Tensor, dim: int, n: int) -> Tensor:
    """The first ``n`` rows (``dim=2``) or columns (``dim=3``): undoes :func:`pad_axis`."""
    if x.shape[dim] == n:
        return x
    return _CropEnd.apply(x, dim, n)


class CrossRegionShift:
    """The released code's shifted manner: roll the axis by ``+step`` before the branch, by ``-step`` after.

    A region of ``p`` adjacent rows then holds rows that belonged to two neighbouring regions of the unshifted
    map, which is how information crosses region borders.
    """

    def __init__(self, step: int, dim: int) -> None:
        self.step, self.dim = step, dim

    def apply(self, x: Tensor) -> Tensor:
        return torch.roll(x, self.step, self.dim) if self.step else x

    def undo(self, x: Tensor) -> Tensor:
        return torch.roll(x, -self.step, self.dim) if self.step else x


def shuffle_order(length: int, region: int) -> Tensor:
    """ShuffleNet-style order of a (padded) axis of ``G = length / region`` regions of ``region`` rows.

    The rows are viewed as a ``(G, region)`` grid and read out transposed, exactly as ShuffleNet's channel shuffle
    reads its ``(groups, channels)`` grid: new position ``j * G + g`` holds old row ``g * region + j``. The
    contiguous regions of the new order then hold the ``j``-th rows of ``region`` different old regions.
    """
    groups = length // region
    return torch.arange(length).view(groups, region).t().reshape(-1)


class CrossRegionShuffle:
    """The paper's ShuffleNet manner (Table 7): interleave rows of different regions before the branch.

    It acts on the padded axis (the grid needs a length divisible by the region size) and is inverted before the
    padding is cropped. It replaces the shift on exactly the blocks that the schedule would shift.
    """

    def __init__(self, region: int, dim: int) -> None:
        self.region, self.dim = region, dim
        self._orders: dict[tuple[int, torch.device], tuple[Tensor, Tensor]] = {}

    def _order(self, length: int, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (length, device)
        if key not in self._orders:
            order = shuffle_order(length, self.region)
            self._orders[key] = (order.to(device), torch.argsort(order).to(device))
        return self._orders[key]

    def apply(self, x: Tensor) -> Tensor:
        order, inverse = self._order(x.shape[self.dim], x.device)
        return _Reorder.apply(x, self.dim, order, inverse)

    def undo(self, x: Tensor) -> Tensor:
        order, inverse = self._order(x.shape[self.dim], x.device)
        return _Reorder.apply(x, self.dim, inverse, order)


class _Reorder(torch.autograd.Function):
    """Rows in a new ``order`` along ``dim``; the gradient goes back through the ``inverse`` order (a gather, not
    autograd's scatter-add), and both directions keep a channels-last input channels-last."""

    @staticmethod
    def forward(ctx, x: Tensor, dim: int, order: Tensor, inverse: Tensor) -> Tensor:
        ctx.dim, ctx.inverse = dim, inverse
        return _index_select_keep_layout(x, dim, order)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        return _index_select_keep_layout(grad, ctx.dim, ctx.inverse), None, None, None


def _index_select_keep_layout(x: Tensor, dim: int, index: Tensor) -> Tensor:
    """``index_select`` returns NCHW storage; on a channels-last map select on its NHWC view instead."""
    if x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return x.permute(0, 2, 3, 1).index_select(dim - 1, index).permute(0, 3, 1, 2)
    return x.index_select(dim, index)
