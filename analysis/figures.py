"""Figures for a study: each row's difference to the default beside the paper's, our accuracy beside the paper's,
ours-vs-paper scatter, validation curves, resolution, per-class differences, the difference per epoch, accuracy
against MACs.

Figures are built on `matplotlib.figure.Figure` directly (no pyplot state), so the same functions work in a
script (saved with the Agg canvas) and in a notebook (shown inline).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from analysis.tables import PAPER_COLUMN, PAPER_RUN_NOISE, expressed_mask


def save(fig: Figure, folder: str | Path, stem: str) -> list[Path]:
    """Write `stem.png` and `stem.svg` into `folder`; returns both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{stem}.png", folder / f"{stem}.svg"]
    for p in paths:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    return paths


def _errs(std: pd.Series) -> np.ndarray:
    return np.nan_to_num(std.to_numpy(dtype=float), nan=0.0)


def accuracy_vs_paper(summary: pd.DataFrame, title: str = "") -> Figure:
    """Twin panels sharing the row axis: ours (mean ± std over seeds) and the paper's top-1.

    The scales differ (CIFAR at 32 px vs ImageNet at 224 px), so each panel gets its own x axis.
    Rows without our results are labelled with their status instead of being dropped.
    """
    n = len(summary)
    fig = Figure(figsize=(9, 0.45 * n + 1.6), layout="constrained")
    ax_ours, ax_paper = fig.subplots(1, 2, sharey=True)
    y = np.arange(n)[::-1]
    has = summary["n"].to_numpy() > 0
    metric = summary.attrs.get("metric", "test_acc")
    ax_ours.errorbar(summary["mean"][has], y[has], xerr=_errs(summary["std"][has]), fmt="o", capsize=3,
                     color="C0")
    for yi, (_, rec) in zip(y, summary.iterrows(), strict=True):
        if rec["is_default"] and rec["n"]:
            ax_ours.axvline(rec["mean"], color="C0", lw=0.8, ls=":")
        if not rec["n"]:
            ax_ours.annotate(rec["status"], (0.02, yi), xycoords=("axes fraction", "data"), va="center",
                             color="C3", fontsize=8)
    ax_ours.set_title("ours: mean ± std over seeds", fontsize=9)
    ax_ours.set_xlabel(f"{metric} (%)")
    ax_ours.set_ylim(-0.6, n - 0.4)  # every row keeps its place, with or without data
    ax_ours.set_yticks(y, [f"{r}  (n={k})" for r, k in zip(summary["row"], summary["n"], strict=True)])
    has_paper = summary["paper_top1"].notna().to_numpy()
    ax_paper.plot(summary["paper_top1"][has_paper], y[has_paper], "s", color="C1")
    default = summary[summary["is_default"] & summary["paper_top1"].notna()]
    for v in default["paper_top1"]:
        ax_paper.axvline(v, color="C1", lw=0.8, ls=":")
    ax_paper.set_title(PAPER_COLUMN.replace(" (", "\n("), fontsize=9)
    ax_paper.set_xlabel("top-1 (%)")
    if not has.any():
        ax_ours.set_xlim(0, 100)
    if not has_paper.any():
        ax_paper.text(0.5, 0.5, "no paper numbers\nfor this study", transform=ax_paper.transAxes, ha="center")
        ax_paper.set_xticks([])
    for ax in (ax_ours, ax_paper):
        ax.grid(axis="x", alpha=0.3)
    if title:
        fig.suptitle(title)
    return fig


def _same_as(rec: pd.Series) -> str:
    value = rec.get("same_as")
    return str(value) if isinstance(value, str) and value.strip() else ""


def difference_vs_paper(summary: pd.DataFrame, title: str = "") -> Figure:
    """Per row, our difference to the default row with its 95% CI beside the paper's difference, on one axis.

    The band around 0 is the paper's own run-to-run noise (one run per row). Our point is filled when the row is
    resolved after Holm's adjustment over the table; the green bar is the interval that also counts the test
    images (rows with predictions). Rows that are the same network as another row at the protocol's size are
    labelled so instead of plotted; rows without results show their status.
    """
    n = len(summary)
    fig = Figure(figsize=(7.5, 0.5 * n + 1.8), layout="constrained")
    ax = fig.subplots()
    y = np.arange(n)[::-1].astype(float)
    expressed = expressed_mask(summary).to_numpy()
    default = summary.attrs.get("default_row")
    family = summary.attrs.get("family_size", 0)
    ax.axvspan(-PAPER_RUN_NOISE, PAPER_RUN_NOISE, color="0.9", zorder=0,
               label=f"paper's run-to-run noise (±{PAPER_RUN_NOISE})")
    ax.axvline(0, color="k", lw=0.8)
    labelled = set()
    for yi, ok, (_, rec) in zip(y, expressed, summary.iterrows(), strict=True):
        note = ""
        if not ok:
            same = _same_as(rec)
            note = (f"same network as {same} at this size: not measurable" if same
                    else "not expressed at this size: not measurable")
        elif rec["is_default"]:
            note = "reference" if rec["n"] else "reference (no results)"
        elif not rec["n"]:
            note = str(rec["status"])
        if not math.isnan(rec["paper_diff"]) and ok and not rec["is_default"]:
            ax.plot(rec["paper_diff"], yi - 0.15, "s", color="C1",
                    label=None if "paper" in labelled else "paper (one run, ImageNet)")
            labelled.add("paper")
        if ok and not rec["is_default"] and rec["n"] and not math.isnan(rec["diff"]):
            has_ci = not math.isnan(rec["ci_low"])
            err = [[rec["diff"] - rec["ci_low"]], [rec["ci_high"] - rec["diff"]]] if has_ci else None
            resolved = bool(rec.get("resolved"))
            ax.errorbar(rec["diff"], yi + 0.15, xerr=err, fmt="o", capsize=3, color="C0",
                        mfc="C0" if resolved else "white",
                        label=None if "ours" in labelled else
                        f"ours, 95% CI over seeds (filled: resolved after Holm, family of {family})")
            labelled.add("ours")
            low, high = rec.get("ci_img_low", math.nan), rec.get("ci_img_high", math.nan)
            if not math.isnan(low):
                ax.plot([low, high], [yi + 0.32] * 2, color="C2", lw=2.5, solid_capstyle="butt",
                        label=None if "images" in labelled else "ours, 95% CI with the test images too")
                labelled.add("images")
        if note:
            ax.annotate(note, (0.02, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8,
                        color="0.4" if not ok else "C3" if not rec["n"] else "k")
    ax.set_ylim(-0.6, n - 0.4)
    ticks = [f"{r}  (n={k}{', ' + m if m and m != 'none' else ''})" for r, k, m in
             zip(summary["row"], summary["n"], summary.get("ci_method", [""] * n), strict=True)]
    ax.set_yticks(y, ticks)
    ax.set_xlabel(f"difference to the default row '{default}' (points of top-1)")
    ax.grid(axis="x", alpha=0.3)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside lower center", ncols=2)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def ours_vs_paper(summary: pd.DataFrame, title: str = "") -> Figure:
    """Scatter of our mean (± std) against the paper's top-1, one labelled point per row."""
    fig = Figure(figsize=(5.5, 4.5), layout="constrained")
    ax = fig.subplots()
    both = summary[(summary["n"] > 0) & summary["paper_top1"].notna()]
    ax.errorbar(both["paper_top1"], both["mean"], yerr=_errs(both["std"]), fmt="o", capsize=3)
    for _, rec in both.iterrows():
        ax.annotate(rec["row"], (rec["paper_top1"], rec["mean"]), textcoords="offset points", xytext=(4, 4),
                    fontsize=8)
    ra = summary.attrs.get("rank")
    corr = "" if ra is None or math.isnan(ra.spearman) else f"Spearman ρ = {ra.spearman:.2f}, n = {ra.n}"
    ax.set_title("\n".join(t for t in (title, corr) if t), fontsize=10)
    ax.set_xlabel(PAPER_COLUMN)
    ax.set_ylabel(f"ours: {summary.attrs.get('metric', 'test_acc')} (%)")
    ax.grid(alpha=0.3)
    if both.empty:
        ax.text(0.5, 0.5, "no rows with both numbers", transform=ax.transAxes, ha="center")
    return fig


def _mean_half_width(std: pd.Series, n: pd.Series, level: float = 0.95) -> np.ndarray:
    """Half-width of the t-interval of each row's mean over its seeds (0 where one seed gives none)."""
    from scipy import stats

    k = n.to_numpy(dtype=float)
    t = np.where(k > 1, stats.t.ppf(0.5 + level / 2, np.maximum(k - 1, 1)), 0.0)
    return np.nan_to_num(t * std.to_numpy(dtype=float) / np.sqrt(np.maximum(k, 1)), nan=0.0)


def accuracy_vs_macs(summary: pd.DataFrame, title: str = "") -> Figure:
    """Our mean with its 95% interval against each row's MACs per image, labelled with the paired difference to
    the default row: a row that wins only by costing more sits to the right, not just higher."""
    fig = Figure(figsize=(6.5, 4.8), layout="constrained")
    ax = fig.subplots()
    has = summary[summary["n"] > 0]
    ax.errorbar(has["macs_G"] * 1e3, has["mean"], yerr=_mean_half_width(has["std"], has["n"]), fmt="o",
                capsize=3)
    for _, rec in has.iterrows():
        note = "reference" if rec["is_default"] else (
            f"Δ {rec['diff']:+.2f}" + ("" if math.isnan(rec["ci_low"])
                                      else f" [{rec['ci_low']:+.2f}, {rec['ci_high']:+.2f}]"))
        ax.annotate(f"{rec['row']} ({rec['params_M']:.2f} M)\n{note}", (rec["macs_G"] * 1e3, rec["mean"]),
                    textcoords="offset points", xytext=(5, 3), fontsize=7)
    ax.set_xlabel("MACs per image (M)")
    ax.set_ylabel(f"{summary.attrs.get('metric', 'test_acc')} (%): mean, 95% t-interval over seeds")
    ax.set_title("\n".join(t for t in (title, "labels: parameters; paired 95% CI of Δ vs "
                                         f"{summary.attrs.get('default_row', 'default')}") if t), fontsize=9)
    ax.grid(alpha=0.3)
    if has.empty:
        ax.text(0.5, 0.5, "no finished rows", transform=ax.transAxes, ha="center")
    return fig


def validation_curves(curves: pd.DataFrame, order: list[str] | None = None, metric: str = "val_acc",
                      title: str = "") -> Figure:
    """Per row, the mean over seeds of `metric` per epoch, shaded ± std where there are 2+ seeds."""
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    if curves.empty or metric not in curves.columns:
        ax.text(0.5, 0.5, f"no per-epoch {metric} found", transform=ax.transAxes, ha="center")
        return fig
    rows = order or list(dict.fromkeys(curves["row"]))
    for i, row in enumerate(r for r in rows if r in set(curves["row"])):
        g = curves[curves["row"] == row].groupby("epoch")[metric]
        mean, std, count = g.mean(), g.std(), g.count()
        ax.plot(mean.index, mean.to_numpy(), color=f"C{i % 10}", label=f"{row} (n={int(count.max())})")
        band = std.fillna(0.0).to_numpy()
        ax.fill_between(mean.index, mean - band, mean + band, color=f"C{i % 10}", alpha=0.15, lw=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} (%), mean over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def accuracy_vs_resolution(summary: pd.DataFrame, train_size: int | None = None, title: str = "") -> Figure:
    """Accuracy against test input size, a line per row with error bars over seeds; n/a sizes are gaps."""
    sizes = summary.attrs.get("sizes", [])
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    dodge = 0.15 * (min(np.diff(sizes)) if len(sizes) > 1 else 1)  # keep error bars of rows apart
    for i, (_, rec) in enumerate(summary.iterrows()):
        means = np.array([rec[f"mean@{s}"] for s in sizes], dtype=float)
        stds = np.nan_to_num(np.array([rec[f"std@{s}"] for s in sizes], dtype=float), nan=0.0)
        if np.isnan(means).all():
            continue
        xs = np.array(sizes, dtype=float) + dodge * (i - (len(summary) - 1) / 2)
        ax.errorbar(xs, means, yerr=stds, fmt="o-", capsize=3, color=f"C{i % 10}", label=str(rec["row"]))
        for s, m in zip(sizes, means, strict=True):
            if math.isnan(m) and isinstance(rec[f"na@{s}"], str):
                ax.annotate(f"n/a: {rec['row']}", (s, 0.03 + 0.06 * i), xycoords=("data", "axes fraction"),
                            color=f"C{i % 10}", fontsize=7, ha="right")
    if train_size is not None:
        ax.axvline(train_size, color="k", ls="--", lw=1, label=f"training size ({train_size} px)")
    ax.set_xticks(sizes or [train_size or 0])
    ax.set_xlabel("test input size (px)")
    ax.set_ylabel("top-1 (%), mean ± std over seeds")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def per_class_differences(cells: pd.DataFrame, rows: list[str], names: list[str], default: str,
                          title: str = "") -> Figure:
    """Classes x rows grid of each row's per-class difference to the default (colour, points), its two-level 95%
    interval in the cell, and a frame around the cells resolved after Holm's adjustment over the whole grid."""
    rows = [r for r in rows if r in set(cells["row"])]
    fig = Figure(figsize=(1.9 * max(len(rows), 1) + 2.2, 0.42 * len(names) + 1.8), layout="constrained")
    ax = fig.subplots()
    if cells.empty or not rows:
        ax.text(0.5, 0.5, "no per-image predictions: per-class differences need them", transform=ax.transAxes,
                ha="center")
        ax.set_axis_off()
        return fig
    grid = np.full((len(names), len(rows)), np.nan)
    for _, c in cells.iterrows():
        grid[int(c["class"]), rows.index(c["row"])] = c["diff"]
    lim = max(float(np.nanmax(np.abs(grid))), 1e-9)
    im = ax.imshow(grid, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for _, c in cells.iterrows():
        y, x = int(c["class"]), rows.index(c["row"])
        text = f"{c['diff']:+.1f}\n[{c['low']:+.1f}, {c['high']:+.1f}]".replace("-", "−")
        ax.text(x, y, text, ha="center", va="center", fontsize=6.5, fontweight="bold" if c["resolved"] else "normal")
        if c["resolved"]:
            ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, lw=2, ec="k"))
    ax.set_xticks(range(len(rows)), rows)
    ax.set_yticks(range(len(names)), names)
    fig.colorbar(im, ax=ax, label=f"difference to '{default}' (points of per-class accuracy)")
    family = int(cells["family_size"].iloc[0]) if len(cells) else 0
    ax.set_title("\n".join(t for t in (title, f"framed: resolved after Holm over {family} cells; "
                                              "brackets: 95% CI with seeds and test images") if t), fontsize=9)
    return fig


def difference_per_epoch(per_epoch: pd.DataFrame, rows: list[str], default: str, metric: str = "val_acc",
                         title: str = "") -> Figure:
    """Each row's difference to the default per epoch (mean over seeds), with its paired 95% band."""
    fig = Figure(figsize=(6.5, 4.2), layout="constrained")
    ax = fig.subplots()
    if per_epoch.empty:
        ax.text(0.5, 0.5, f"no per-epoch {metric} in common with '{default}'", transform=ax.transAxes, ha="center")
        return fig
    ax.axhline(0, color="k", lw=0.8)
    for i, row in enumerate(r for r in rows if r in set(per_epoch["row"])):
        g = per_epoch[per_epoch["row"] == row].sort_values("epoch")
        color = f"C{(i + 1) % 10}"
        ax.plot(g["epoch"], g["diff"], "o-", ms=3, color=color, label=f"{row} (n={int(g['n'].max())})")
        band = g["low"].notna()
        ax.fill_between(g["epoch"][band], g["low"][band], g["high"][band], color=color, alpha=0.15, lw=0)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{metric} difference to '{default}' (points)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="paired 95% band over seeds", title_fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return fig
