"""The function a worker calls to train one cell. `lightning` is the real one; `fake` tests the sweep machinery
in milliseconds. Any `module:function` with the same signature can be passed with --trainer."""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from ablations import Study
from sweeps.protocols import Protocol, with_overrides

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
    run_options: dict = field(default_factory=dict)  # RunConfig run-control fields (RUN_CONTROL)


def job_for(study: Study, protocol: Protocol, row: str, seed: int, hp: dict, run_dir: Path,
            eval_sizes: tuple[int, ...] = (), data_dir: Path | None = None, download: bool = False,
            run_options: dict | None = None) -> TrialJob:
    """The job of one cell (or one tune trial with recipe overrides `hp`): what a worker trains, and what the
    sweep checks before its first trial: the row's recipe changes, then `hp`, on the protocol's recipe.
    ValueError when they make an invalid recipe."""
    return TrialJob(
        study=study.name, row=row, seed=seed, overrides=dict(study.row(row).overrides),
        protocol=with_overrides(protocol, **{**study.row(row).recipe, **hp}),
        preset=study.base_preset or protocol.preset, run_dir=run_dir,
        eval_sizes=tuple(eval_sizes), data_dir=data_dir, download=download, run_options=dict(run_options or {}),
    )


def run_config(job: TrialJob):
    """The job as a validated `lightning_modules.RunConfig`."""
    from lightning_modules import RunConfig

    p = job.protocol
    return RunConfig(
        preset=job.preset, model_overrides=dict(job.overrides), dataset=p.dataset, recipe=p.recipe,
        train_subset=p.train_subset, eval_subset=p.eval_subset, val_size=p.val_size, data_seed=p.data_seed,
        seed=job.seed, run_dir=str(job.run_dir), eval_sizes=tuple(job.eval_sizes),
        data_dir=str(job.data_dir) if job.data_dir else None, download=job.download, device=p.device,
        precision=p.precision, image_size=p.image_size, classes=p.classes, devices=p.devices, **job.run_options,
    )


def lightning_trainer(job: TrialJob, callbacks: Sequence[Any] = ()) -> dict:
    """Run the job through `lightning_modules.run` (in a command of its own when it trains on several devices:
    Lightning's launcher re-runs the command once per rank)."""
    from lightning_modules import run

    cfg = run_config(job)
    if cfg.devices > 1:
        from sweeps.multi_device import run_in_child

        return run_in_child(cfg, callbacks)
    return run(cfg, callbacks=callbacks)


def model_config(job: TrialJob, num_classes: int | None = None):
    """The row's `hiremlp.HireMLPConfig`: the preset, the row's overrides and the recipe's drop path (when set);
    ValueError on a bad value. `num_classes` None keeps the preset's."""
    import hiremlp

    return hiremlp.row_config(job.preset, job.overrides, drop_path=job.protocol.recipe.drop_path,
                              num_classes=num_classes)


def check_job(trainer: Trainer, job: TrialJob) -> None:
    """Build what a trial builds before it trains (the model config, the lightning trainer's RunConfig) and plan
    its input sizes; ValueError/TypeError on a bad value. Any trainer gets the model checks."""
    import hiremlp
    from lightning_modules.dataset_classes import dataset_classes

    p = job.protocol
    num_classes = dataset_classes(p.dataset, job.data_dir, p.classes, check=False)
    if trainer is lightning_trainer:
        cfg = run_config(job).model_config(num_classes)
    else:
        cfg = model_config(job, num_classes)
    # the training size: a row that cannot train at it fails every seed
    hiremlp.check_input_size(cfg, job.protocol.image_size or 32)
    for size in job.eval_sizes:  # a size a row cannot run is recorded as na@size, never an error
        hiremlp.stage_plan(cfg, size)


def _unit_normal(key: str) -> float:
    """A standard normal draw fixed by `key`: the same (row, seed) always gets the same noise."""
    return float(np.random.default_rng(int(hashlib.sha256(key.encode()).hexdigest()[:16], 16)).standard_normal())


def _mapping(text: str, what: str) -> dict[str, float]:
    try:
        return {k.strip(): float(v) for k, v in (item.split("=") for item in text.split(",") if item.strip())}
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a list of row=number, e.g. zero=0.5,circular=0") from None


@dataclass(frozen=True)
class SeedNoiseModel:
    """Test accuracy with a known truth: base + effect[row] + seed_sd * z(seed) + noise_sd[row] * z(row, seed).

    z(seed) is shared by every row run with that seed (a seed fixes data order, augmentation and initialisation for
    all rows alike), z(row, seed) is the row's own noise; both are standard normal. The true difference between two
    rows is the difference of their effects. `accuracy` is deterministic per (row, seed), as a resumed sweep needs;
    `sample` draws whole tables from the same distribution in numpy, for simulations of the statistics.
    """

    effects: Mapping[str, float]
    seed_sd: float = 1.0
    noise_sd: float | Mapping[str, float] = 0.3
    base: float = 80.0

    def row_noise(self, row: str) -> float:
        return float(self.noise_sd.get(row, 0.0)) if isinstance(self.noise_sd, Mapping) else float(self.noise_sd)

    def accuracy(self, row: str, seed: int) -> float:
        return (self.base + float(self.effects.get(row, 0.0)) + self.seed_sd * _unit_normal(f"seed/{seed}")
                + self.row_noise(row) * _unit_normal(f"cell/{row}/{seed}"))

    def sample(self, rng: np.random.Generator, rows: Sequence[str], n_seeds: int, n_tables: int) -> np.ndarray:
        """Accuracies of `n_tables` simulated tables, shape (n_tables, len(rows), n_seeds)."""
        effects = np.array([float(self.effects.get(r, 0.0)) for r in rows])[None, :, None]
        noise = np.array([self.row_noise(r) for r in rows])[None, :, None]
        shared = rng.standard_normal((n_tables, 1, n_seeds)) * self.seed_sd
        return self.base + effects + shared + noise * rng.standard_normal((n_tables, len(rows), n_seeds))

    @classmethod
    def from_env(cls) -> SeedNoiseModel | None:
        """From SWEEP_FAKE_EFFECTS (row=effect,...), SWEEP_FAKE_SEED_SD and SWEEP_FAKE_NOISE_SD (a number, or
        row=sd,...); None when SWEEP_FAKE_EFFECTS is unset."""
        effects = os.environ.get("SWEEP_FAKE_EFFECTS")
        if effects is None:
            return None
        noise_text = os.environ.get("SWEEP_FAKE_NOISE_SD", "0.3")
        noise = _mapping(noise_text, "SWEEP_FAKE_NOISE_SD") if "=" in noise_text else float(noise_text)
        return cls(_mapping(effects, "SWEEP_FAKE_EFFECTS"), float(os.environ.get("SWEEP_FAKE_SEED_SD", 1.0)), noise)


def fake_trainer(job: TrialJob, callbacks: Sequence[Any] = ()) -> dict:
    """A deterministic stand-in for tests and `--trainer fake`. Environment knobs: SWEEP_FAKE_SLEEP (seconds per
    epoch), SWEEP_FAKE_FAIL / SWEEP_FAKE_NAN (comma-separated rows that raise / diverge), SWEEP_FAKE_LOG (a file
    that gets one 'start'/'end' line per run, to count runs), SWEEP_FAKE_EFFECTS / _SEED_SD / _NOISE_SD (test_acc from
    a `SeedNoiseModel` with known row effects and seed noise; otherwise a hash of row and seed),
    SWEEP_FAKE_PREDICTIONS (per-image predictions on that many images)."""
    log = os.environ.get("SWEEP_FAKE_LOG")
    _log(log, f"start {job.row}__seed{job.seed} {os.getpid()}")
    recipe = job.protocol.recipe
    model = SeedNoiseModel.from_env()
    if model is not None:
        acc = model.accuracy(job.row, job.seed) + 0.5  # test_acc below is acc - 0.5: the model's number
    else:
        digest = int(hashlib.sha256(f"{job.row}/{job.seed}".encode()).hexdigest()[:8], 16)
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
    if n_images := int(os.environ.get("SWEEP_FAKE_PREDICTIONS", 0)):
        result.update(_fake_predictions(job, acc - 0.5, n_images))
    for size in job.eval_sizes:
        result[f"test_acc@{size}" if size % 4 == 0 else f"na@{size}"] = acc if size % 4 == 0 else "not divisible"
    job.run_dir.mkdir(parents=True, exist_ok=True)
    (job.run_dir / "result.json").write_text(json.dumps(result))
    _log(log, f"end {job.row}__seed{job.seed} {os.getpid()}")
    return result


def _fake_predictions(job: TrialJob, acc: float, n_images: int) -> dict:
    """SWEEP_FAKE_PREDICTIONS=n: predictions on n images (10 classes) with `acc` rounded to whole images; the
    returned `test_acc` is theirs, so the stored predictions and the reported accuracy agree."""
    from lightning_modules.predictions import encode, key_at

    label = np.arange(n_images) % 10
    right = min(max(round(acc / 100 * n_images), 0), n_images)
    rng = np.random.default_rng(int(hashlib.sha256(f"pred/{job.row}/{job.seed}".encode()).hexdigest()[:16], 16))
    wrong = rng.permutation(n_images)[right:]
    pred = label.copy()
    pred[wrong] = (label[wrong] + rng.integers(1, 10, wrong.size)) % 10
    return {"test_acc": 100.0 * right / n_images, key_at(): encode(pred, label)}


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
