"""The Hire Module: height, width and channel branches, fused by split attention (or summed), then projected."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .config import BRANCHES, CROSS_REGION, FUSIONS, IMPLS, PADDINGS, parse_branches
from .cross_region import CrossRegionShift, CrossRegionShuffle, crop_end, pad_amount, pad_axis, padding_problem
from .inner_region import InnerRegionMLP
from .matmul_conv import pointwise


def _pair(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"{name}={value!r} is not allowed: one int or a pair (h, w) of ints")
    return pair  # type: ignore[return-value]


def _check_choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed: one of {', '.join(allowed)}")


class SpatialBranch(nn.Module):
    """One of the h/w branches: cross-region step, pad, inner-region MLP, crop, undo the step.

    Order as released: shift (roll +s) on the true map, pad the end of this branch's axis only, mix regions,
    crop back to the first ``n`` rows/columns, roll -s. With ``cross_region='shuffle'`` the map is padded first and
    shuffled on the padded axis, and unshuffled before the crop.
    """

    def __init__(self, dim: int, axis: str, region: int, step: int, padding: str, cross_region: str,
                 impl: str = "fast", where: str = "") -> None:
        super().__init__()
        self.axis, self.region, self.step, self.padding, self.impl, self.where = (
            axis, region, step, padding, impl, where)
        self.dim_index = 2 if axis == "h" else 3
        self.mlp = InnerRegionMLP(dim, region, axis)
        self.shift = CrossRegionShift(step, self.dim_index) if cross_region == "shift" and step else None
        self.shuffle = (CrossRegionShuffle(region, self.dim_index)
                        if cross_region == "shuffle" and step and region > 1 else None)

    def extra_repr(self) -> str:
        cross = "shift" if self.shift else "shuffle" if self.shuffle else "none"
        return (f"axis={self.axis}, region={self.region}, step={self.step}, cross_region={cross}, "
                f"padding={self.padding}, impl={self.impl}")

    def forward(self, x: Tensor) -> Tensor:
        n = x.shape[self.dim_index]
        problem = padding_problem(n, self.region, self.padding)
        if problem:
            side = "height" if self.axis == "h" else "width"
            raise ValueError(f"{self.where}{side} branch: map {side} {n} with region {self.region}, "
                             f"padding={self.padding!r}: {problem}; use another padding or region size")
        if self.impl == "reference":
            x = x.clone()
        if self.shift is not None:
            x = self.shift.apply(x)
        x = pad_axis(x, self.dim_index, pad_amount(n, self.region), self.padding)
        if self.shuffle is not None:
            x = self.shuffle.apply(x)
        y = self.mlp.reference(x) if self.impl == "reference" else self.mlp(x)
        if self.shuffle is not None:
            y = self.shuffle.undo(y)
        y = crop_end(y, self.dim_index, n)
        if self.shift is not None:
            y = self.shift.undo(y)
        return y


class SplitAttention(nn.Module):
    """The released code's fusion: a per-channel softmax over the branches, computed from their pooled sum."""

    def __init__(self, dim: int, n_branches: int, impl: str = "fast") -> None:
        super().__init__()
        self.n, self.impl = n_branches, impl
        self.fc1 = pointwise(dim, dim // 4, impl)
        self.act = nn.GELU()
        self.fc2 = pointwise(dim // 4, dim * n_branches, impl)

    def forward(self, outs: list[Tensor]) -> Tensor:
        b, c = outs[0].shape[:2]
        if self.impl == "reference":  # as released: average-pool the summed maps, weight, sum
            pooled = sum(outs).mean((2, 3), keepdim=True)
            weights = self.fc2(self.act(self.fc1(pooled))).reshape(b, c, self.n).permute(2, 0, 1).softmax(0)
            return sum(out * weights[k, :, :, None, None] for k, out in enumerate(outs))
        # Same arithmetic, fewer full-size passes: per-branch sums, then one division of the small result
        # (autograd's mean backward would materialise a full-size map per branch); softmax over a middle dim runs
        # vectorised along the channels; the weighted sum has a backward of its own (_WeightedSum).
        pooled = sum(out.sum((2, 3), keepdim=True) for out in outs) / (outs[0].shape[2] * outs[0].shape[3])
        weights = self.fc2(self.act(self.fc1(pooled))).reshape(b, c, self.n).transpose(1, 2).softmax(1)
        # CUDA autocast runs softmax in float32: cast back, or every full-size product below is float32 too
        weights = weights.transpose(0, 1)[..., None, None].to(outs[0].dtype)
        if torch.compiler.is_compiling():  # inductor fuses the chain itself (and crashed on the Function, AVX-512)
            return _weighted_sum(weights, outs)
        return _WeightedSum.apply(weights, *outs)


def _weighted_sum(weights: Tensor, outs: Sequence[Tensor]) -> Tensor:
    """``sum_k outs[k] * weights[k]``: one mul, then one in-place addcmul per further branch."""
    fused = outs[0] * weights[0]
    for k in range(1, len(outs)):
        fused.addcmul_(outs[k], weights[k])
    return fused


class _WeightedSum(torch.autograd.Function):
    """``sum_k outs[k] * weights[k]`` (a weight per sample and channel), computed and differentiated as autograd
    would a mul followed by addcmuls, to the bit, minus the full-size passes autograd adds: one map per branch is
    written going forward (not one per partial sum) and addcmul's backward no longer scales each branch by its
    ``value=1`` before multiplying (a full-size copy per branch)."""

    @staticmethod
    def forward(ctx, weights: Tensor, *outs: Tensor) -> Tensor:
        ctx.save_for_backward(weights, *outs)
        return _weighted_sum(weights, outs)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, ...]:
        weights, *outs = ctx.saved_tensors
        grad_weights = torch.stack([(grad * out).sum((2, 3), keepdim=True) for out in outs])
        return (grad_weights, *(grad * weights[k] for k in range(len(outs))))


class HireModule(nn.Module):
    """Hire-MLP's token mixer, NCHW in and out.

    Args:
        dim: channels.
        region_size: inner-region size ``(h, w)`` (or one int for both).
        shift: cross-region step ``(s_h, s_w)`` (or one int); 0 means this block does not communicate across
            regions. With ``cross_region='shuffle'`` a nonzero step means "shuffle here".
        padding: how a map not divisible by the region size is padded: zero, reflect, replicate or circular.
        cross_region: ``shift`` (released code), ``shuffle`` (paper's ShuffleNet manner) or ``none``.
        branches: which of ``h``, ``w``, ``c`` run; a branch that is off owns no parameters.
        fusion: ``reweight`` (released split attention) or ``sum`` (paper text). With one branch there is
            nothing to weigh, so no reweighting parameters exist.
        inner_region: False turns the h/w branches into per-pixel MLPs (region size 1).
        impl: ``fast`` or ``reference`` (the released code's reshape path, kept as the test oracle).
        where: a label such as ``"stage 3 block 1: "`` put in front of error messages.
    """

    def __init__(self, dim: int, region_size: int | Sequence[int] = (4, 4), shift: int | Sequence[int] = (0, 0),
                 padding: str = "circular", cross_region: str = "shift", branches: Sequence[str] | str = BRANCHES,
                 fusion: str = "reweight", inner_region: bool = True, impl: str = "fast", where: str = "") -> None:
        super().__init__()
        region = _pair("region_size", region_size)
        step = _pair("shift", shift)
        if min(region) < 1 or min(step) < 0:
            raise ValueError(f"region_size={region_size!r}, shift={shift!r} are not allowed: "
                             "region sides >= 1 and steps >= 0")
        _check_choice("padding", padding, PADDINGS)
        _check_choice("cross_region", cross_region, CROSS_REGION)
        _check_choice("fusion", fusion, FUSIONS)
        _check_choice("impl", impl, IMPLS)
        self.branches = parse_branches(branches)
        if not inner_region:
            region = (1, 1)
        self.region_size, self.shift_step = region, step
        self.h = (SpatialBranch(dim, "h", region[0], step[0], padding, cross_region, impl, where)
                  if "h" in self.branches else None)
        self.w = (SpatialBranch(dim, "w", region[1], step[1], padding, cross_region, impl, where)
                  if "w" in self.branches else None)
        self.c = pointwise(dim, dim, impl) if "c" in self.branches else None
        self.reweight = (SplitAttention(dim, len(self.branches), impl)
                         if fusion == "reweight" and len(self.branches) > 1 else None)
        self.proj = pointwise(dim, dim, impl)

    def branch_outputs(self, x: Tensor) -> dict[str, Tensor]:
        """Each active branch's output, aligned with the input (rearrangement undone), before fusion."""
        outs: dict[str, Tensor] = {}
        if self.h is not None:
            outs["h"] = self.h(x)
        if self.w is not None:
            outs["w"] = self.w(x)
        if self.c is not None:
            outs["c"] = self.c(x)
        return outs

    def forward(self, x: Tensor) -> Tensor:
        outs = list(self.branch_outputs(x).values())
        if self.reweight is not None:
            fused = self.reweight(outs)
        else:
            fused = outs[0]
            for out in outs[1:]:
                fused = fused + out
        return self.proj(fused)
