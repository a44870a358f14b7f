"""Where an ablation's effect is: per-class differences with their two-level intervals, and whether the ablation
changes *which* images the model gets right beyond what another seed of the same row changes.

Per class, the difference of a row to the default is the two-level interval (`analysis.two_level`) on that
class's test images only; the cells of the classes x rows grid form one family for Holm's procedure.

Agreement: the share of test images on which two trials predict the same class. Two seeds of one row already
disagree on some images; if a row's trials agree with the default's no less than with each other, the ablation
does not change what the model gets right beyond seed noise. All pairs compared have different seeds (same-seed
pairs share data order and initialisation, which would flatter the cross-row agreement); the gap's interval is a
t interval over the test images of the per-image gap (images as the sample; the few seeds are averaged over).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.multiplicity import decide
from analysis.per_image import RowOutcomes, pair_status
from analysis.two_level import p_value, two_level_diff_ci

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def class_names(n_classes: int, dataset: str | None = None) -> list[str]:
    """CIFAR-10's label names in label order when the study is CIFAR-10, else 'class k'."""
    if dataset == "cifar10" and n_classes == len(CIFAR10_CLASSES):
        return list(CIFAR10_CLASSES)
    return [f"class {k}" for k in range(n_classes)]


def per_class_differences(outcomes: Mapping[str, RowOutcomes], seeds: Mapping[str, Sequence[Any]],
                          default: str, level: float = 0.95) -> pd.DataFrame:
    """One record per (row, class): `diff`, `low`, `high` (two-level interval over that class's images), `p`,
    Holm's `p_holm` and `resolved` over every cell of the grid, `family_size`. `seeds[row]`: the seeds it shares
    with the default. Rows that cannot be paired image by image are left out."""
    ref = outcomes.get(default)
    records = []
    for row, o in outcomes.items():
        common = list(seeds.get(row, ()))
        if row == default or ref is None or pair_status(o, ref, common):
            continue
        a, b = o.correct(common), ref.correct(common)
        for c in np.unique(ref.label):
            cols = ref.label == c
            ci = two_level_diff_ci(a[:, cols], b[:, cols], level).both
            records.append({"row": row, "class": int(c), "diff": ci.diff, "low": ci.low, "high": ci.high,
                            "p": p_value(ci), "n_images": int(cols.sum()), "n_seeds": len(common)})
    frame = pd.DataFrame.from_records(records, columns=["row", "class", "diff", "low", "high", "p", "n_images",
                                                        "n_seeds"])
    decisions = decide(dict(enumerate(frame["p"])))
    frame["p_holm"] = [decisions[i].p_holm for i in range(len(frame))]
    frame["resolved"] = [decisions[i].resolved for i in range(len(frame))]
    frame["family_size"] = decisions[0].family_size if decisions else 0
    return frame


@dataclass(frozen=True)
class Agreement:
    """Agreement (% of test images with the same predicted class) of a row with the default and within each."""

    row: str
    n_seeds: int
    cross: float  # row seed s vs default seed t, s != t
    within_row: float  # row seed s vs row seed t
    within_default: float
    same_seed: float  # row seed s vs default seed s (shared data order and initialisation)
    gap: float  # mean of the two within agreements minus the cross agreement
    gap_low: float
    gap_high: float

    @property
    def beyond_seed_noise(self) -> bool:
        """True when the row's trials agree with the default's less than trials of one row agree with each other
        (the gap's interval lies above 0)."""
        return not math.isnan(self.gap_low) and self.gap_low > 0


def _pair_mean(a: Sequence[np.ndarray], b: Sequence[np.ndarray], same: bool) -> np.ndarray:
    """Per image, the share of seed pairs (s, t), s != t, whose predictions agree (a[s] vs b[t])."""
    pairs = [(s, t) for s, t in itertools.product(range(len(a)), range(len(b))) if s != t and (not same or s < t)]
    return np.mean([a[s] == b[t] for s, t in pairs], axis=0)


def agreement(row: RowOutcomes, ref: RowOutcomes, seeds: Sequence[Any], label: str,
              level: float = 0.95) -> Agreement | None:
    """The agreements of `row` with `ref` over the seeds both ran (None when they cannot be paired)."""
    seeds = list(seeds)
    if pair_status(row, ref, seeds):
        return None
    a, b = [row.pred[s] for s in seeds], [ref.pred[s] for s in seeds]
    cross = _pair_mean(a, b, same=False)
    within = (_pair_mean(a, a, same=True) + _pair_mean(b, b, same=True)) / 2
    gap = 100.0 * (within - cross)
    se = float(gap.std(ddof=1)) / math.sqrt(gap.size)
    if se > 0:
        half = float(sps.t.ppf(0.5 + level / 2, gap.size - 1)) * se
        low, high = float(gap.mean()) - half, float(gap.mean()) + half
    else:
        low = high = float(gap.mean())
    same = 100.0 * float(np.mean([x == y for x, y in zip(a, b, strict=True)]))
    return Agreement(label, len(seeds), 100.0 * float(cross.mean()), 100.0 * float(_pair_mean(a, a, True).mean()),
                     100.0 * float(_pair_mean(b, b, True).mean()), same, float(gap.mean()), low, high)
