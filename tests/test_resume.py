"""Checkpoints: a run stopped or killed at any point resumes from its last checkpoint and ends with exactly the
numbers of an uninterrupted run (CPU, real CIFAR-10, the smoke preset with drop-path, mixup and EMA on, so every
RNG and every piece of state that affects training is exercised)."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from lightning_modules import RunConfig, run
from lightning_modules.checkpoints import TrainingRNG, last_checkpoint
from lightning_modules.datamodule import CIFARDataModule
from lightning_modules.imagefolder import ImageFolderDataModule
from lightning_modules.recipe import get_recipe

REPO = Path(__file__).resolve().parents[1]
DATA = next((Path(p).resolve() for p in (os.environ.get("HIREMLP_DATA"), REPO.parent / "shared" / "data")
             if p and (Path(p) / "cifar-10-python.tar.gz").is_file()), None)
pytestmark = [
    pytest.mark.skipif(DATA is None and os.environ.get("CI", "").lower() != "true",
                       reason="real CIFAR-10 not found: set HIREMLP_DATA or provide ../shared/data"),
    pytest.mark.filterwarnings("ignore::lightning_modules.UnofficialArchiveWarning"),
]
TIMING = ("images_per_s", "epoch_s", "wall_s", "resumed_from_epoch")
RECIPE = dict(epochs=3, batch_size=25, lr=2e-3, lr_batch=25, warmup_epochs=0.5, drop_path=0.2, mixup=0.8, cutmix=1.0,
              ema=0.9, label_smoothing=0.1)  # over the 'plain' recipe
RUN = dict(preset="smoke", train_subset=100, eval_subset=50, device="cpu", checkpoint_every_s=0)
# the same run on an ImageFolder tree of real CIFAR JPEGs (conftest.jpeg_tree: 240 train, 80 val images), where
# the loader epoch also seeds every RandomResizedCrop and flip
TREE_RUN = dict(dataset="imagefolder", image_size=32, val_size=40, workers=0)


def config(run_dir: Path, **kw) -> RunConfig:
    recipe = get_recipe("plain").replace(**{**RECIPE, **{k: kw.pop(k) for k in list(kw) if k in RECIPE}})
    return RunConfig(**{**RUN, "data_dir": str(DATA), "run_dir": str(run_dir), **kw}, recipe=recipe)


def numbers(run_dir: Path) -> tuple[dict, list[dict]]:
    """result.json and metrics.csv without the timing fields (everything else must match to the last digit)."""
    result = {k: v for k, v in json.loads((run_dir / "result.json").read_text()).items() if k not in TIMING}
    with open(run_dir / "metrics.csv") as fh:
        rows = [{k: v for k, v in r.items() if k not in TIMING} for r in csv.DictReader(fh)]
    return result, rows


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[dict]]:
    run_dir = tmp_path_factory.mktemp("uninterrupted")
    run(config(run_dir))
    return numbers(run_dir)


class Crash(Exception):
    """Stands in for the process dying at a chosen point."""


class CrashAt(pl.Callback):
    """Raise in `hook` of `epoch` (at `batch` for on_train_batch_end). Listed after EpochMetrics, before the
    checkpoint callback, so `on_validation_end` crashes after the epoch's metrics row and before its checkpoint."""

    def __init__(self, hook: str, epoch: int, batch: int = 0) -> None:
        self.hook, self.epoch, self.batch = hook, epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.hook == "batch" and trainer.current_epoch == self.epoch and batch_idx == self.batch:
            raise Crash

    def on_validation_end(self, trainer, pl_module) -> None:
        if self.hook == "validation" and trainer.current_epoch == self.epoch:
            raise Crash


def crash_then_resume(run_dir: Path, crash: CrashAt, **kw) -> dict:
    with pytest.raises(Crash):
        run(config(run_dir, **kw), callbacks=[crash])
    assert last_checkpoint(run_dir).is_file()
    return run(config(run_dir, **kw))


@pytest.mark.parametrize("crash, restored", [
    (CrashAt("batch", epoch=2, batch=1), 2),  # mid-epoch: the partial epoch is trained again
    (CrashAt("validation", epoch=1), 1),  # epoch 1's metrics row written, its checkpoint not: no duplicate row
])
def test_resumed_run_ends_exactly_like_an_uninterrupted_one(tmp_path, uninterrupted, crash, restored):
    result = crash_then_resume(tmp_path / "run", crash)
    assert result["resumed_from_epoch"] == restored
    assert numbers(tmp_path / "run") == uninterrupted
    assert [int(r["epoch"]) for r in uninterrupted[1]] == [0, 1, 2]
    assert not (tmp_path / "run" / "checkpoints").exists()  # removed once the run completed


def test_without_restoring_the_rngs_the_resumed_run_differs(tmp_path, uninterrupted, monkeypatch):
    """The comparison above can fail: drop the RNG restore (drop-path, mixup draws) and the numbers change."""
    monkeypatch.setattr(TrainingRNG, "on_train_start", lambda *a: None)
    crash_then_resume(tmp_path / "run", CrashAt("batch", epoch=2, batch=1))
    result, rows = numbers(tmp_path / "run")
    assert rows[:2] == uninterrupted[1][:2] and rows[2] != uninterrupted[1][2]
    assert result["test_loss"] != uninterrupted[0]["test_loss"]


def test_without_restoring_the_loader_epoch_the_resumed_run_differs(tmp_path, uninterrupted, monkeypatch):
    """...and so do they when the loader restarts its shuffle/augmentation stream at epoch 0."""
    monkeypatch.setattr(CIFARDataModule, "load_state_dict", lambda self, state: None)
    crash_then_resume(tmp_path / "run", CrashAt("batch", epoch=2, batch=1))
    assert numbers(tmp_path / "run")[1][2] != uninterrupted[1][2]


def test_checkpoint_kept_on_request_and_another_config_starts_over(tmp_path):
    run_dir = tmp_path / "run"
    run(config(run_dir, epochs=1, keep_checkpoint=True))
    ckpt = last_checkpoint(run_dir)
    assert ckpt.is_file() and torch.load(ckpt, weights_only=False)["epoch"] == 0
    # more epochs is another schedule (the cosine spans all epochs): that checkpoint cannot continue this run
    with pytest.warns(UserWarning, match=r"another configuration \(.*epochs.*\): starting over"):
        result = run(config(run_dir, epochs=2))
    assert result["resumed_from_epoch"] == 0 and result["epochs_run"] == 2
    # run-control fields (progress, logger, keep_checkpoint, eval sizes) do not make another configuration
    with pytest.raises(Crash):
        run(config(run_dir, epochs=2), callbacks=[CrashAt("batch", epoch=1, batch=0)])
    assert run(config(run_dir, epochs=2, progress="lines", eval_sizes=(28,)))["resumed_from_epoch"] == 1


def test_checkpoints_are_rationed_by_time(tmp_path):
    """With the default 60 s between checkpoints a seconds-long run writes none before its final epoch: a crash
    starts it over (nothing to resume), and a completed run kept the final epoch's."""
    run_dir = tmp_path / "run"
    with pytest.raises(Crash):
        run(config(run_dir, checkpoint_every_s=60.0), callbacks=[CrashAt("batch", epoch=2, batch=1)])
    assert not last_checkpoint(run_dir).exists()
    result = run(config(run_dir, checkpoint_every_s=60.0, keep_checkpoint=True))
    assert result["resumed_from_epoch"] == 0
    assert torch.load(last_checkpoint(run_dir), weights_only=False)["epoch"] == RECIPE["epochs"] - 1


@pytest.mark.slow
def test_sigkilled_training_process_resumes_to_the_same_numbers(tmp_path, uninterrupted):
    """A real process, SIGKILLed while it trains, then the same command again: the progress lines show in the
    redirected log while the trial runs, and the resumed run ends exactly like the uninterrupted one."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "lightning_modules.train", "--data-dir", str(DATA), "--run-dir", str(run_dir)]
    cmd += ["--recipe", "plain"]
    for key, value in {**RUN, **RECIPE}.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    seen = []
    for line in proc.stdout:  # a pipe, not a terminal: plain lines, one per epoch
        seen.append(line)
        if " epoch 2/3 " in line:  # epoch 0's checkpoint is on disk; epoch 1's may be being written
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, seen
    assert "epoch 1/3  train_loss " in seen[0] and "val_acc " in seen[0] and "img/s" in seen[0] and "ETA " in seen[0]
    assert not any("\r" in line for line in seen)
    assert last_checkpoint(run_dir).is_file() and not (run_dir / "result.json").exists()

    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from its checkpoint after epoch" in again.stdout and "\r" not in again.stdout
    assert numbers(run_dir) == uninterrupted


# ----------------------------------------------------------------------------------------------- ImageFolder

def tree_config(run_dir: Path, tree: Path, **kw) -> RunConfig:
    return config(run_dir, **TREE_RUN, data_dir=str(tree), **kw)


@pytest.fixture(scope="module")
def tree_uninterrupted(tmp_path_factory: pytest.TempPathFactory, jpeg_tree: Path) -> tuple[dict, list[dict]]:
    run_dir = tmp_path_factory.mktemp("tree_uninterrupted")
    run(tree_config(run_dir, jpeg_tree))
    return numbers(run_dir)


def test_imagefolder_run_resumes_exactly_and_fails_without_its_loader_epoch(tmp_path, jpeg_tree, tree_uninterrupted,
                                                                             monkeypatch):
    """The ImageFolder module saves the same loader epoch as the CIFAR one (``data_base.EpochStateDataModule``):
    crashed in epoch 2 and resumed, it ends like the uninterrupted run; without restoring it, it does not."""
    with pytest.raises(Crash):
        run(tree_config(tmp_path / "run", jpeg_tree), callbacks=[CrashAt("batch", epoch=2, batch=1)])
    assert torch.load(last_checkpoint(tmp_path / "run"), weights_only=False)[
        "ImageFolderDataModule"] == {"train_epoch": 2}
    assert run(tree_config(tmp_path / "run", jpeg_tree))["resumed_from_epoch"] == 2
    assert numbers(tmp_path / "run") == tree_uninterrupted

    monkeypatch.setattr(ImageFolderDataModule, "load_state_dict", lambda self, state: None)
    with pytest.raises(Crash):
        run(tree_config(tmp_path / "forgot", jpeg_tree), callbacks=[CrashAt("batch", epoch=2, batch=1)])
    run(tree_config(tmp_path / "forgot", jpeg_tree))
    rows = numbers(tmp_path / "forgot")[1]
    assert rows[:2] == tree_uninterrupted[1][:2] and rows[2] != tree_uninterrupted[1][2]


@pytest.mark.slow
def test_sigkilled_imagefolder_run_resumes_to_the_same_numbers(tmp_path, jpeg_tree, tree_uninterrupted):
    """An ImageFolder training process SIGKILLed after its 2nd epoch, then the same command again: exactly the
    uninterrupted run's result.json and metrics.csv (timings aside)."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "lightning_modules.train", "--data-dir", str(jpeg_tree), "--run-dir", str(run_dir),
           "--recipe", "plain", "--progress", "lines"]
    for key, value in {**RUN, **TREE_RUN, **RECIPE}.items():
        cmd += [f"--{key.replace('_', '-')}", str(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env, cwd=REPO)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if " epoch 2/3 " in line:  # the 2nd epoch has ended; its checkpoint is written or being written
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, seen
    assert last_checkpoint(run_dir).is_file() and not (run_dir / "result.json").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "resumed from its checkpoint after epoch" in again.stdout
    assert numbers(run_dir) == tree_uninterrupted
