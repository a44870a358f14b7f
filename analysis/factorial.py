"""Main effects and two-factor interactions of a factorial study, each a paired interval over seeds.

Every row of a factorial study runs with the same seeds, so a contrast of rows is computed per seed and its interval
is the paired t over seeds (`stats.diff_ci`): the seed's data order, augmentation and initialisation, shared by all
rows, cancel. The reference level of each factor is the default row's.

- main effect of level j of factor A: mean over the other factors' levels of y[A=j] - y[A=ref];
- interaction of levels (i, j) of factors (A, B): ((a1b1 - a1b2) - (a2b1 - a2b2)) with a1, b1 the reference levels
  and a2 = i, b2 = j, averaged over any further factors: how much B's effect changes when A moves off its reference.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from analysis.stats import DiffCI, diff_ci

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ablations import Study


@dataclass(frozen=True)
class Contrast:
    """One main effect or interaction: which factors and levels, and its paired interval over seeds."""

    kind: str  # "main" | "interaction"
    factors: tuple[str, ...]
    levels: tuple[str, ...]  # the non-reference level of each factor
    references: tuple[str, ...]  # the reference level of each factor
    ci: DiffCI

    @property
    def name(self) -> str:
        parts = [f"{f} {lv} − {ref}" for f, lv, ref in zip(self.factors, self.levels, self.references, strict=True)]
        return parts[0] if self.kind == "main" else " × ".join(f"({p})" for p in parts)

    @property
    def detectable(self) -> float:
        return self.ci.detectable() if self.ci.has_ci and self.ci.se > 0 else math.nan


@dataclass(frozen=True)
class Design:
    """A factorial study's structure, as plain data (JSON in `seed_rule.json`): each factor's level names, each
    row's cell (the index of its level in every factor), and the default row, whose levels are the references."""

    factors: tuple[tuple[str, tuple[str, ...]], ...]
    cells: Mapping[str, tuple[int, ...]]
    default_row: str

    def to_json(self) -> dict:
        return {"factors": [[f, list(levels)] for f, levels in self.factors],
                "cells": {r: list(c) for r, c in self.cells.items()}, "default_row": self.default_row}

    @classmethod
    def from_json(cls, data: Mapping) -> Design:
        return cls(tuple((f, tuple(levels)) for f, levels in data["factors"]),
                   {r: tuple(c) for r, c in data["cells"].items()}, data["default_row"])


def design_of(study: Any) -> Design:
    """The `Design` of a factorial `ablations.Study` (levels named as its generated row labels name them)."""
    from ablations.study_file import level_name

    preset = study.base_preset or "smoke"
    factors = tuple((f, tuple(level_name(preset, f, v) for v in levels)) for f, levels in study.factors)
    return Design(factors, {r: study.level_of(r) for r in study.labels}, study.default_row)


def _design(study: Any) -> Design:
    return study if isinstance(study, Design) else design_of(study)


def cell_array(design: Design, values: Mapping[str, Mapping[Any, float]]) -> tuple[np.ndarray, list]:
    """Accuracies as an array (seed, level of factor 1, level of factor 2, ...) over the seeds every row ran, and
    those seeds."""
    shape = tuple(len(levels) for _, levels in design.factors)
    ran = [values.get(r, {}) for r in design.cells]
    seeds = sorted(set.intersection(*(set(k for k, v in s.items() if not math.isnan(float(v))) for s in ran))
                   if ran else set())
    y = np.full((len(seeds), *shape), np.nan)
    for cell, per_seed in zip(design.cells.values(), ran, strict=True):
        for i, s in enumerate(seeds):
            y[(i, *cell)] = per_seed[s]
    return y, seeds


def _at(y: np.ndarray, fixed: Mapping[int, int]) -> np.ndarray:
    """Per seed, the mean over the factors not in `fixed` (axis -> level) of the cells with those levels."""
    index = tuple(fixed.get(axis, slice(None)) for axis in range(1, y.ndim))
    part = y[(slice(None), *index)]
    return part.reshape(part.shape[0], -1).mean(axis=1)


def contrasts(study: Study | Design, values: Mapping[str, Mapping[Any, float]], level: float = 0.95) -> list[Contrast]:
    """Every main effect (each non-reference level of each factor) and every two-factor interaction (each pair of
    non-reference levels of each pair of factors), on the seeds every row ran. `study`: a factorial
    `ablations.Study` or its `Design`."""
    design = _design(study)
    y, seeds = cell_array(design, values)
    if not seeds:  # some row has no result (e.g. run with --rows): no contrast is defined
        return []
    names = design.factors
    ref = design.cells[design.default_row]
    out: list[Contrast] = []

    def ci(a: np.ndarray, b: np.ndarray) -> DiffCI:
        return diff_ci(dict(zip(seeds, a, strict=True)), dict(zip(seeds, b, strict=True)), level)

    for k, (factor, levels) in enumerate(names):
        for j in range(len(levels)):
            if j != ref[k]:
                out.append(Contrast("main", (factor,), (levels[j],), (levels[ref[k]],),
                                    ci(_at(y, {k + 1: j}), _at(y, {k + 1: ref[k]}))))
    for (k, (fa, la)), (m, (fb, lb)) in itertools.combinations(enumerate(names), 2):
        for i, j in itertools.product(range(len(la)), range(len(lb))):
            if i == ref[k] or j == ref[m]:
                continue
            ax, bx, ar, br = k + 1, m + 1, ref[k], ref[m]
            plus = _at(y, {ax: i, bx: j}) + _at(y, {ax: ar, bx: br})
            minus = _at(y, {ax: i, bx: br}) + _at(y, {ax: ar, bx: j})
            out.append(Contrast("interaction", (fa, fb), (la[i], lb[j]), (la[ar], lb[br]), ci(plus, minus)))
    return out


def _signed(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{x:+.2f}".replace("-", "−")


def contrast_markdown(found: Sequence[Contrast]) -> str:
    """The contrasts as a Markdown table: estimate, 95% interval over seeds, seeds, smallest detectable size."""
    lines = ["| contrast | estimate | 95% CI (paired over seeds) | seeds | detectable (80% power) |",
             "|:---|---:|:---:|---:|---:|"]
    for c in found:
        interval = f"[{_signed(c.ci.low)}, {_signed(c.ci.high)}]" if c.ci.has_ci else "n/a (fewer than 2 seeds)"
        lines.append(f"| {c.name} | {_signed(c.ci.diff)} | {interval} | {c.ci.n_row} | "
                     f"{'n/a' if math.isnan(c.detectable) else f'{c.detectable:.2f}'} |")
    return "\n".join(lines) + "\n"


def interaction_figure(study: Any, values: Mapping[str, Mapping[Any, float]], title: str = "") -> Figure:
    """Mean accuracy per level of the first factor, one line per level of the second (others averaged), with 95% t
    intervals over seeds: parallel lines are no interaction."""
    from matplotlib.figure import Figure
    from scipy import stats as sps

    design = _design(study)
    y, seeds = cell_array(design, values)
    (fa, la), (fb, lb) = design.factors[0], design.factors[1]
    fig = Figure(figsize=(5.5, 3.8), layout="constrained")
    ax = fig.subplots()
    n = len(seeds)
    t = float(sps.t.ppf(0.975, n - 1)) if n >= 2 else math.nan
    for j, level in enumerate(lb):
        per_seed = np.stack([_at(y, {1: i, 2: j}) for i in range(len(la))], axis=1)  # (seed, level of A)
        mean = per_seed.mean(axis=0) if n else np.full(len(la), np.nan)
        half = t * per_seed.std(axis=0, ddof=1) / math.sqrt(n) if n >= 2 else np.zeros(len(la))
        ax.errorbar(np.arange(len(la)) + 0.04 * (j - (len(lb) - 1) / 2), mean, yerr=half, marker="o",
                    capsize=3, label=f"{fb} = {level}")
    ax.set_xticks(range(len(la)), la)
    ax.set_xlabel(fa)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title + f" ({n} seeds; 95% t intervals)" if title else f"{n} seeds; 95% t intervals", fontsize=9)
    ax.legend(fontsize=8)
    return fig


def factorial_section(found: Sequence[Contrast], n_factors: int) -> list[str]:
    """The report's section on the factorial design."""
    if not found:
        return ["## Factorial design: main effects and interactions", "",
                "No contrasts: they need every row of the design with at least one common seed "
                "(run the study without --rows).", ""]
    return ["## Factorial design: main effects and interactions", "",
            "Each contrast is computed per seed and its interval is the paired t over the seeds every row ran; the "
            "reference level of each factor is the default row's. A main effect averages over the other factors' "
            "levels; an interaction (A × B) is ((a1b1 − a1b2) − (a2b1 − a2b2)): how much B's effect changes when A "
            "leaves its reference level" + (" (averaged over the other factors)" if n_factors > 2 else "")
            + ". `interaction.png` shows the means.", "", contrast_markdown(found), ""]
