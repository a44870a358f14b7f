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
    """Saves the global torch RNG states with each checkpoint (the CPU's, and the CUDA generator of the device each
    rank trains on, gathered rank by rank); restores them when training resumes, just before the first resumed
    batch, so nothing in between can draw from them.

    Per rank, not per visible device: ``torch.cuda.get_rng_state_all()`` would give every rank rank 0's view of all
    the devices it can see, and a checkpoint written where more GPUs were visible than where it is resumed (a cell
    retried by a worker pinned with ``CUDA_VISIBLE_DEVICES``) would fail to load on every retry. A run resumed on
    fewer ranks than it was saved with gives rank r the state of saved rank r (rank 0's if there is none).
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._trainer: pl.Trainer | None = None

    @property
    def state_key(self) -> str:
        return "TrainingRNG"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"torch": torch.get_rng_state()}
        device = self._trainer.strategy.root_device if self._trainer is not None else None
        if device is not None and device.type == "cuda":
            state["cuda_by_rank"] = gather_rank_states(self._trainer, torch.cuda.get_rng_state(device))
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._pending is None:
            return
        torch.set_rng_state(self._pending["torch"])
        device = trainer.strategy.root_device
        saved = cuda_state_for(self._pending, trainer.global_rank, device)
        if saved is not None and device.type == "cuda":
            torch.cuda.set_rng_state(saved, device)
        self._pending = None


def gather_rank_states(trainer: pl.Trainer, state: torch.Tensor) -> list[torch.Tensor]:
    """Every rank's copy of ``state`` (a uint8 RNG state), in rank order; ``[state]`` in a single process. Every
    rank calls it: Lightning builds a checkpoint's contents on all ranks before rank 0 writes it."""
    if trainer.world_size <= 1:
        return [state]
    gathered = trainer.strategy.all_gather(state.to(trainer.strategy.root_device))
    return [row.cpu() for row in gathered]


def cuda_state_for(saved: dict[str, Any], rank: int, device: torch.device) -> torch.Tensor | None:
    """The CUDA RNG state this rank restores from a checkpoint's ``TrainingRNG`` state, or None if it has none.

    Checkpoints made before per-rank states hold ``cuda``: one state per device index of the saving process."""
    if saved.get("cuda_by_rank"):
        states = saved["cuda_by_rank"]
        return states[rank] if rank < len(states) else states[0]
    if saved.get("cuda"):
        states = saved["cuda"]
        index = device.index or 0
        return states[index] if index < len(states) else states[0]
    return None


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
        due = final or time.monotonic() - self._since >= self.every_s
        # rank 0's clock decides for all: a rank that saved alone would wait in the checkpoint's barrier forever
        if trainer.strategy.broadcast(due, src=0):
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
