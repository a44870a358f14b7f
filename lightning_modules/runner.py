"""One training run: ``run(RunConfig) -> dict``: fit, test, then evaluation at other input sizes.

The sweep calls this once per trial, so it is explicit about everything a trial must not inherit from the
previous one: the seed (set at the start of every run), the device/precision policy, Lightning's loggers (off
unless ``logger``) and console chatter (off unless ``progress``). Epoch ends write a checkpoint to
``run_dir/checkpoints/last.ckpt`` (every ``checkpoint_every_s``, and after the final epoch); a run started again on
a run folder holding one resumes from it and ends with the same numbers as an uninterrupted run. It is deleted
when the run completes unless ``keep_checkpoint``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

import hiremlp

from .checkpoints import AtomicCheckpointIO, LastCheckpoint, TrainingRNG, checkpoint_dir, resumable_checkpoint
from .classifier import HireMLPClassifier
from .cuda_settings import use_training_math
from .datamodule import CIFAR10DataModule, CIFAR100DataModule, CIFARDataModule
from .dataset_classes import dataset_classes
from .distributed import trainer_kwargs
from .epoch_metrics import METRIC_COLUMNS, EpochMetrics
from .gpu_loader import GpuBatches
from .host_memory import keep_freed_memory
from .loggers import make_loggers, parse_loggers
from .predictions import encode, key_at
from .progress import EpochBar, progress_callback
from .run_config import RUN_CONTROL, RunConfig

__all__ = ["DATAMODULES", "METRIC_COLUMNS", "RUN_CONTROL", "EpochMetrics", "RunConfig", "classifier_hparams",
           "default_run_dir", "run"]

DATAMODULES: dict[str, type[CIFARDataModule]] = {"cifar10": CIFAR10DataModule, "cifar100": CIFAR100DataModule}


@contextlib.contextmanager
def _quiet(all_warnings: bool) -> Iterator[None]:
    """Silence Lightning's banners ('GPU available...', tips) and its advisory warnings (all when not ``progress``)."""
    loggers = [logging.getLogger(n) for n in ("pytorch_lightning", "lightning_fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            if all_warnings:
                warnings.filterwarnings("ignore", module=r"(pytorch_lightning|lightning_fabric)(\.|$)")
            warnings.filterwarnings("ignore", message=r".*(does not have many workers|LeafSpec|treespec"
                                                      r"|exists and is not empty|module\(s\) in eval mode).*")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def classifier_hparams(cfg: RunConfig, model_cfg: hiremlp.HireMLPConfig, channels_last: bool) -> dict[str, Any]:
    """``HireMLPClassifier``'s arguments for ``cfg``: the model's ``spec()`` (not ``to_flat()``: a Hire model's
    record, and so its checkpoint's resumability, is what it was before the token-mixer fields existed), the recipe
    but its drop path (that one is in the model), the layout and compilation."""
    recipe = {k: v for k, v in cfg.recipe.to_flat().items() if k != "drop_path"}
    return {**model_cfg.spec(), **recipe, "channels_last": channels_last, "compile": cfg.compile}


def default_run_dir() -> str:
    """``runs/single/<UTC timestamp>``."""
    return str(Path("runs", "single", datetime.now(UTC).strftime("%Y%m%d-%H%M%S")))


def _write_json(path: Path, obj: dict[str, Any]) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # ranks of a multi-node run may write at once
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def run(cfg: RunConfig, callbacks: Sequence[pl.Callback] = ()) -> dict[str, Any]:
    """Train, validate each epoch, test once, then evaluate at ``cfg.eval_sizes``; returns the result dict.

    Raises ValueError (bad config, ``DatasetError`` for data problems), ``DivergedError`` on a non-finite
    training loss, and whatever the extra ``callbacks`` raise (e.g. ``optuna.TrialPruned``).
    """
    wall0 = time.perf_counter()
    res = cfg.resolved()
    if cfg.dataset == "imagefolder" and not cfg.data_dir:
        raise ValueError("dataset='imagefolder' needs data_dir: the folder holding train/<class>/ and val/<class>/")
    image_size = cfg.train_image_size
    # checks an ImageFolder tree first; under torchrun/SLURM every rank starts here at once: the image check is rank 0's
    from pytorch_lightning.utilities import rank_zero_only

    num_classes = dataset_classes(cfg.dataset, cfg.data_dir, cfg.classes, check=rank_zero_only.rank == 0)
    model_cfg = cfg.model_config(num_classes)
    hiremlp.check_input_size(model_cfg, image_size)
    device = torch.device(res["device"])
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is available")
    if device.type == "cpu":
        keep_freed_memory()  # large activations stop page-faulting every step; bit-identical (host_memory.py)
    run_dir = Path(cfg.run_dir or default_run_dir())
    run_dir.mkdir(parents=True, exist_ok=True)
    hparams = classifier_hparams(cfg, model_cfg, res["channels_last"])
    config = {"run": {**dataclasses.asdict(cfg), "run_dir": str(run_dir)}, "resolved": res,
              "model": model_cfg.spec(), "hparams": hparams}
    ckpt, note = resumable_checkpoint(run_dir, json.loads(json.dumps(config, default=str)), RUN_CONTROL)
    if note:
        warnings.warn(note, stacklevel=2)
    if ckpt is None:
        (run_dir / "result.json").unlink(missing_ok=True)  # an earlier attempt's, if any
    _write_json(run_dir / "config.json", config)

    with _quiet(cfg.progress == "off"):
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
        if device.type == "cuda":
            use_training_math()
        if cfg.compile:  # a long-lived worker: earlier runs' graphs would count against Dynamo's recompile limit
            from torch import _dynamo

            _dynamo.reset()
        dm = _datamodule(cfg, device, res["channels_last"], image_size)
        dm.prepare_data()
        if res["world_size"] == 1:  # under DDP Lightning sets it up once each rank has its device
            dm.setup("fit")
        module = HireMLPClassifier(**hparams)
        metrics = EpochMetrics(run_dir / "metrics.csv")
        progress = progress_callback(cfg.progress)
        loggers = make_loggers(parse_loggers(cfg.logger), run_dir, run_dir.name)
        trainer = pl.Trainer(
            **trainer_kwargs("gpu" if device.type == "cuda" else "cpu", cfg.devices, cfg.num_nodes, device.index),
            precision="bf16-mixed" if res["precision"] == "bf16-mixed" else "32-true",
            max_epochs=cfg.recipe.total_epochs, logger=loggers or False, enable_model_summary=False,
            enable_progress_bar=isinstance(progress, EpochBar), num_sanity_val_steps=0, log_every_n_steps=1_000_000,
            limit_val_batches=None if cfg.val_size else 0, plugins=[AtomicCheckpointIO()],
            # metrics first: later callbacks (progress lines, Optuna reports) read the epoch's row
            callbacks=[metrics, TrainingRNG(), *([progress] if progress else []), *callbacks,
                       LastCheckpoint(run_dir, cfg.checkpoint_every_s)],
            default_root_dir=str(run_dir),
        )
        trainer.fit(module, datamodule=dm, ckpt_path=str(ckpt) if ckpt else None)
        test = trainer.test(module, datamodule=dm, verbose=False)[0]

        result: dict[str, Any] = {
            "val_acc": metrics.rows[-1]["val_acc"] if metrics.rows else math.nan,
            "best_val_acc": module.best_val_acc,
            "test_acc": float(test["test_acc"]),
            "test_loss": float(test["test_loss"]),
            "params": hiremlp.count_params(module.model),
            "macs": hiremlp.count_macs(module.model, image_size),
            # steady-state speed: the first epoch pays for warm-up (cudnn autotune, compile)
            "images_per_s": _mean([r["images_per_s"] for r in metrics.rows[1:] or metrics.rows]),
            "epochs_run": len(metrics.rows),
            "resumed_from_epoch": metrics.restored,  # epochs restored from a checkpoint; 0 for a fresh run
            "world_size": trainer.world_size, "global_batch": cfg.recipe.batch_size,
            "per_device_batch": cfg.recipe.batch_size // trainer.world_size, "peak_lr": cfg.recipe.peak_lr,
        }
        if cfg.dataset == "imagefolder":
            result["decoder"] = dm.decoder
        amp = torch.bfloat16 if res["precision"] == "bf16-mixed" else None
        if trainer.world_size == 1:
            result[key_at()] = encode(*(t.numpy() for t in module.test_predictions()))
        else:  # each rank tested its own shard: every rank scores the whole test set once more, for the record
            module.to(device)
            whole = module.evaluate(dm.batches("test", shard=False), amp)
            result[key_at()] = encode(whole["pred"].numpy(), whole["label"].numpy())
        if cfg.eval_sizes:
            result["eval_interpolation"] = GpuBatches.interpolation
            module.to(device)
            for size in cfg.eval_sizes:
                try:
                    hiremlp.check_input_size(model_cfg, size)
                except ValueError as e:
                    result[f"na@{size}"] = str(e)
                    continue
                # every rank scores the whole test set (shard=False): the numbers are global without a reduce
                scored = module.evaluate(dm.batches("test", size=size, shard=False), amp)
                result[f"test_acc@{size}"] = scored["acc"]
                result[key_at(size)] = encode(scored["pred"].numpy(), scored["label"].numpy())
    result["wall_s"] = time.perf_counter() - wall0  # this attempt only
    if trainer.is_global_zero:
        _write_json(run_dir / "result.json", result)
        if not cfg.keep_checkpoint:
            shutil.rmtree(checkpoint_dir(run_dir), ignore_errors=True)
    return result


def _datamodule(cfg: RunConfig, device: torch.device, channels_last: bool,
                image_size: int) -> pl.LightningDataModule:
    common = dict(batch_size=cfg.recipe.batch_size, budget=cfg.budget(), seed=cfg.seed, device=device,
                  channels_last=channels_last, recipe=cfg.recipe)
    if cfg.dataset == "imagefolder":
        from .imagefolder import ImageFolderDataModule

        return ImageFolderDataModule(cfg.data_dir, **common, image_size=image_size, classes=cfg.classes,
                                     workers=cfg.workers, decoder=cfg.decoder)
    return DATAMODULES[cfg.dataset](data_dir=cfg.data_dir, download=cfg.download, **common)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan
