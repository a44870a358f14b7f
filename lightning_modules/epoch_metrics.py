"""``metrics.csv``: one row per epoch, kept in every checkpoint so a resumed run continues the same file."""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

__all__ = ["METRIC_COLUMNS", "EpochMetrics", "find_epoch_metrics"]

METRIC_COLUMNS = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr", "images_per_s", "epoch_s")


class EpochMetrics(pl.Callback):
    """Writes ONE ``metrics.csv`` row per epoch (CSVLogger splits train and val into sparse rows).

    Times the training part of each epoch (CUDA-synchronised) for ``images_per_s``; ``epoch_s`` includes
    validation. The row is written when validation ends, before a pruning callback may stop the run, so a
    pruned or crashed run keeps its whole curve. The rows are this callback's checkpoint state: a resumed run
    rewrites ``metrics.csv`` from the checkpoint's rows, so epochs finished after the last checkpoint (and run
    again) never appear twice.
    """

    def __init__(self, path: Path | None) -> None:
        self.path, self.rows = path, []
        self.restored = 0  # rows that came from a checkpoint
        self._t0 = self._t_train = 0.0
        self._n = 0

    @property
    def state_key(self) -> str:
        return "EpochMetrics"

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state_dict.get("rows", [])]
        self.restored = len(self.rows)

    @staticmethod
    def _now(module: pl.LightningModule) -> float:
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return time.perf_counter()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # on one device Lightning restores a checkpoint's callback states before this hook: the file then holds
        # exactly the restored rows
        if not trainer.is_global_zero:  # under DDP one process writes the curve
            self.path = None
        if self.path is not None:
            with open(self.path, "w", newline="") as f:
                writer = csv.writer(f)
                writer.writerow(METRIC_COLUMNS)
                writer.writerows([row[c] for c in METRIC_COLUMNS] for row in self.rows)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._n, self._t0 = 0, self._now(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._n += len(batch[1]) * trainer.world_size  # every rank steps the same number of its own images
        if batch_idx + 1 == trainer.num_training_batches:
            self._t_train = self._now(pl_module)

    def _write_row(self, trainer: pl.Trainer, pl_module: Any) -> None:
        end = self._now(pl_module)
        val = {k: float(v) for k, v in trainer.callback_metrics.items() if k in ("val_loss", "val_acc")}
        row = {"epoch": trainer.current_epoch, **pl_module.epoch_stats("train"),
               "val_loss": val.get("val_loss", math.nan), "val_acc": val.get("val_acc", math.nan),
               "lr": pl_module.current_lr(),
               "images_per_s": self._n / max(self._t_train - self._t0, 1e-9), "epoch_s": end - self._t0}
        self.rows.append(row)
        if self.path is not None:
            with open(self.path, "a", newline="") as f:
                csv.writer(f).writerow([row[c] for c in METRIC_COLUMNS])

    def on_validation_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        # written here, before a pruning callback (listed after this one) can stop the run at this epoch
        if not trainer.sanity_checking and trainer.state.fn == "fit":
            self._write_row(trainer, pl_module)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        # Lightning runs the epoch's validation before this hook; without validation the row is written here
        if not self.rows or self.rows[-1]["epoch"] != trainer.current_epoch:
            self._write_row(trainer, pl_module)
        pl_module.log_dict({"images_per_s": self.rows[-1]["images_per_s"], "epoch_s": self.rows[-1]["epoch_s"]})


def find_epoch_metrics(trainer: Any) -> EpochMetrics | None:
    """The run's ``EpochMetrics`` callback, for callbacks that report its rows (progress lines, Optuna)."""
    return next((cb for cb in getattr(trainer, "callbacks", ()) if isinstance(cb, EpochMetrics)), None)
