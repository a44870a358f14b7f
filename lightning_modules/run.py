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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

import hiremlp

from .checkpoints import AtomicCheckpointIO, LastCheckpoint, TrainingRNG, checkpoint_dir, resumable_checkpoint
from .classifier import HireMLPClassifier
from .cuda_settings import use_training_math
from .datamodule import CIFAR10DataModule, CIFAR100DataModule, CIFARDataModule, resolve_device
from .dataset_classes import dataset_classes
from .distributed import trainer_kwargs
from .epoch_metrics import METRIC_COLUMNS, EpochMetrics
from .gpu_loader import GpuBatches
from .host_memory import keep_freed_memory
from .loggers import make_loggers, parse_loggers
from .predictions import encode, key_at
from .progress import PROGRESS_MODES, EpochBar, progress_callback
from .recipe import PAPER, Recipe

__all__ = ["DATAMODULES", "METRIC_COLUMNS", "RUN_CONTROL", "EpochMetrics", "RunConfig", "default_run_dir", "run"]

DATAMODULES: dict[str, type[CIFARDataModule]] = {"cifar10": CIFAR10DataModule, "cifar100": CIFAR100DataModule}
#: RunConfig fields that change how a run is watched or kept, not what it trains: a checkpoint made under other
#: values of these still resumes
RUN_CONTROL = frozenset({"run_dir", "data_dir", "download", "eval_sizes", "progress", "checkpoint_every_s",
                         "keep_checkpoint", "logger", "workers"})
DATASETS = (*DATAMODULES, "imagefolder")  # imagefolder: any train/<class>/, val/<class>/ tree (imagefolder.py)


@dataclass
class RunConfig:
    """Everything one run depends on: the model, the data budget, the training ``recipe``, the seeds, the device.

    ``seed`` drives initialisation, the training subset, batch order and augmentation; ``data_seed`` alone picks the
    evaluation images (validation split, eval subsets), so runs with different seeds are scored on the same images.
    """

    preset: str = "cifar_tiny"
    model_overrides: dict[str, Any] = field(default_factory=dict)  # HireMLPConfig fields
    dataset: str = "cifar10"  # 'cifar10' | 'cifar100' | 'imagefolder'
    data_dir: str | None = None  # None: $HIREMLP_DATA, else ~/.cache/hiremlp/data; imagefolder: the tree's root
    download: bool = False
    recipe: Recipe = PAPER  # the released training script's recipe
    train_subset: int | None = None
    val_size: int = 5000
    eval_subset: int | None = None
    data_seed: int = 0
    seed: int = 0
    device: str = "auto"  # 'auto' | 'cpu' | 'cuda'
    precision: str = "auto"  # 'auto' (bf16-mixed on GPU, 32 on CPU) | '32' | 'bf16-mixed'
    compile: bool = False
    channels_last: bool | str = "auto"  # 'auto': on (measured faster on CPU too: benchmarks/bench.py)
    eval_sizes: tuple[int, ...] = ()
    run_dir: str | None = None  # None: runs/single/<UTC timestamp>
    # run control (RUN_CONTROL): how the run is watched and what it keeps
    progress: str = "off"  # 'auto' (bar on a terminal, a line per epoch otherwise) | 'bar' | 'lines' | 'off'
    checkpoint_every_s: float = 60.0  # checkpoint at the first epoch end this long after the last one (0: every epoch)
    keep_checkpoint: bool = False  # keep checkpoints/last.ckpt (the final epoch's) after the run completes
    logger: str = "none"  # 'none' or a comma-separated list of csv, tensorboard, wandb, mlflow

    # imagefolder only: training size (None: 224), classes (None: all, N: the first N, or a class list file),
    # DataLoader workers per process (None: the CPUs it may use, up to 8), decoder (auto | pil | torchvision)
    image_size: int | None = None
    classes: str | None = None
    workers: int | None = None
    decoder: str = "auto"
    # data-parallel training (Lightning DDP): processes per node and nodes; recipe.batch_size stays the global batch
    devices: int = 1
    num_nodes: int = 1


    def __post_init__(self) -> None:
        if isinstance(self.progress, bool):  # the field used to be a flag
            self.progress = "auto" if self.progress else "off"
        if self.progress not in PROGRESS_MODES:
            raise ValueError(f"progress={self.progress!r}: expected one of {', '.join(PROGRESS_MODES)}")
        parse_loggers(self.logger)  # ValueError for unknown names and missing packages, before any work
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}: expected one of {', '.join(DATASETS)}")
        if self.dataset != "imagefolder" and self.image_size not in (None, 32):
            raise ValueError(f"image_size={self.image_size!r}: CIFAR trains at 32 px (use eval_sizes to evaluate "
                             f"at others); image_size is for the imagefolder dataset")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size={self.image_size!r} is not allowed: an integer >= 8")
        for name in ("devices", "num_nodes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: an integer >= 1")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers={self.workers!r} is not allowed: an integer >= 0")
        if self.decoder not in ("auto", "pil", "torchvision"):
            raise ValueError(f"decoder={self.decoder!r}: expected auto, pil or torchvision")
        if self.recipe.batch_size % (self.devices * self.num_nodes):
            raise ValueError(f"batch_size={self.recipe.batch_size} (the global batch) does not divide over "
                             f"devices x num_nodes = {self.devices * self.num_nodes} processes")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device={self.device!r}: expected auto, cpu or cuda")
        self.precision = str(self.precision)
        if self.precision not in ("auto", "32", "32-true", "bf16-mixed"):
            raise ValueError(f"precision={self.precision!r}: expected auto, 32 or bf16-mixed")
        if self.channels_last not in ("auto", True, False):
            raise ValueError(f"channels_last={self.channels_last!r}: expected auto, true or false")
        if not isinstance(self.recipe, Recipe):
            raise ValueError(f"recipe={self.recipe!r}: expected a lightning_modules.Recipe")
        self.eval_sizes = tuple(int(s) for s in self.eval_sizes)
        for name, minimum in (("val_size", 0), ("train_subset", 1), ("eval_subset", 1),
                              ("checkpoint_every_s", 0)):
            value = getattr(self, name)
            if value is not None and value < minimum:
                raise ValueError(f"{name}={value!r} is not allowed: a number >= {minimum}")
        self.model_config(None)  # the preset, the overrides and the drop path, checked where they are combined
        if any(s < 1 for s in self.eval_sizes):
            raise ValueError(f"eval_sizes={self.eval_sizes!r}: sizes must be >= 1")

    def model_config(self, num_classes: int | None) -> hiremlp.HireMLPConfig:
        """The preset with ``model_overrides`` (and ``drop_path``) applied; ValueError on bad fields."""
        return hiremlp.row_config(self.preset, self.model_overrides, drop_path=self.recipe.drop_path,
                                  num_classes=num_classes)

    def resolved(self) -> dict[str, Any]:
        """Device, precision and channels_last with 'auto' replaced by what the run actually uses."""
        dev = resolve_device(self.device)
        cuda = dev.type == "cuda"
        precision = ("bf16-mixed" if cuda else "32") if self.precision == "auto" else self.precision
        if precision == "32-true":
            precision = "32"
        channels_last = True if self.channels_last == "auto" else bool(self.channels_last)
        world = self.devices * self.num_nodes
        return {"device": str(dev), "precision": precision, "channels_last": channels_last, "world_size": world,
                "global_batch": self.recipe.batch_size, "per_device_batch": self.recipe.batch_size // world,
                "peak_lr": self.recipe.peak_lr}


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
    image_size = (cfg.image_size or 224) if cfg.dataset == "imagefolder" else 32
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
    recipe = {k: v for k, v in cfg.recipe.to_flat().items() if k != "drop_path"}  # that one is in the model
    # spec(), not to_flat(): a Hire model's record (and so its checkpoint's resumability) is what it was before
    # the token-mixer fields existed
    hparams = {**model_cfg.spec(), **recipe, "channels_last": res["channels_last"], "compile": cfg.compile}
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
    if cfg.dataset == "imagefolder":
        from .imagefolder import ImageFolderDataModule

        return ImageFolderDataModule(cfg.data_dir, batch_size=cfg.recipe.batch_size, val_size=cfg.val_size,
                                     train_subset=cfg.train_subset, eval_subset=cfg.eval_subset, seed=cfg.seed,
                                     data_seed=cfg.data_seed, device=device, channels_last=channels_last,
                                     recipe=cfg.recipe, image_size=image_size, classes=cfg.classes,
                                     workers=cfg.workers, decoder=cfg.decoder)
    return DATAMODULES[cfg.dataset](data_dir=cfg.data_dir, batch_size=cfg.recipe.batch_size, val_size=cfg.val_size,
                                    train_subset=cfg.train_subset, eval_subset=cfg.eval_subset, seed=cfg.seed,
                                    data_seed=cfg.data_seed, device=device, download=cfg.download,
                                    channels_last=channels_last, recipe=cfg.recipe)


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan
