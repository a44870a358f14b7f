"""Per-image outcomes of a study's rows, from the predictions every trial keeps (`lightning_modules.predictions`):
which test images each seed of each row got right, checked before anything is paired image by image.

Pairing at the image level needs every trial scored on the same images in the same order (the labels travel with
the predictions, so this is checked) and predictions that reproduce the accuracy the table reports. A row that
fails a check gets no per-image statistics, and its `status` says why; studies run before predictions were kept
have the status "no predictions".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lightning_modules.predictions import KEY, decode

NO_PREDICTIONS = "no predictions"
ACC_TOLERANCE = 1e-3  # points: Lightning logs test_acc as float32, the predictions give it exactly


@dataclass
class RowOutcomes:
    """One row's predicted class per seed (int arrays over the test images), or the reason there are none."""

    pred: dict[Any, np.ndarray] = field(default_factory=dict)
    label: np.ndarray | None = None
    status: str = ""

    @property
    def ok(self) -> bool:
        return not self.status

    def correct(self, seeds: list[Any]) -> np.ndarray:
        """(seeds, images) array of 1 where that seed got that image right."""
        return np.stack([(self.pred[s] == self.label).astype(float) for s in seeds])


def row_outcomes(ok: pd.DataFrame, metric: str, key: str = KEY) -> RowOutcomes:
    """Decode the finished trials' predictions (`ok` has `seed`, `metric` and `key` columns, one trial per seed)."""
    if key not in ok.columns or ok[key].isna().all():
        return RowOutcomes(status=NO_PREDICTIONS)
    if not metric.startswith("test_acc"):
        return RowOutcomes(status=f"the table's metric is {metric}, the predictions are of the test set")
    out = RowOutcomes()
    missing = []
    for seed, code, acc in zip(ok["seed"], ok[key], ok[metric], strict=True):
        if not isinstance(code, str) or pd.isna(seed):
            missing.append(seed)
            continue
        pred, label = decode(code)
        if out.label is None:
            out.label = label
        elif not np.array_equal(label, out.label):
            return RowOutcomes(status=f"seed {int(seed)} was scored on other test images")
        if not math.isclose(100.0 * float((pred == label).mean()), float(acc), abs_tol=ACC_TOLERANCE):
            return RowOutcomes(status=f"the predictions of seed {int(seed)} do not reproduce its {metric}")
        out.pred[int(seed)] = pred
    if missing:
        seeds = ", ".join("?" if pd.isna(s) else str(int(s)) for s in missing)
        return RowOutcomes(status=f"{NO_PREDICTIONS} for seed(s) {seeds}")
    return out


def pair_status(row: RowOutcomes, ref: RowOutcomes, seeds: list[Any]) -> str:
    """Why two rows cannot be paired image by image over `seeds` ('' when they can)."""
    for what, o in (("row", row), ("default", ref)):
        if not o.ok:
            return o.status if what == "row" or o.status == NO_PREDICTIONS else f"default row: {o.status}"
    if len(seeds) < 2:
        return "fewer than 2 seeds in common"
    if not np.array_equal(row.label, ref.label):
        return "scored on other test images than the default row"
    return ""
