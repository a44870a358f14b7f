"""Which input pixels each branch of one Hire Module reaches from one output pixel, measured by autograd.

The geometry (regions, shift, padding, shuffle) is not re-derived here: we backpropagate from one output
pixel of each branch (`HireModule.branch_outputs`) to the input and keep the pixels with a nonzero gradient.
The picture is therefore evidence about the code, not a drawing of what it is supposed to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

BRANCH_NAMES = {"h": "height branch", "w": "width branch", "c": "channel branch"}


def module_from_config(cfg: Any, stage: int = 0, block: int = 1) -> torch.nn.Module:
    """The Hire Module of block `block` of stage `stage` (0-based) in a model built from `cfg`."""
    import hiremlp

    model = hiremlp.build_model(cfg)
    return model.stages[stage].blocks[block].mixer


def receptive_fields(
    module: torch.nn.Module, size: tuple[int, int], pixel: tuple[int, int], samples: int = 32, seed: int = 0
) -> dict[str, np.ndarray]:
    """Boolean (H, W) mask per branch: the input pixels whose gradient at output `pixel` is nonzero.

    Works for any token mixer with `branch_outputs` (`hiremlp.mixers`). The module runs in eval mode (train-mode
    BatchNorm would couple every pixel through batch statistics), and a GroupNorm's per-sample statistics are held
    fixed for the same reason (AS-MLP's norms): the masks show what the mixing reaches, not the normalisation.
    They are OR-ed over `samples` random inputs so a ReLU that happens to be off for one input cannot hide a
    dependency.
    """
    h, w = size
    i, j = pixel
    if not (0 <= i < h and 0 <= j < w):
        raise ValueError(f"pixel {pixel} is outside the {h}x{w} map")
    dim = getattr(module, "in_channels", None) or module.proj.in_channels
    was_training = module.training
    module.eval()
    try:
        with contextlib.ExitStack() as stack:
            for norm in module.modules():
                if isinstance(norm, torch.nn.GroupNorm):
                    stack.enter_context(_fixed_statistics(norm))
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn(samples, dim, h, w, generator=gen, requires_grad=True)
            outs = module.branch_outputs(x)
            masks = {}
            for name, out in outs.items():
                (grad,) = torch.autograd.grad(out[:, :, i, j].sum(), x, retain_graph=True)
                masks[name] = (grad.abs().sum(dim=(0, 1)) > 0).numpy()
    finally:
        module.train(was_training)
    return masks


@contextlib.contextmanager
def _fixed_statistics(norm: torch.nn.GroupNorm) -> Iterator[None]:
    """``norm`` with its mean and variance treated as constants by autograd (values unchanged)."""

    def forward(x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        g = x.reshape(b, norm.num_groups, -1)
        mean, var = g.mean(-1, keepdim=True).detach(), g.var(-1, unbiased=False, keepdim=True).detach()
        y = ((g - mean) / torch.sqrt(var + norm.eps)).reshape(x.shape)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return y * norm.weight.reshape(shape) + norm.bias.reshape(shape) if norm.affine else y

    norm.forward = forward
    try:
        yield
    finally:
        del norm.forward


def describe(module: torch.nn.Module) -> str:
    """Region size, shift step, cross-region manner and padding, as the module reports them."""
    branch = module.h or module.w
    if branch is None:
        return "channel branch only"
    cross = ("shift" if branch.shift is not None else "shuffle" if branch.shuffle is not None
             else "no cross-region")
    rh, rw = module.region_size
    sh, sw = module.shift_step
    return f"region {rh}x{rw}, step {sh},{sw}, {cross}, {branch.padding} pad"


def _draw(ax: Any, mask: np.ndarray, pixel: tuple[int, int], branch: str, module: torch.nn.Module) -> None:
    h, w = mask.shape
    region = module.region_size[0] if branch == "h" else module.region_size[1] if branch == "w" else 1
    pad_rows = (-h) % region if branch == "h" else 0
    pad_cols = (-w) % region if branch == "w" else 0
    ax.imshow(mask, cmap=ListedColormap(["#f4f4f4", "#3b7dd8"]), vmin=0, vmax=1,
              extent=(-0.5, w - 0.5, h - 0.5, -0.5))
    if pad_rows or pad_cols:  # the padded strip the branch sees beyond the map (not an input, so no gradient)
        ax.add_patch(Rectangle((-0.5, h - 0.5), w + pad_cols, pad_rows, hatch="//", fill=False, ec="0.5", lw=0)
                     if pad_rows else
                     Rectangle((w - 0.5, -0.5), pad_cols, h, hatch="//", fill=False, ec="0.5", lw=0))
    ax.set_xlim(-0.5, w + pad_cols - 0.5)
    ax.set_ylim(h + pad_rows - 0.5, -0.5)
    for k in range(1, h + pad_rows):
        ax.axhline(k - 0.5, color="white", lw=0.5)
    for k in range(1, w + pad_cols):
        ax.axvline(k - 0.5, color="white", lw=0.5)
    if branch in ("h", "w"):  # nominal region borders of the unshifted map
        for k in range(region, (h + pad_rows if branch == "h" else w + pad_cols), region):
            (ax.axhline if branch == "h" else ax.axvline)(k - 0.5, color="k", lw=1.2, ls="--")
    ax.plot(pixel[1], pixel[0], marker="x", color="#d62728", ms=9, mew=2)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_receptive_fields(
    panels: Sequence[tuple[str, torch.nn.Module]],
    size: tuple[int, int],
    pixel: tuple[int, int],
    branches: Sequence[str] = ("h", "w", "c"),
) -> Figure:
    """A grid: one row per (title, module), one column per branch; with one branch, configs side by side.

    Blue cells are input pixels the output pixel (red x) depends on; dashed lines are region borders;
    hatching is padding added beyond the map.
    """
    one_row = len(branches) == 1
    nrows, ncols = (1, len(panels)) if one_row else (len(panels), len(branches))
    fig = Figure(figsize=(2.4 * ncols, 2.6 * nrows + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(nrows, ncols, squeeze=False))
    for r, (title, module) in enumerate(panels):
        masks = receptive_fields(module, size, pixel)
        for c, branch in enumerate(branches):
            ax = axes[0, r] if one_row else axes[r, c]
            if branch not in masks:
                ax.set_axis_off()
                ax.set_title(f"{title}\n{BRANCH_NAMES[branch]}: off", fontsize=8)
                continue
            _draw(ax, masks[branch], pixel, branch, module)
            ax.set_title(f"{title}\n{BRANCH_NAMES[branch]}, {int(masks[branch].sum())} px\n{describe(module)}",
                         fontsize=8)
    fig.suptitle(f"input pixels reached from output pixel {pixel} of a {size[0]}x{size[1]} map (by autograd)",
                 fontsize=9)
    return fig


def switch_panels(dim: int = 8, region: int = 2) -> dict[str, list[tuple[str, torch.nn.Module]]]:
    """The paper's switches as small Hire Modules, grouped for side-by-side pictures."""
    from hiremlp import HireModule

    def make(**kw: Any) -> torch.nn.Module:
        torch.manual_seed(0)
        return HireModule(dim, region_size=kw.pop("region_size", region), **kw)

    return {
        "region size (Table 3)": [(f"region {r}", make(region_size=r)) for r in (2, 3, 4)],
        "shift step (Table 4)": [(f"step {s}", make(shift=s)) for s in (0, 1, 2)],
        "cross-region manner (Table 7)": [(m, make(shift=1, cross_region=m)) for m in ("shift", "shuffle", "none")],
        "padding on a non-divisible map (Table 5)": [
            (p, make(region_size=3, padding=p)) for p in ("zero", "circular", "reflect", "replicate")],
        "inner-region rearrangement (Table 6)": [("with", make()), ("without", make(inner_region=False))],
    }
