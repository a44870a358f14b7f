"""Our own Optuna pruning callback for the `pytorch_lightning` namespace.

optuna_integration's callback is built on `lightning.pytorch` and rejects a `pytorch_lightning.Trainer`
(optuna#4689); this one is a `pytorch_lightning.Callback`. Kept in its own module so that table sweeps never pay
for importing Lightning just to parse arguments.
"""

from __future__ import annotations

import math

import optuna
import pytorch_lightning as pl


class PruningCallback(pl.Callback):
    """Report `monitor` to the trial after every validation epoch and stop the run if the pruner says so."""

    def __init__(self, trial: optuna.Trial, monitor: str = "val_acc") -> None:
        super().__init__()
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return  # nothing to report this epoch (e.g. validation every n epochs)
        epoch = trainer.current_epoch
        value = float(value)
        self.trial.report(value, step=epoch)
        if math.isfinite(value) and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with {self.monitor}={value:.2f}")
