"""Progress of one run: a plain line per epoch for logs, or Lightning's bar (with this epoch's numbers) on a terminal.

A redirected log gets whole lines only (no carriage returns); the interactive bar is for a terminal.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar

from .epoch_metrics import find_epoch_metrics
from .run_config import PROGRESS_MODES

__all__ = ["PROGRESS_MODES", "EpochBar", "EpochProgress", "human_duration", "progress_callback"]



def human_duration(seconds: float) -> str:
    """``42s``, ``12m05s``, ``3h20m``: short and unambiguous in a log line."""
    if not math.isfinite(seconds):
        return "?"
    s = max(int(round(seconds)), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _stamp(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


class EpochProgress(pl.Callback):
    """One line per epoch: ``epoch 3/100  train_loss 1.234  val_acc 45.67%  1,234 img/s  12.3s/epoch  ETA 19m40s``.

    The numbers are the epoch's row of ``metrics.csv`` (so list this callback after ``EpochMetrics``); the ETA is
    the mean epoch time measured in this process (the first epoch, which pays for warm-up, left out once there
    are others) times the epochs left, and covers training only. ``name`` prefixes every line (a sweep uses the
    trial's row and seed); ``log`` prints it (default: stdout with a time stamp, flushed).
    """

    def __init__(self, name: str = "", log: Callable[[str], None] | None = None) -> None:
        self.prefix = f"{name}: " if name else ""
        self.write = log or _stamp
        self._seconds: list[float] = []

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._seconds = []
        metrics = find_epoch_metrics(trainer)
        if metrics is not None and metrics.restored:
            self.write(f"{self.prefix}resumed from its checkpoint after epoch {metrics.restored}/{trainer.max_epochs}")

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        metrics = find_epoch_metrics(trainer)
        if metrics is None or not metrics.rows or metrics.rows[-1]["epoch"] != trainer.current_epoch:
            return
        row = metrics.rows[-1]
        self._seconds.append(row["epoch_s"])
        steady = self._seconds[1:] or self._seconds
        left = (trainer.max_epochs or 0) - trainer.current_epoch - 1
        eta = sum(steady) / len(steady) * left
        val = f"  val_acc {row['val_acc']:.2f}%" if math.isfinite(row["val_acc"]) else ""
        self.write(f"{self.prefix}epoch {trainer.current_epoch + 1}/{trainer.max_epochs}  "
                 f"train_loss {row['train_loss']:.4f}{val}  {row['images_per_s']:,.0f} img/s  "
                 f"{row['epoch_s']:.1f}s/epoch  ETA {human_duration(eta)}")


class EpochBar(TQDMProgressBar):
    """Lightning's bar, showing the running epoch's train loss/accuracy and learning rate.

    The stock postfix shows what was last *logged*, and train metrics are logged at the end of an epoch, so
    during epoch k it showed epoch k-1's loss. Validation numbers are the latest validation's.
    """

    def __init__(self, refresh_rate: int = 10) -> None:  # each refresh reads the device-side sums once
        super().__init__(refresh_rate=refresh_rate)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        for key in ("images_per_s", "epoch_s"):
            items.pop(key, None)
        if hasattr(pl_module, "epoch_stats"):  # the sums of the epoch that is training (or just trained)
            stats = pl_module.epoch_stats("train", reduce=False)  # rank 0 alone draws the bar: no collective
            items.update({k: f"{v:.3f}" for k, v in stats.items() if math.isfinite(v)})
            items["lr"] = f"{pl_module.current_lr():.3g}"
        return items


def progress_callback(mode: str, name: str = "") -> pl.Callback | None:
    """The progress callback for ``mode`` (see ``PROGRESS_MODES``): 'auto' is the bar on a terminal, lines otherwise.

    Returns None for 'off' (Lightning's own bar is then disabled by the caller)."""
    if mode not in PROGRESS_MODES:
        raise ValueError(f"progress={mode!r}: expected one of {', '.join(PROGRESS_MODES)}")
    if mode == "auto":
        mode = "bar" if sys.stdout.isatty() else "lines"
    if mode == "bar":
        return EpochBar()
    return EpochProgress(name) if mode == "lines" else None
