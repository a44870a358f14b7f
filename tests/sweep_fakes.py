"""Test support for the sweep machinery: a trainer that takes milliseconds, and a noise model with known truth.

`fake_trainer` stands in for the real trainer (`--trainer tests.sweep_fakes:fake_trainer`, or in-process
`worker.Sweep(trainer=fake_trainer)`); `SeedNoiseModel` gives test accuracies whose true row effects and seed noise
are known, for the statistics' coverage tests.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from lightning_modules.run_config import RunConfig

FAKE = "tests.sweep_fakes:fake_trainer"  # the --trainer value


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


def fake_trainer(cfg: RunConfig, callbacks: Sequence[Any] = (), *, row: str) -> dict:
    """A deterministic stand-in for the real trainer (`--trainer tests.sweep_fakes:fake_trainer`).

    Environment knobs: SWEEP_FAKE_SLEEP (seconds per epoch), SWEEP_FAKE_FAIL / SWEEP_FAKE_NAN (comma-separated rows
    that raise / diverge), SWEEP_FAKE_LOG (a file that gets one 'start'/'end' line per run, to count runs),
    SWEEP_FAKE_EFFECTS / _SEED_SD / _NOISE_SD (test_acc from a `SeedNoiseModel` with known row effects and seed
    noise; otherwise a hash of row and seed), SWEEP_FAKE_PREDICTIONS (per-image predictions on that many images)."""
    log = os.environ.get("SWEEP_FAKE_LOG")
    _log(log, f"start {row}__seed{cfg.seed} {os.getpid()}")
    recipe = cfg.recipe
    model = SeedNoiseModel.from_env()
    if model is not None:
        acc = model.accuracy(row, cfg.seed) + 0.5  # test_acc below is acc - 0.5: the model's number
    else:
        digest = int(hashlib.sha256(f"{row}/{cfg.seed}".encode()).hexdigest()[:8], 16)
        acc = 50.0 + digest % 3000 / 100 + 1000 * recipe.peak_lr
    epochs = recipe.total_epochs
    for epoch in range(epochs):
        time.sleep(float(os.environ.get("SWEEP_FAKE_SLEEP", 0)))
        val = acc * (epoch + 1) / epochs
        state = SimpleNamespace(sanity_checking=False, current_epoch=epoch, callback_metrics={"val_acc": val})
        for cb in callbacks:
            cb.on_validation_end(state, None)
    if row in os.environ.get("SWEEP_FAKE_FAIL", "").split(","):
        raise RuntimeError(f"fake failure for row {row}")
    if row in os.environ.get("SWEEP_FAKE_NAN", "").split(","):
        acc = math.nan
    result = {"val_acc": acc, "best_val_acc": acc, "test_acc": acc - 0.5, "test_loss": 1.0, "params": 1000,
              "macs": 2000, "images_per_s": 1e4, "wall_s": 0.01, "epochs_run": epochs}
    if n_images := int(os.environ.get("SWEEP_FAKE_PREDICTIONS", 0)):
        result.update(_fake_predictions(row, cfg.seed, acc - 0.5, n_images))
    for size in cfg.eval_sizes:
        result[f"test_acc@{size}" if size % 4 == 0 else f"na@{size}"] = acc if size % 4 == 0 else "not divisible"
    Path(cfg.run_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.run_dir) / "result.json").write_text(json.dumps(result))
    _log(log, f"end {row}__seed{cfg.seed} {os.getpid()}")
    return result


def _fake_predictions(row: str, seed: int, acc: float, n_images: int) -> dict:
    """SWEEP_FAKE_PREDICTIONS=n: predictions on n images (10 classes) with `acc` rounded to whole images; the
    returned `test_acc` is theirs, so the stored predictions and the reported accuracy agree."""
    from lightning_modules.predictions import encode, key_at

    label = np.arange(n_images) % 10
    right = min(max(round(acc / 100 * n_images), 0), n_images)
    rng = np.random.default_rng(int(hashlib.sha256(f"pred/{row}/{seed}".encode()).hexdigest()[:16], 16))
    wrong = rng.permutation(n_images)[right:]
    pred = label.copy()
    pred[wrong] = (label[wrong] + rng.integers(1, 10, wrong.size)) % 10
    return {"test_acc": 100.0 * right / n_images, key_at(): encode(pred, label)}


def _log(path: str | None, line: str) -> None:
    if path:
        with open(path, "a") as fh:
            fh.write(line + "\n")


fake_trainer.needs_data = False  # the sweep looks for no dataset for it
