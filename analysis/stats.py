"""Statistics for ablation tables: seed spread, Welch intervals, rank agreement with the paper.

With 2-5 seeds per row, most differences between rows are noise; these helpers say so explicitly
instead of letting a table of means suggest an ordering the seeds cannot support.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (ddof=1) of one row's seeds; std is NaN when n < 2."""

    n: int
    mean: float
    std: float


@dataclass(frozen=True)
class DiffCI:
    """Difference of means (row minus reference) with a Welch t interval.

    `low`/`high` are NaN when either side has fewer than 2 seeds: there is no interval then,
    and `has_ci` is False.
    """

    diff: float
    low: float
    high: float
    df: float
    level: float

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def indistinguishable(self) -> bool:
        """True when the seeds cannot tell this difference from noise (CI contains 0, or no CI)."""
        return (not self.has_ci) or (self.low <= 0.0 <= self.high)


@dataclass(frozen=True)
class RankAgreement:
    """Spearman rho and Kendall tau between two orderings of the same rows (NaN when n < 3)."""

    n: int
    spearman: float
    spearman_p: float
    kendall: float
    kendall_p: float


def _clean(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(list(values), dtype=float)
    return arr[~np.isnan(arr)]


def summarize(values: Sequence[float]) -> Summary:
    """Mean and ddof=1 std of the finite values; an empty input gives n=0 and NaNs."""
    arr = _clean(values)
    n = int(arr.size)
    mean = float(arr.mean()) if n else math.nan
    std = float(arr.std(ddof=1)) if n >= 2 else math.nan
    return Summary(n=n, mean=mean, std=std)


def welch_diff_ci(row: Sequence[float], ref: Sequence[float], level: float = 0.95) -> DiffCI:
    """Welch t interval for mean(row) - mean(ref), not assuming equal variances.

    When both samples have zero variance the interval collapses onto the difference (df is NaN):
    the seeds agree perfectly, so there is nothing to widen it with.
    """
    a, b = _clean(row), _clean(ref)
    diff = float(a.mean() - b.mean()) if a.size and b.size else math.nan
    if a.size < 2 or b.size < 2:
        return DiffCI(diff, math.nan, math.nan, math.nan, level)
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0.0:
        return DiffCI(diff, diff, diff, math.nan, level)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return DiffCI(diff, diff - half, diff + half, float(df), level)


def rank_agreement(paper: Sequence[float], ours: Sequence[float]) -> RankAgreement:
    """Rank correlations over the rows where both numbers exist; fewer than 3 such rows gives NaN."""
    p = np.asarray(list(paper), dtype=float)
    o = np.asarray(list(ours), dtype=float)
    keep = ~(np.isnan(p) | np.isnan(o))
    p, o = p[keep], o[keep]
    n = int(p.size)
    if n < 3 or np.all(p == p[0]) or np.all(o == o[0]):
        return RankAgreement(n, math.nan, math.nan, math.nan, math.nan)
    rho = sps.spearmanr(p, o)
    tau = sps.kendalltau(p, o)
    rho_p = _spearman_exact_p(p, o) if n <= EXACT_MAX_N else float(rho.pvalue)
    return RankAgreement(n, float(rho.statistic), rho_p, float(tau.statistic), float(tau.pvalue))


EXACT_MAX_N = 9


def _spearman_exact_p(p: np.ndarray, o: np.ndarray) -> float:
    """Two-sided permutation p-value of Spearman's rho over all n! orderings.

    scipy's t approximation gives p = 0 for a perfect rho over 3 rows; the ablation tables have
    4-9 rows, where only the exact answer is honest.
    """
    rp, ro = sps.rankdata(p), sps.rankdata(o)
    observed = abs(np.corrcoef(rp, ro)[0, 1])
    perms = np.array(list(itertools.permutations(ro)))
    rp_c = rp - rp.mean()
    perms_c = perms - perms.mean(axis=1, keepdims=True)
    r = perms_c @ rp_c / (np.linalg.norm(perms_c, axis=1) * np.linalg.norm(rp_c))
    return float(np.mean(np.abs(r) >= observed - 1e-12))
