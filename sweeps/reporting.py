"""Each epoch of a trial, reported to its Optuna trial as it happens: curves live in the storage, not on one disk.

`val_acc` goes in as the trial's intermediate value at step = epoch (optuna-dashboard draws it; a tune study's
pruner reads it); the epoch's whole `metrics.csv` row goes in as the system attr `epoch_metrics:<epoch, 4 digits>`,
so a report built on any machine that reads the storage has every trial's curves. A trial resumed from a
checkpoint is a new Optuna trial: it first reports the epochs its checkpoint restored.

Kept apart from `sweeps.run` so that parsing arguments never imports Lightning.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
import pytorch_lightning as pl

from analysis.trial_rows import EPOCH_ATTR
from lightning_modules.epoch_metrics import find_epoch_metrics


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    """Plain numbers, NaN/inf as None (strict JSON readers, such as the dashboard's, reject NaN)."""
    out = {}
    for k, v in row.items():
        v = float(v) if not isinstance(v, (int, str)) else v
        out[k] = None if isinstance(v, float) and not math.isfinite(v) else v
    return out


class TrialReport(pl.Callback):
    """Report `monitor` and the epoch's metrics row to the trial after every validation; prune if `prune` and the
    study's pruner says so (table studies: never)."""

    def __init__(self, trial: optuna.Trial, monitor: str = "val_acc", prune: bool = False) -> None:
        super().__init__()
        self.trial, self.monitor, self.prune = trial, monitor, prune

    def _report(self, epoch: int, value: float, row: dict[str, Any]) -> None:
        if math.isfinite(value):
            self.trial.report(value, step=epoch)
        self.trial.storage.set_trial_system_attr(self.trial._trial_id, f"{EPOCH_ATTR}{epoch:04d}",  # noqa: SLF001
                                                 _jsonable(row))

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = find_epoch_metrics(trainer)
        for row in metrics.rows[:metrics.restored] if metrics is not None else ():
            self._report(int(row["epoch"]), float(row.get(self.monitor, math.nan)), row)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return  # nothing to report this epoch (e.g. validation every n epochs)
        epoch, value = trainer.current_epoch, float(value)
        metrics = find_epoch_metrics(trainer)
        row = metrics.rows[-1] if metrics is not None and metrics.rows else {}
        self._report(epoch, value, row if row.get("epoch") == epoch else {"epoch": epoch, self.monitor: value})
        if self.prune and math.isfinite(value) and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with {self.monitor}={value:.2f}")
