"""The run's last checkpoint, written with Lightning's own machinery, and an exact resume from it.

A checkpoint holds what Lightning saves (weights with the EMA copy, optimizer, scheduler, loop counters, callback
states such as the ``metrics.csv`` rows) plus what decides the rest of training and Lightning does not save: the
global torch RNGs (drop-path, mixup/CutMix) and, through the data module's state, the epoch counter that seeds the
device-resident loader's shuffle and augmentation. It is written at the end of an epoch (every epoch, or when a
given time has passed since the last one), atomically (a kill mid-write leaves the previous one), so a run killed
at any point resumes at its last checkpointed epoch and ends with the same numbers as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.plugins.io import TorchCheckpointIO

__all__ = ["AtomicCheckpointIO", "LastCheckpoint", "TrainingRNG", "checkpoint_dir", "last_checkpoint",
           "resumable_checkpoint"]

CHECKPOINT_DIR = "checkpoints"
LAST = "last.ckpt"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR


def last_checkpoint(run_dir: Path) -> Path:
    return checkpoint_dir(run_dir) / LAST


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` to a temporary file beside the target, then ``os.replace``: never a half-written checkpoint."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)


class TrainingRNG(pl.Callback):
    """Saves the global torch RNG states (CPU and every CUDA device) with each checkpoint; restores them when
    training resumes, just before the first resumed batch, so nothing in between can draw from them."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None

    @property
    def state_key(self) -> str:
        return "TrainingRNG"

    def state_dict(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None:
            return
        torch.set_rng_state(self._pending["torch"])
        if "cuda" in self._pending and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(self._pending["cuda"])
        self._pending = None


class LastCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint keeping one file, ``checkpoints/last.ckpt``, written at the end of an epoch
    when ``every_s`` seconds of training passed since the last one (0: every epoch), and after the final epoch.

    Epoch ends only: Lightning cannot resume this loader mid-epoch exactly. The time limit bounds what a crash
    costs while keeping the writes rare when epochs are short (a cifar_small checkpoint with AdamW state is
    ~0.4 GB). (``save_last=True`` would write a second copy beside the top-k file; with no monitor, the single
    top-k file named ``last`` is the last checkpoint.)"""

    def __init__(self, run_dir: Path, every_s: float) -> None:
        super().__init__(dirpath=str(checkpoint_dir(run_dir)), filename=Path(LAST).stem, monitor=None,
                         save_top_k=1, enable_version_counter=False, save_on_train_epoch_end=True)
        self.every_s = every_s
        self._since = time.monotonic()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._since = time.monotonic()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        final = trainer.current_epoch + 1 >= (trainer.max_epochs or 0)
        if final or time.monotonic() - self._since >= self.every_s:
            super().on_train_epoch_end(trainer, pl_module)
            self._since = time.monotonic()


def _training_part(config: dict[str, Any], run_control: frozenset[str]) -> dict[str, Any]:
    """What decides the trained weights: everything in ``config.json`` except the run-control fields."""
    run = {k: v for k, v in config.get("run", {}).items() if k not in run_control}
    return json.loads(json.dumps({**config, "run": run}, sort_keys=True, default=str))


def resumable_checkpoint(run_dir: Path, config: dict[str, Any], run_control: frozenset[str]) -> tuple[Path | None, str]:
    """``(checkpoint, note)``: the last checkpoint in ``run_dir`` if it was made with the same training config.

    A checkpoint of another config (the run folder was reused with other epochs, say) cannot continue this run:
    it is deleted, and ``note`` says why, so the caller can tell the user it starts over."""
    ckpt = last_checkpoint(run_dir)
    if not ckpt.is_file():
        return None, ""
    try:
        old = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        old = {}
    a, b = _training_part(old, run_control), _training_part(config, run_control)
    if a == b:
        return ckpt, ""
    diff = sorted(f"{section}.{k}" for section in ("run", "hparams", "model", "resolved")
                  for k in set(a.get(section, {})) | set(b.get(section, {}))
                  if a.get(section, {}).get(k) != b.get(section, {}).get(k))
    shutil.rmtree(checkpoint_dir(run_dir), ignore_errors=True)
    return None, (f"{ckpt} was saved with another configuration ({', '.join(diff[:4]) or 'config.json missing'}"
                  f"{' ...' if len(diff) > 4 else ''}): starting over")
