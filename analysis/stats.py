"""Statistics for ablation tables: seed spread, paired and Welch intervals, the smallest detectable difference,
rank agreement with the paper.

With 2-5 seeds per row, most differences between rows are noise; these helpers say so explicitly, and say how
large a difference the seeds could have seen, instead of letting a table of means suggest an ordering the seeds
cannot support. Intervals come from scipy's tested t tests (`ttest_rel`, `ttest_ind(equal_var=False)` and their
`confidence_interval`), the power of a t test from scipy's noncentral t distribution.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize
from scipy import stats as sps

POWER = 0.80
ALPHA = 0.05


@dataclass(frozen=True)
class Summary:
    """Mean and sample standard deviation (ddof=1) of one row's seeds; std is NaN when n < 2."""

    n: int
    mean: float
    std: float


@dataclass(frozen=True)
class DiffCI:
    """Difference of means (row minus reference) with a t interval.

    `method` is "paired" (per-seed differences over the seeds both rows ran: the shared data order and
    augmentation of a seed cancel), "Welch" (unpaired, unequal variances) or "none" (a side has n < 2: `low`/`high`
    are NaN and `has_ci` is False). `se` and `df` are the t statistic's standard error and degrees of freedom, from
    which the smallest detectable difference follows. `n_row`/`n_ref` are the values used (for "paired" both are the
    number of pairs).
    """

    diff: float
    low: float
    high: float
    df: float
    level: float
    method: str = "Welch"
    n_row: int = 0
    n_ref: int = 0
    se: float = math.nan

    @property
    def has_ci(self) -> bool:
        return not (math.isnan(self.low) or math.isnan(self.high))

    @property
    def half_width(self) -> float:
        """Half the interval's width (NaN without an interval); what `--target-ci` compares with its target."""
        return (self.high - self.low) / 2 if self.has_ci else math.nan

    @property
    def indistinguishable(self) -> bool:
        """True when the seeds cannot tell this difference from noise (CI contains 0, or no CI)."""
        return (not self.has_ci) or (self.low <= 0.0 <= self.high)

    def detectable(self, power: float = POWER, alpha: float = ALPHA) -> float:
        """The smallest true difference this test would find with `power` at two-sided level `alpha`."""
        return detectable_difference(self.se, self.df, power, alpha)


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
        return DiffCI(diff, math.nan, math.nan, math.nan, level, "none", int(a.size), int(b.size))
    se = math.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size)
    if se == 0.0:
        return DiffCI(diff, diff, diff, math.nan, level, "Welch", int(a.size), int(b.size), 0.0)
    res = sps.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(level)
    return DiffCI(diff, float(ci.low), float(ci.high), float(res.df), level, "Welch", int(a.size), int(b.size), se)


def paired_diff_ci(row: Sequence[float], ref: Sequence[float], level: float = 0.95) -> DiffCI:
    """Paired t interval for the mean of row[i] - ref[i] (entry i of both ran with the same seed).

    Pairs with a missing side are dropped. Identical differences collapse the interval onto their value.
    """
    a, b = np.asarray(list(row), dtype=float), np.asarray(list(ref), dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples need equal lengths, got {a.size} and {b.size}")
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep], b[keep]
    n = int(a.size)
    d = a - b
    diff = float(d.mean()) if n else math.nan
    if n < 2:
        return DiffCI(diff, math.nan, math.nan, math.nan, level, "none", n, n)
    se = float(d.std(ddof=1)) / math.sqrt(n)
    if se == 0.0:
        return DiffCI(diff, diff, diff, float(n - 1), level, "paired", n, n, 0.0)
    ci = sps.ttest_rel(a, b).confidence_interval(level)
    return DiffCI(diff, float(ci.low), float(ci.high), float(n - 1), level, "paired", n, n, se)


def _by_seed(values: Mapping[Any, float] | Any) -> dict[Any, float]:
    """{seed: value} from a mapping or a pandas Series indexed by seed; missing values dropped."""
    items = values.items() if hasattr(values, "items") else dict(values).items()
    return {k: float(v) for k, v in items if v is not None and not math.isnan(float(v))}


def diff_ci(row: Mapping[Any, float], ref: Mapping[Any, float], level: float = 0.95) -> DiffCI:
    """Row minus reference, each given per seed: paired over the seeds both ran when there are 2 or more such
    seeds, else Welch over all values. Seeds that are NaN (unknown) never pair."""
    a, b = _by_seed(row), _by_seed(ref)
    common = sorted(k for k in a.keys() & b.keys() if not (isinstance(k, float) and math.isnan(k)))
    if len(common) >= 2:
        return paired_diff_ci([a[k] for k in common], [b[k] for k in common], level)
    return welch_diff_ci(list(a.values()), list(b.values()), level)


def t_test_power(effect: float, se: float, df: float, alpha: float = ALPHA) -> float:
    """Exact power of a two-sided t test of level `alpha` when the true difference is `effect`: the probability
    that |t| exceeds the critical value, with t noncentral (noncentrality effect/se, `df` degrees of freedom)."""
    crit = float(sps.t.ppf(1 - alpha / 2, df))
    nc = effect / se
    far_tail = float(sps.nct.cdf(-crit, df, abs(nc)))  # the wrong-sign rejections: NaN where it underflows
    near_tail = float(sps.nct.sf(crit, df, abs(nc)))
    return near_tail + (0.0 if math.isnan(far_tail) else far_tail)


def detectable_difference(se: float, df: float, power: float = POWER, alpha: float = ALPHA) -> float:
    """The smallest true difference that a two-sided t test with this standard error and these degrees of freedom
    detects with probability `power` at level `alpha` (solved exactly on the noncentral t).

    For a paired comparison se = sd(differences)/sqrt(n) and df = n - 1; for Welch, the Welch se and df (then the
    power is the usual Welch approximation). NaN when there is no test (df < 1 or unknown); 0 when se is 0.
    """
    if se is None or df is None or math.isnan(se) or math.isnan(df) or df < 1:
        return math.nan
    if se == 0.0:
        return 0.0
    if not 0 < power < 1 or not 0 < alpha < 1:
        raise ValueError(f"power and alpha must lie in (0, 1), got power={power}, alpha={alpha}")
    crit = float(sps.t.ppf(1 - alpha / 2, df))
    hi = 2 * (crit + float(sps.norm.ppf(power))) + 10  # nct's quantiles grow at most about linearly with crit
    while t_test_power(hi, 1.0, df, alpha) < power:
        hi *= 2
    nc = optimize.brentq(lambda x: t_test_power(x, 1.0, df, alpha) - power, 0.0, hi, xtol=1e-10)
    return float(nc * se)


def paired_detectable_difference(sd: float, n: int, power: float = POWER, alpha: float = ALPHA) -> float:
    """The detectable difference of a paired comparison over `n` seeds whose differences have spread `sd`."""
    if n < 2:
        return math.nan
    return detectable_difference(sd / math.sqrt(n), n - 1, power, alpha)


def seeds_for_half_width(sd: float, target: float, level: float = 0.95, max_n: int = 1000) -> int | None:
    """The fewest seeds (>= 2) whose paired interval half-width t * sd / sqrt(n) is <= `target`; None if more than
    `max_n` would be needed. A planning figure: the observed sd of a new run will differ."""
    for n in range(2, max_n + 1):
        if float(sps.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n) <= target:
            return n
    return None


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


@dataclass(frozen=True)
class RankInterval:
    """A percentile interval for Spearman's rho from resampling seeds (NaN when fewer than 3 rows qualify)."""

    n_rows: int
    low: float
    high: float
    level: float
    n_boot: int


def spearman_seed_interval(paper: Sequence[float], seeds: Sequence[Mapping[Any, float]], level: float = 0.95,
                           n_boot: int = 2000, seed: int = 0) -> RankInterval:
    """How much Spearman's rho between the paper's numbers and our row means moves when the seeds are resampled.

    Row i's values are given per seed (`seeds[i]`, a mapping seed -> value, in seed order). Each resample draws,
    with replacement, as many seeds as the row ran; all rows use the same uniform draws, so rows that ran the same
    seeds resample the same seeds together and the seed effect they share stays shared. Rows without a paper number
    or with no values are left out. This is our seed noise only: the paper's one run per row has its own.
    """
    p = np.asarray(list(paper), dtype=float)
    rows = [np.array([v for _, v in sorted(_by_seed(s).items(), key=lambda kv: kv[0])]) for s in seeds]
    keep = [i for i, r in enumerate(rows) if r.size and not math.isnan(p[i])]
    if len(keep) < 3 or np.all(p[keep] == p[keep[0]]):
        return RankInterval(len(keep), math.nan, math.nan, level, n_boot)
    rng = np.random.default_rng(seed)
    u = rng.random((n_boot, max(rows[i].size for i in keep)))
    means = np.stack([rows[i][(u[:, : rows[i].size] * rows[i].size).astype(int)].mean(axis=1) for i in keep], 1)
    rp = sps.rankdata(p[keep])
    ro = sps.rankdata(means, axis=1)
    rp_c, ro_c = rp - rp.mean(), ro - ro.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = ro_c @ rp_c / (np.linalg.norm(ro_c, axis=1) * np.linalg.norm(rp_c))
    rho = rho[~np.isnan(rho)]
    if rho.size == 0:
        return RankInterval(len(keep), math.nan, math.nan, level, n_boot)
    low, high = np.quantile(rho, [(1 - level) / 2, (1 + level) / 2])
    return RankInterval(len(keep), float(low), float(high), level, n_boot)


@dataclass(frozen=True)
class SignAgreement:
    """Among rows where our interval excludes 0 and the paper's difference exceeds its own noise, how many point
    the same way."""

    agree: int
    both_resolve: int
    rows: tuple[str, ...]  # the rows that both resolve
    disagreeing: tuple[str, ...]


def sign_agreement(labels: Sequence[str], ours_low: Sequence[float], ours_high: Sequence[float],
                   paper_diff: Sequence[float], paper_noise: float,
                   resolved: Sequence[bool | None] | None = None) -> SignAgreement:
    """Count sign agreements over rows that both resolve: our 95% CI excludes 0 (and, when `resolved` is given,
    the row is resolved after the family's adjustment), and |paper difference| is above `paper_noise` (the paper
    runs each row once, so a smaller difference is within its own run-to-run noise)."""
    both, disagree = [], []
    flags = list(resolved) if resolved is not None else [True] * len(labels)
    for label, lo, hi, pd_, ok in zip(labels, ours_low, ours_high, paper_diff, flags, strict=True):
        if any(x is None or math.isnan(x) for x in (lo, hi, pd_)) or lo <= 0.0 <= hi or abs(pd_) <= paper_noise:
            continue
        if not ok:
            continue
        both.append(label)
        if (lo > 0) != (pd_ > 0):
            disagree.append(label)
    return SignAgreement(len(both) - len(disagree), len(both), tuple(both), tuple(disagree))
