"""The function a worker calls to train one cell. `lightning` is the real one; `fake` tests the sweep machinery
in milliseconds. Any `module:function` with the same signature can be passed with --trainer."""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from sweeps.protocols import Protocol

Trainer = Callable[["TrialJob", Sequence[Any]], dict]


@dataclass(frozen=True)
class TrialJob:
    """One training run, fully specified: the protocol (its recipe with this trial's hyperparameters applied)."""

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


def lightning_trainer(job: TrialJob, callbacks: Sequence[Any] = ()) -> dict:
    """Run the job through `lightning_modules.run`."""
    from lightning_modules import RunConfig, run

    p = job.protocol
    cfg = RunConfig(
        preset=job.preset, model_overrides=dict(job.overrides), dataset=p.dataset, recipe=p.recipe,
        train_subset=p.train_subset, eval_subset=p.eval_subset, val_size=p.val_size, data_seed=p.data_seed,
        seed=job.seed, run_dir=str(job.run_dir), eval_sizes=tuple(job.eval_sizes),
        data_dir=str(job.data_dir) if job.data_dir else None, download=job.download, device=p.device,
        precision=p.precision, image_size=p.image_size, classes=p.classes, devices=p.devices,
    )
    if p.devices > 1:  # Lightning's launcher re-runs the command per rank: the trial gets its own command
        from sweeps.multi_device import run_in_child

        return run_in_child(cfg, callbacks)
    return run(cfg, callbacks=callbacks)


def fake_trainer(job: TrialJob, callbacks: Sequence[Any] = ()) -> dict:
    """A deterministic stand-in for tests and `--trainer fake`. Environment knobs: SWEEP_FAKE_SLEEP (seconds per
    epoch), SWEEP_FAKE_FAIL / SWEEP_FAKE_NAN (comma-separated rows that raise / diverge), SWEEP_FAKE_LOG (a file
    that gets one 'start'/'end' line per run, to count runs)."""
    log = os.environ.get("SWEEP_FAKE_LOG")
    _log(log, f"start {job.row}__seed{job.seed} {os.getpid()}")
    digest = int(hashlib.sha256(f"{job.row}/{job.seed}".encode()).hexdigest()[:8], 16)
    recipe = job.protocol.recipe
    acc = 50.0 + digest % 3000 / 100 + 1000 * recipe.peak_lr
    epochs = recipe.total_epochs
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
