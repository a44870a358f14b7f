"""A stored trial read as table rows: the one reading of what a sweep keeps in its Optuna storage.

The sweep writes its `results.csv`, `curves.csv` and `predictions.csv` with these functions and `analysis.load` reads
a storage with them, so the files and a storage read directly give the same columns from the same attrs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lightning_modules.predictions import KEY as PREDICTIONS_KEY
from lightning_modules.predictions import decode

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

#: system attr of a trial per epoch (+ f"{epoch:04d}"): that epoch's metrics.csv row (sweeps.reporting writes it)
EPOCH_ATTR = "epoch_metrics:"
FIXED_COLUMNS = [
    "study", "protocol", "row", "seed", "trial", "state", "fail_reason", "val_acc", "best_val_acc", "test_acc",
    "params", "macs", "images_per_s", "wall_s", "run_dir", "code_version",
]
#: flat attrs results.csv keeps besides the fixed columns (`protocol.description` excepted)
_KEPT = ("test_acc@", "na@", "cfg.", "protocol.", "recipe.", "hp.")


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out[prefix] = value


def trial_record(trial: FrozenTrial) -> dict[str, Any]:
    """Every stored fact of a trial, flat: its params (`row`, `seed`; the others as `hp.<name>`), its user attrs
    (nested ones as dotted keys: `cfg.depths`, `protocol.train_subset`), `trial` and `state`."""
    out: dict[str, Any] = {}
    _flatten({k if k in ("row", "seed") else f"hp.{k}": v for k, v in trial.params.items()}, "", out)
    _flatten(dict(trial.user_attrs), "", out)
    out["trial"], out["state"] = trial.number, trial.state.name
    return out


def result_row(trial: FrozenTrial, study: str, protocol: str) -> dict[str, Any]:
    """One `results.csv` row (columns per docs/DESIGN.md): the fixed columns, then the record's sizes, model config,
    protocol, recipe and tuned values."""
    a, record = trial.user_attrs, trial_record(trial)
    cell = "row" in a and "seed" in a
    row = {"study": study, "protocol": protocol, "row": str(a["row"]) if cell else a.get("row", ""),
           "seed": int(a["seed"]) if cell else "", "trial": trial.number, "state": trial.state.name,
           **{k: a.get(k, "") for k in FIXED_COLUMNS[6:]}}
    if "threads" in a:  # CPU intra-op threads the trial ran with
        row["threads"] = a["threads"]
    row.update({k: v for k, v in record.items() if k.startswith(_KEPT) and k != "protocol.description"})
    return row


def size_key(column: str) -> tuple[int, int]:
    """Order of the per-size columns: by size, `test_acc@` before `na@`."""
    name, _, size = column.partition("@")
    return int(size) if size.isdigit() else 0, 0 if name == "test_acc" else 1


def curve_rows(trial: FrozenTrial) -> list[dict]:
    """The trial's per-epoch metrics from the storage: the `epoch_metrics:*` system attrs, or, for trials that have
    only intermediate values (recorded before those attrs existed), `val_acc` per step."""
    rows = [dict(v) for k, v in sorted(trial.system_attrs.items()) if k.startswith(EPOCH_ATTR) and isinstance(v, dict)]
    if not rows:
        rows = [{"epoch": step, "val_acc": value} for step, value in sorted(trial.intermediate_values.items())]
    return rows


def prediction_codes(trial: FrozenTrial) -> dict[str, str]:
    """The trial's stored per-image predictions: {result key (`predictions`, `predictions@<size>`): code}."""
    return {k: v for k, v in trial.user_attrs.items()
            if (k == PREDICTIONS_KEY or k.startswith(PREDICTIONS_KEY + "@")) and isinstance(v, str)}


def _finished_cells(trials: Sequence[FrozenTrial]):
    """(row, seed, trial) of the COMPLETE trials that are grid cells, in trial order."""
    for t in sorted(trials, key=lambda t: t.number):
        a = t.user_attrs
        if "row" in a and "seed" in a and t.state.name == "COMPLETE":
            yield str(a["row"]), int(a["seed"]), t


def finished_values(trials: Sequence[FrozenTrial], metric: str) -> dict[str, dict[int, float]]:
    """row -> seed -> metric of the COMPLETE grid trials (the trial's value when the metric is missing; the first
    trial of a cell when a cell has two)."""
    out: dict[str, dict[int, float]] = {}
    for row, seed, t in _finished_cells(trials):
        value = t.user_attrs.get(metric, t.value)
        if value is not None and math.isfinite(float(value)):
            out.setdefault(row, {}).setdefault(seed, float(value))
    return out


def finished_outcomes(trials: Sequence[FrozenTrial]) -> dict[str, dict[int, np.ndarray]]:
    """row -> seed -> per-image outcomes (1 where the test image was right) of the COMPLETE grid trials that kept
    their predictions."""
    out: dict[str, dict[int, np.ndarray]] = {}
    for row, seed, t in _finished_cells(trials):
        if isinstance(code := t.user_attrs.get(PREDICTIONS_KEY), str):
            pred, label = decode(code)
            out.setdefault(row, {}).setdefault(seed, (pred == label).astype(float))
    return out
