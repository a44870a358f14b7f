"""The function a worker calls to train one cell. `lightning` is the real one; `fake` tests the sweep machinery
in milliseconds. Any `module:function` with the same signature can be passed with --trainer."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from ablations import Study
from sweeps.protocols import Protocol

Trainer = Callable[["TrialJob", Sequence[Any]], dict]


@dataclass(frozen=True)
class TrialJob:
    """One training run, fully specified: the protocol with this trial's hyperparameters applied."""

    study: str
    row: str
    seed: int
    overrides: dict  # hiremlp.HireMLPConfig fields
    protocol: Protocol
    preset: str
    run_dir: Path
    eval_sizes: tuple[int, ...] = ()
    data_dir: Path | None = None
    download: bool = False
    extra: dict = field(default_factory=dict)  # tune hyperparameters that are not protocol fields


def job_for(study: Study, protocol: Protocol, row: str, seed: int, hp: dict, run_dir: Path,
            eval_sizes: tuple[int, ...] = (), data_dir: Path | None = None, download: bool = False) -> TrialJob:
    """The job of one cell (or one tune trial with hyperparameters `hp`): what a worker trains, and what the
    sweep checks before its first trial."""
    return TrialJob(
        study=study.name, row=row, seed=seed, overrides=dict(study.row(row).overrides),
        protocol=dataclasses.replace(protocol, **{k: v for k, v in hp.items() if hasattr(protocol, k)}),
        preset=study.base_preset or protocol.preset, run_dir=run_dir, eval_sizes=tuple(eval_sizes),
        data_dir=data_dir, download=download, extra={k: v for k, v in hp.items() if not hasattr(protocol, k)},
    )


def run_config(job: TrialJob):
    """The job as a `lightning_modules.RunConfig` (by field name, so a renamed field fails loudly); validated."""
    from lightning_modules import RunConfig

    p = job.protocol
    wanted = {
        "preset": job.preset, "model_overrides": dict(job.overrides), "dataset": p.dataset, "epochs": p.epochs,
        "batch_size": p.batch_size, "lr": p.lr, "weight_decay": p.weight_decay, "warmup_epochs": p.warmup_epochs,
        "label_smoothing": p.label_smoothing, "drop_path": p.drop_path, "train_subset": p.train_subset,
        "eval_subset": p.eval_subset, "val_size": p.val_size, "seed": job.seed, "run_dir": str(job.run_dir),
        "eval_sizes": tuple(job.eval_sizes), "data_dir": str(job.data_dir) if job.data_dir else None,
        "download": job.download, "device": p.device, "precision": p.precision, **job.extra,
    }
    names = {f.name for f in dataclasses.fields(RunConfig)}
    missing = sorted(k for k, v in wanted.items() if k not in names and v not in (None, (), {}, False))
    if missing:
        raise TypeError(f"RunConfig has no field(s) {missing}; update sweeps.trainers.run_config")
    return RunConfig(**{k: v for k, v in wanted.items() if k in names})


def lightning_trainer(job: TrialJob, callbacks: Sequence[Any] = ()) -> dict:
    """Run the job through `lightning_modules.run`."""
    from lightning_modules import run

    return run(run_config(job), callbacks=callbacks)


def check_job(trainer: Trainer, job: TrialJob) -> None:
    """Build what a trial builds before it trains (the model config, the lightning trainer's RunConfig) and plan
    its input sizes; ValueError/TypeError on a bad value. Any trainer gets the model checks."""
    import hiremlp

    num_classes = 100 if job.protocol.dataset == "cifar100" else 10
    if trainer is lightning_trainer:
        cfg = run_config(job).model_config(num_classes)
    else:
        drop = {"drop_path_rate": job.protocol.drop_path} if job.protocol.drop_path else {}
        cfg = hiremlp.get_config(job.preset, **{**job.overrides, **drop, "num_classes": num_classes})
    hiremlp.check_input_size(cfg, 32)  # the training size: a row that cannot train at it fails every seed
    for size in job.eval_sizes:  # a size a row cannot run is recorded as na@size, never an error
        hiremlp.stage_plan(cfg, size)


def fake_trainer(job: TrialJob, callbacks: Sequence[Any] = ()) -> dict:
    """A deterministic stand-in for tests and `--trainer fake`. Environment knobs: SWEEP_FAKE_SLEEP (seconds per
    epoch), SWEEP_FAKE_FAIL / SWEEP_FAKE_NAN (comma-separated rows that raise / diverge), SWEEP_FAKE_LOG (a file
    that gets one 'start'/'end' line per run, to count runs)."""
    log = os.environ.get("SWEEP_FAKE_LOG")
    _log(log, f"start {job.row}__seed{job.seed} {os.getpid()}")
    digest = int(hashlib.sha256(f"{job.row}/{job.seed}".encode()).hexdigest()[:8], 16)
    acc = 50.0 + digest % 3000 / 100 + 1000 * job.protocol.lr
    epochs = job.protocol.epochs
    for epoch in range(epochs):
        time.sleep(float(os.environ.get("SWEEP_FAKE_SLEEP", 0)))
        val = acc * (epoch + 1) / epochs
        state = SimpleNamespace(sanity_checking=False, current_epoch=epoch, callback_metrics={"val_acc": val})
        for cb in callbacks:
            cb.on_validation_end(state, None)
    if job.row in os.environ.get("SWEEP_FAKE_FAIL", "").split(","):
        raise RuntimeError(f"fake failure for row {job.row}")
    if job.row in os.environ.get("SWEEP_FAKE_NAN", "").split(","):
        acc = math.nan
    result = {"val_acc": acc, "best_val_acc": acc, "test_acc": acc - 0.5, "test_loss": 1.0, "params": 1000,
              "macs": 2000, "images_per_s": 1e4, "wall_s": 0.01, "epochs_run": epochs}
    for size in job.eval_sizes:
        result[f"test_acc@{size}" if size % 4 == 0 else f"na@{size}"] = acc if size % 4 == 0 else "not divisible"
    job.run_dir.mkdir(parents=True, exist_ok=True)
    (job.run_dir / "result.json").write_text(json.dumps(result))
    _log(log, f"end {job.row}__seed{job.seed} {os.getpid()}")
    return result


def _log(path: str | None, line: str) -> None:
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")


def resolve_trainer(name: str) -> Trainer:
    """'lightning', 'fake', or 'package.module:function'."""
    if name == "lightning":
        return lightning_trainer
    if name == "fake":
        return fake_trainer
    module, _, attr = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"unknown trainer {name!r}; allowed: lightning, fake, or module:function") from None
