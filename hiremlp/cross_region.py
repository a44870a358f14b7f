"""Cross-region communication and the padding that makes a map divisible into regions.

Both act on one axis of an NCHW tensor (``dim=2`` for the height branch, ``dim=3`` for the width branch) and both
are undone after the branch, so the branch output lines up with its input pixel for pixel.

Off the CPU the roll and the reflect/replicate end pads are copies of ``narrow`` / ``flip`` / ``expand`` pieces into
one tensor of the input's layout, with backward passes of the same kind: CUDA's ``torch.roll`` and its
reflection/replication pads return NCHW for a channels-last input, and those pads' backward accumulates with atomic
adds (run-to-run different gradients; ``torch.use_deterministic_algorithms`` refuses them). They give the same
values and gradients as ``torch.roll`` / ``F.pad``. The CPU keeps ``torch.roll`` and ``F.pad``, whose CPU kernels
keep the layout and are deterministic, so CPU results stay bit for bit what they were (the replicate backward
here sums a pad's rows in another order than ``F.pad``'s CPU kernel).
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


def torch_kernels_fit(x: Tensor) -> bool:
    """Whether ``torch.roll`` and the reflect/replicate ``F.pad`` keep ``x``'s layout and a deterministic
    backward: on the CPU only."""
    return x.device.type == "cpu"


def _end_pad(dim: int, pad: int) -> tuple[int, int, int, int]:
    """``F.pad`` spec adding ``pad`` rows (``dim=2``) or columns (``dim=3``) at the end of that axis only."""
    return (0, 0, 0, pad) if dim == 2 else (0, pad, 0, 0)


def pad_axis(x: Tensor, dim: int, pad: int, mode: str) -> Tensor:
    """Pad ``pad`` rows/columns at the end (bottom or right) of axis ``dim`` only."""
    if pad == 0:
        return x
    if mode == "circular":  # F.pad's circular mode returns NCHW even for a channels-last input; cat keeps it
        return torch.cat([x, x.narrow(dim, 0, pad)], dim)
    if mode in ("reflect", "replicate") and not torch_kernels_fit(x):
        return _EndPad.apply(x, dim, pad, mode)
    return F.pad(x, _end_pad(dim, pad), mode=_TORCH_PAD_MODE[mode])


def _assemble(pieces: list[Tensor], dim: int, like: Tensor) -> Tensor:
    """The pieces laid end to end along ``dim`` in a new tensor with ``like``'s memory format (``torch.cat``
    takes an expanded piece's zero strides as a reason to fall back to NCHW)."""
    shape = list(like.shape)
    shape[dim] = sum(p.shape[dim] for p in pieces)
    fmt = torch.channels_last if _is_nhwc(like) else torch.contiguous_format
    out = torch.empty(shape, dtype=like.dtype, device=like.device, memory_format=fmt)
    start = 0
    for p in pieces:
        out.narrow(dim, start, p.shape[dim]).copy_(p)
        start += p.shape[dim]
    return out


def _is_nhwc(x: Tensor) -> bool:
    """Channels-last storage order, also for a view (a crop is contiguous in neither format)."""
    if x.dim() != 4 or x.is_contiguous():
        return False
    s = x.stride()
    return s[1] < s[3] <= s[2] <= s[0]


def end_pad_copy(x: Tensor, dim: int, pad: int, mode: str) -> Tensor:
    """``F.pad(x, mode=reflect|replicate)`` at the end of axis ``dim`` as one copy of ``x`` and its mirrored or
    repeated last rows, in ``x``'s layout (no autograd of its own: :func:`pad_axis` gives it the backward)."""
    n = x.shape[dim]
    if mode == "reflect":  # rows n-2, n-3, ..., n-1-pad
        extra = x.narrow(dim, n - 1 - pad, pad).flip(dim)
    else:
        size = list(x.shape)
        size[dim] = pad
        extra = x.narrow(dim, n - 1, 1).expand(size)
    return _assemble([x, extra], dim, x)


def end_pad_grad(grad: Tensor, dim: int, pad: int, mode: str) -> Tensor:
    """The gradient of :func:`end_pad_copy` for its input: each pad row's gradient added to the row it copies,
    with plain adds and a sum (no atomics: the same bits on every run)."""
    n = grad.shape[dim] - pad
    body, tail = grad.narrow(dim, 0, n), grad.narrow(dim, n, pad)
    if mode == "reflect":  # pad row k copies row n-2-k
        mirrored = body.narrow(dim, n - 1 - pad, pad) + tail.flip(dim)
        pieces = [body.narrow(dim, 0, n - 1 - pad), mirrored, body.narrow(dim, n - 1, 1)]
    else:
        pieces = [body.narrow(dim, 0, n - 1), body.narrow(dim, n - 1, 1) + tail.sum(dim, keepdim=True)]
    return _assemble(pieces, dim, grad)


class _EndPad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, dim: int, pad: int, mode: str) -> Tensor:
        ctx.dim, ctx.pad, ctx.mode = dim, pad, mode
        return end_pad_copy(x, dim, pad, mode)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None, None]:
        return end_pad_grad(grad, ctx.dim, ctx.pad, ctx.mode), None, None, None


def roll_copy(x: Tensor, step: int, dim: int) -> Tensor:
    """``torch.roll(x, step, dim)`` as one copy of two ``narrow`` pieces, in ``x``'s layout."""
    n = x.shape[dim]
    step %= n
    if step == 0:
        return x.clone()
    return _assemble([x.narrow(dim, n - step, step), x.narrow(dim, 0, n - step)], dim, x)


class _Roll(torch.autograd.Function):
    """A roll whose backward is the opposite roll (a copy, as ``torch.roll``'s own backward)."""

    @staticmethod
    def forward(ctx, x: Tensor, step: int, dim: int) -> Tensor:
        ctx.step, ctx.dim = step, dim
        return roll_copy(x, step, dim)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:
        return roll_copy(grad, -ctx.step, ctx.dim), None, None


def roll(x: Tensor, step: int, dim: int) -> Tensor:
    """``torch.roll`` on the CPU (which keeps a channels-last layout); elsewhere :func:`roll_copy`, which does."""
    return torch.roll(x, step, dim) if torch_kernels_fit(x) else _Roll.apply(x, step, dim)


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
        return roll(x, self.step, self.dim) if self.step else x

    def undo(self, x: Tensor) -> Tensor:
        return roll(x, -self.step, self.dim) if self.step else x


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
