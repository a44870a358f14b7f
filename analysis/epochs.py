"""Whether a difference holds with training: each row's difference to the default per epoch, from the stored
curves, and whether it is still moving over the last epochs.

A short protocol stops while validation accuracy still rises; if the difference between two rows is growing or
shrinking at the end, the table's number belongs to that epoch budget, not to the rows. Per epoch the difference
is the paired interval over the seeds both rows ran (`stats.diff_ci`); the trend is each seed's least-squares
slope of its difference over the last epochs, with a t interval over the seeds (the seeds are the sample: the
epochs of one seed are not independent).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats as sps

from analysis.stats import diff_ci

TREND_EPOCHS = 3


def _by_seed(curves: pd.DataFrame, row: str, metric: str) -> pd.DataFrame:
    """epochs x seeds table of `metric` for one row (seed a column; a rerun seed keeps its last trial)."""
    g = curves[(curves["row"] == row) & curves["seed"].notna()]
    g = g.drop_duplicates(subset=["seed", "epoch"], keep="last")
    return g.pivot(index="epoch", columns="seed", values=metric).sort_index()


def difference_per_epoch(curves: pd.DataFrame, rows: Sequence[str], default: str, metric: str = "val_acc",
                         level: float = 0.95) -> pd.DataFrame:
    """One record per (row, epoch): `diff`, `low`, `high`, `n` (paired over the seeds both rows have that
    epoch for; Welch, or no interval, as `diff_ci` decides)."""
    cols = ["row", "epoch", "diff", "low", "high", "n", "method"]
    if curves.empty or metric not in curves.columns or default not in set(curves["row"]):
        return pd.DataFrame(columns=cols)
    ref = _by_seed(curves, default, metric)
    records = []
    for row in rows:
        if row == default or row not in set(curves["row"]):
            continue
        mine = _by_seed(curves, row, metric)
        for epoch in mine.index.intersection(ref.index):
            ci = diff_ci(mine.loc[epoch].dropna().to_dict(), ref.loc[epoch].dropna().to_dict(), level)
            records.append({"row": row, "epoch": int(epoch), "diff": ci.diff, "low": ci.low, "high": ci.high,
                            "n": ci.n_row, "method": ci.method})
    return pd.DataFrame.from_records(records, columns=cols)


@dataclass(frozen=True)
class Trend:
    """Slope (points per epoch) of a row's difference to the default over its last `epochs`, with an interval."""

    row: str
    epochs: tuple[int, ...]
    last: float  # the difference at the last epoch (mean over seeds)
    slope: float
    low: float
    high: float
    n_seeds: int

    @property
    def moving(self) -> str:
        """'growing' / 'shrinking' (in size, when the interval excludes 0), 'steady' (it includes 0), or '' (no
        interval: fewer than 2 seeds or 2 epochs)."""
        if math.isnan(self.low):
            return ""
        if self.low <= 0.0 <= self.high:
            return "steady"
        return "growing" if (self.slope > 0) == (self.last > 0) else "shrinking"


def trend(curves: pd.DataFrame, row: str, default: str, metric: str = "val_acc", last: int = TREND_EPOCHS,
          level: float = 0.95) -> Trend:
    """Paired per-seed slopes of row minus default over the last `last` epochs both have."""
    nan = Trend(row, (), math.nan, math.nan, math.nan, math.nan, 0)
    if curves.empty or metric not in curves.columns or not {row, default} <= set(curves["row"]):
        return nan
    d = (_by_seed(curves, row, metric) - _by_seed(curves, default, metric)).dropna(how="all").dropna(axis=1)
    d = d.iloc[-last:]
    if d.empty:
        return nan
    epochs = tuple(int(e) for e in d.index)
    final = float(d.iloc[-1].mean())
    if len(epochs) < 2:
        return Trend(row, epochs, final, math.nan, math.nan, math.nan, d.shape[1])
    x = np.asarray(d.index, dtype=float)
    slopes = np.polyfit(x, d.to_numpy(dtype=float), 1)[0]  # one slope per seed
    n = slopes.size
    if n < 2:
        return Trend(row, epochs, final, float(slopes.mean()), math.nan, math.nan, n)
    mean, se = float(slopes.mean()), float(slopes.std(ddof=1)) / math.sqrt(n)
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * se
    return Trend(row, epochs, final, mean, mean - half, mean + half, n)


def trend_sentence(t: Trend) -> str:
    """One line for the report: the last epoch's difference and whether it is still moving."""
    if not t.epochs:
        return f"{t.row}: no curves in common with the default row."
    span = f"epochs {t.epochs[0]}-{t.epochs[-1]}" if len(t.epochs) > 1 else f"epoch {t.epochs[0]}"
    head = f"{t.row}: " + f"{t.last:+.2f}".replace("-", "−") + f" points at epoch {t.epochs[-1]}"
    if not t.moving:
        return f"{head}; no trend interval ({t.n_seeds} seed(s), {span})."
    slope = f"{t.slope:+.2f} [{t.low:+.2f}, {t.high:+.2f}]".replace("-", "−")
    verdict = ("not resolved as moving (the interval includes 0)" if t.moving == "steady"
               else f"still {t.moving} at the end of training")
    return f"{head}; {slope} points per epoch over {span} ({t.n_seeds} seeds): {verdict}."
