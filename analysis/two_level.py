"""An interval for a difference of accuracies that counts both samples it rests on: the seeds and the test images.

Every trial of a study is scored on the same fixed test images, so the seeds-only paired interval answers "how
would this difference move with other seeds, on these images?". The images are a sample of the distribution too:
two models that disagree on a quarter of 5,000 images have a test-set sampling error of about 0.7 points on their
difference, as large as the seed error at 5 seeds (Dietterich 1998; Bouthillier et al. 2021; Jordan 2024).

Seeds and images are crossed (every seed is scored on every image), and both rows of a comparison share them, so
the per-(seed, image) difference D[s, i] = 100 * (row correct - default correct) is analysed as a two-way crossed
random-effects array, D = mu + a_s + b_i + e_si (the ANOVA decomposition of any function of a random seed and a
random image, so no distributional assumption is made). With S seeds and I images the mean squares give the
unbiased variance of the mean difference (Searle, Casella & McCulloch, *Variance Components*, ch. 4):

    Var(mean) = sigma_a^2 / S + sigma_b^2 / I + sigma_e^2 / (S I) = (MS_seed + MS_image - MS_resid) / (S I)

and the seeds-only paired t interval is the same formula without the image term, MS_seed / (S I) =
var(seed means) / S. The interval is a t interval with Satterthwaite's degrees of freedom. The shares of the
variance say which source dominates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from analysis.stats import ALPHA, POWER, DiffCI, detectable_difference

METHOD = "seeds+images"


@dataclass(frozen=True)
class TwoLevelCI:
    """Both intervals of one difference (points), from the same per-image outcomes.

    `seeds` is the paired t interval over seeds that treats the images as fixed; `both` also counts the test
    images. `var_seed`, `var_image` and `var_resid` are the three parts of the variance of the mean difference
    (sigma_a^2/S, sigma_b^2/I, sigma_e^2/(S I)); the seeds-only variance is var_seed + var_resid.
    """

    seeds: DiffCI
    both: DiffCI
    n_seeds: int
    n_images: int
    var_seed: float
    var_image: float
    var_resid: float

    @property
    def image_share(self) -> float:
        """Fraction of the two-level variance that comes from sampling the test images (NaN without one)."""
        total = self.var_seed + self.var_image + self.var_resid
        return self.var_image / total if total > 0 else math.nan

    @property
    def dominant(self) -> str:
        """'images' when sampling the test images contributes more variance than the seeds do, else 'seeds'."""
        share = self.image_share
        return "" if math.isnan(share) else "images" if share > 0.5 else "seeds"


def _t_interval(diff: float, var: float, df: float, level: float, method: str, n: int) -> DiffCI:
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:
        return DiffCI(diff, diff, diff, df, level, method, n, n, 0.0)
    half = float(sps.t.ppf(0.5 + level / 2, df)) * se
    return DiffCI(diff, diff - half, diff + half, df, level, method, n, n, se)


def two_level_diff_ci(row: np.ndarray, ref: np.ndarray, level: float = 0.95) -> TwoLevelCI:
    """Row minus default from per-image outcomes: `row[s, i]` is 1 where the row's seed s got image i right, the
    default's seed s in `ref[s, i]` (same seeds, same images, same order). Fewer than 2 seeds: no interval."""
    row, ref = np.asarray(row, dtype=float), np.asarray(ref, dtype=float)
    if row.shape != ref.shape or row.ndim != 2:
        raise ValueError(f"per-image outcomes must be two (seeds, images) arrays of one shape, got {row.shape} "
                         f"and {ref.shape}")
    s, i = row.shape
    d = 100.0 * (row - ref)
    diff = float(d.mean()) if d.size else math.nan
    if s < 2 or i < 2:
        none = DiffCI(diff, math.nan, math.nan, math.nan, level, "none", s, s)
        return TwoLevelCI(none, none, s, i, math.nan, math.nan, math.nan)
    seed_means, image_means = d.mean(axis=1), d.mean(axis=0)
    ms_seed = i * float(((seed_means - diff) ** 2).sum()) / (s - 1)
    ms_image = s * float(((image_means - diff) ** 2).sum()) / (i - 1)
    resid = d - seed_means[:, None] - image_means[None, :] + diff
    ms_resid = float((resid**2).sum()) / ((s - 1) * (i - 1))
    n = s * i
    var_seed, var_image = max(ms_seed - ms_resid, 0.0) / n, max(ms_image - ms_resid, 0.0) / n
    var_resid = ms_resid / n if ms_seed >= ms_resid else ms_seed / n
    seeds = _t_interval(diff, ms_seed / n, float(s - 1), level, "paired", s)
    if ms_image <= ms_resid:  # no image component beyond the residual: nothing to add
        both = _t_interval(diff, ms_seed / n, float(s - 1), level, METHOD, s)
    else:
        var = (ms_seed + ms_image - ms_resid) / n
        parts = ((ms_seed, s - 1), (ms_image, i - 1), (-ms_resid, (s - 1) * (i - 1)))
        denom = sum((m / n) ** 2 / k for m, k in parts)
        df = var**2 / denom if denom > 0 else math.inf
        both = _t_interval(diff, var, df, level, METHOD, s)
    return TwoLevelCI(seeds, both, s, i, var_seed, var_image, var_resid)


def p_value(ci: DiffCI) -> float:
    """Two-sided p of the t test behind an interval (diff / se on its df): the test whose rejection at `ALPHA`
    is the interval excluding 0. NaN without an interval; 0 or 1 when the seeds agree exactly (se = 0)."""
    if not ci.has_ci or math.isnan(ci.diff):
        return math.nan
    if ci.se == 0.0 or math.isnan(ci.se):
        return 1.0 if ci.diff == 0.0 else 0.0
    return float(2 * sps.t.sf(abs(ci.diff) / ci.se, ci.df))


def detectable(ci: DiffCI, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference the interval's test finds with `power` at two-sided `alpha`."""
    if ci.se == 0.0:
        return 0.0
    return detectable_difference(ci.se, ci.df if math.isfinite(ci.df) else 1e9, power, alpha)
