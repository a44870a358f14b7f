"""Our own Optuna pruning callback for the `pytorch_lightning` namespace.

optuna_integration's callback is built on `lightning.pytorch` and rejects a `pytorch_lightning.Trainer`
(optuna#4689); this one is a `pytorch_lightning.Callback`: `sweeps.reporting.TrialReport` with pruning on.
"""

from __future__ import annotations

import optuna

from sweeps.reporting import TrialReport


class PruningCallback(TrialReport):
    """Report `monitor` (and the epoch's metrics) to the trial after every validation epoch and stop the run if
    the pruner says so."""

    def __init__(self, trial: optuna.Trial, monitor: str = "val_acc") -> None:
        super().__init__(trial, monitor, prune=True)
