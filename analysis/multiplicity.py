"""Decisions for a whole table: a table compares k rows with its default, and at 5% each the chance of at least one
false "resolved" grows with k. Holm's step-down procedure keeps that family-wise chance at 5% for any dependence
between the tests (the rows share the default row's seeds, so they are dependent); the Benjamini-Hochberg adjusted
p-values (scipy's `false_discovery_control`) are given beside them as the false-discovery view.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats as sps

from analysis.stats import ALPHA


@dataclass(frozen=True)
class FamilyDecision:
    """One test of a family: its own p, Holm's and BH's adjusted p, and whether Holm rejects at `alpha`."""

    p: float
    p_holm: float
    p_bh: float
    resolved: bool
    family_size: int


def holm(pvalues: np.ndarray) -> np.ndarray:
    """Holm's adjusted p-values (step-down, monotone, capped at 1) of a 1-D array without NaNs."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(np.minimum((m - np.arange(m)) * p[order], 1.0))
    out = np.empty(m)
    out[order] = stepped
    return out


def decide(pvalues: Mapping[Any, float], alpha: float = ALPHA) -> dict[Any, FamilyDecision]:
    """Holm decisions at family-wise level `alpha` over the keys whose p is a number; keys with a NaN p (no test)
    get NaNs, `resolved=False` and are not counted in the family."""
    keys = [k for k, p in pvalues.items() if p is not None and not math.isnan(p)]
    p = np.array([pvalues[k] for k in keys], dtype=float)
    adj = holm(p)
    bh = sps.false_discovery_control(p, method="bh") if p.size else p
    out = {k: FamilyDecision(math.nan, math.nan, math.nan, False, len(keys)) for k in pvalues}
    for k, pk, hk, bk in zip(keys, p, adj, bh, strict=True):
        out[k] = FamilyDecision(float(pk), float(hk), float(bk), bool(hk < alpha), len(keys))
    return out
