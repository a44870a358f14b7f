"""Data-parallel training: every loader shards by rank, and a real two-process DDP run on the CPU (gloo).

The DDP runs start ``tests/ddp_audit.py`` (the training command line's config + ``run()``); Lightning's launcher
starts rank 1 by re-running that command, as it would on a GPU machine. Each rank saves the sample indices it
trained on and its weights, so the test can check the shards and the synchronisation from outside.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import real_cifar_dir

from lightning_modules import HireMLPClassifier, Recipe, RunConfig
from lightning_modules.augment import repeated_order
from lightning_modules.datamodule import CIFAR10DataModule
from lightning_modules.gpu_loader import GpuBatches
from lightning_modules.imagefolder import EpochBatches, ImageFolderDataModule
from lightning_modules.predictions import decode
from lightning_modules.train import main as train_main

REPO = Path(__file__).resolve().parents[1]
MEAN, STD = (0.5,) * 3, (0.25,) * 3
pytestmark = pytest.mark.filterwarnings("ignore::lightning_modules.UnofficialArchiveWarning")


def _loaders(n: int, world: int, repeats: int, bs: int = 4) -> list[GpuBatches]:
    x = torch.zeros(n, 3, 8, 8, dtype=torch.uint8)
    recipe = Recipe(repeated_aug=repeats)
    return [GpuBatches(x, torch.arange(n), bs, train=True, mean=MEAN, std=STD, seed=7, recipe=recipe, rank=r,
                       world_size=world) for r in range(world)]


@pytest.mark.parametrize("n, world", [(40, 2), (41, 2), (48, 3), (40, 1)])
def test_cifar_shards_are_disjoint_and_cover_the_epoch(n: int, world: int) -> None:
    loaders = _loaders(n, world, repeats=1)
    for epoch in (0, 3):
        shards = [ld.epoch_order(epoch)[0] for ld in loaders]
        mine = torch.cat(shards)
        assert len(set(mine.tolist())) == len(mine) == n // world * world  # disjoint; at most world-1 dropped
        single = repeated_order(n, 1, torch.Generator().manual_seed(7 * 1_000_003 + epoch), torch.device("cpu"))
        assert torch.equal(torch.stack(shards, 1).flatten(), single[: n // world * world])  # the shared order
    assert len({len(ld) for ld in loaders}) == 1  # every rank runs the same number of steps
    # what a rank's iterator yields is its shard (labels are the indices here)
    yielded = torch.cat([y for _, y in loaders[-1]])
    assert torch.equal(yielded, loaders[-1].epoch_order(0)[0][: len(yielded)])


def test_repeated_augmentation_deals_the_copies_to_different_ranks() -> None:
    """As the released RASampler: the global order repeats each image 3 times in a row; rank r takes every W-th."""
    loaders = _loaders(48, 4, repeats=3)
    shards = [ld.epoch_order(1)[0] for ld in loaders]
    glob = torch.stack(shards, 1).flatten()
    single = repeated_order(48, 3, torch.Generator().manual_seed(7 * 1_000_003 + 1), torch.device("cpu"))
    assert torch.equal(glob, single)
    for img, copies in Counter(glob.tolist()).items():
        ranks = {r for r, s in enumerate(shards) if img in s.tolist()}
        assert len(ranks) == copies  # no rank gets two copies of one image in a 4-rank epoch


def test_augmentation_draws_differ_between_ranks() -> None:
    """Identical images everywhere: only the crops, flips and RandAugment draws can tell the ranks apart."""
    x = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8).expand(16, 3, 8, 8).contiguous()
    kw = dict(train=True, mean=MEAN, std=STD, seed=2, pad=2, recipe=Recipe(randaug_ops=2), world_size=2)
    first = [next(iter(GpuBatches(x, torch.arange(16), 4, rank=r, **kw)))[0] for r in (0, 1, 1)]
    assert not torch.equal(first[0], first[1]) and torch.equal(first[1], first[2])


@pytest.mark.parametrize("n, world", [(10, 3), (9, 3), (2, 4)])
def test_evaluation_shards_score_every_image_once(n: int, world: int) -> None:
    x = torch.zeros(n, 3, 4, 4, dtype=torch.uint8)
    seen = torch.cat([torch.cat([y for _, y in GpuBatches(x, torch.arange(n), 2, train=False, mean=MEAN, std=STD,
                                                           rank=r, world_size=world)] or [torch.zeros(0)])
                      for r in range(world)])
    assert sorted(seen.tolist()) == list(range(n))
    eb = [list(EpochBatches(n, 2, train=False, rank=r, world=world)) for r in range(world)]
    assert sorted(i for batches in eb for b in batches for i in b) == list(range(n))


def test_imagefolder_shards_partition_the_global_order() -> None:
    samplers = [EpochBatches(50, 5, train=True, seed=3, repeats=3, rank=r, world=2) for r in range(2)]
    orders = [s.order(4) for s in samplers]
    positions = torch.cat([o[:, 1] for o in orders])
    assert sorted(positions.tolist()) == list(range(50))  # each position of the global order once
    single = EpochBatches(50, 5, train=True, seed=3, repeats=3).order(4)
    assert torch.equal(torch.stack([o[:, 0] for o in orders], 1).flatten(), single[:, 0])
    assert len(samplers[0]) == len(samplers[1]) == 5


def test_global_batch_must_divide_over_the_processes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError, match="batch_size=33 .* does not divide over devices x num_nodes = 2"):
        RunConfig(recipe=Recipe(batch_size=33), devices=2)
    assert train_main(["--devices", "2", "--batch-size", "33", "--run-dir", str(tmp_path)]) == 2
    assert "does not divide" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- real DDP

def _ddp(out: Path, *args: str) -> dict[int, dict]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "HIREMLP_CACHE": str(out / "cache")}
    for var in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
        env.pop(var, None)
    done = subprocess.run([sys.executable, str(REPO / "tests" / "ddp_audit.py"), str(out), *args,
                           "--run-dir", str(out / "run"), "--device", "cpu", "--devices", "2", "--progress", "false"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {r: torch.load(out / f"rank{r}.pt", weights_only=False) for r in (0, 1)}


def _check_ranks(ranks: dict[int, dict], n_train: int, key) -> None:
    a, b = ranks[0], ranks[1]
    assert a["world"] == b["world"] == 2 and a["batches"] == b["batches"] > 1
    ia, ib = key(a["indices"][0]), key(b["indices"][0])
    assert not set(ia) & set(ib) and len(ia) + len(ib) == n_train  # disjoint, and together the whole epoch
    for k in a["state"]:  # parameters and BatchNorm buffers: the same on both ranks after the steps
        assert torch.equal(a["state"][k], b["state"][k]), k
    assert a["val_acc"] == b["val_acc"] and a["train_acc"] == b["train_acc"]  # both logged the global numbers


def _logged(run_dir: Path) -> dict[str, str]:
    with open(run_dir / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1  # one writer (rank 0), one epoch
    return rows[0]


def _single_process_eval(run_dir: Path, state: dict, dm) -> dict[str, float]:
    hparams = json.loads((run_dir / "config.json").read_text())["hparams"]
    module = HireMLPClassifier(**hparams)
    module.model.load_state_dict(state)
    dm.setup("fit")
    return module.evaluate(dm.batches("val"))


@pytest.mark.skipif(real_cifar_dir() is None, reason="real CIFAR-10 not found")
def test_two_process_ddp_on_cifar(tmp_path: Path) -> None:
    """Device-resident CIFAR batches under DDP: shards, identical weights, the global accuracy."""
    data = real_cifar_dir()
    ranks = _ddp(tmp_path, "--preset", "smoke", "--data-dir", str(data), "--train-subset", "256", "--val-size", "200",
                 "--eval-subset", "90", "--recipe", "plain", "--epochs", "1", "--batch-size", "32", "--lr", "4e-3",
                 "--lr-batch", "32")
    _check_ranks(ranks, 256, lambda idx: idx.tolist())
    run_dir = tmp_path / "run"
    logged = _logged(run_dir)
    dm = CIFAR10DataModule(data_dir=data, batch_size=32, val_size=200, train_subset=256, eval_subset=90, device="cpu")
    single = _single_process_eval(run_dir, ranks[0]["state"], dm)
    assert float(logged["val_acc"]) == pytest.approx(single["acc"], abs=1e-5)  # float32 sums; one image is 1.1 points
    assert float(logged["val_loss"]) == pytest.approx(single["loss"], rel=1e-5)
    rank0_only = HireMLPClassifier(**json.loads((run_dir / "config.json").read_text())["hparams"])
    rank0_only.model.load_state_dict(ranks[0]["state"])
    half = rank0_only.evaluate(GpuBatches(*dm.splits["val"], 64, train=False, mean=dm.mean, std=dm.std, rank=0,
                                          world_size=2))
    assert half["loss"] != pytest.approx(single["loss"], rel=1e-5)  # a rank's own shard would read differently
    result = json.loads((run_dir / "result.json").read_text())
    pred, label = decode(result["predictions"])  # every test image once, in the test set's order, not a shard
    assert pred.size == 90 and (label == dm.splits["test"][1].cpu().numpy()).all()
    assert 100.0 * float((pred == label).mean()) == pytest.approx(result["test_acc"], abs=1e-4)
    assert (result["world_size"], result["global_batch"], result["per_device_batch"]) == (2, 32, 16)
    assert result["peak_lr"] == pytest.approx(4e-3)  # scaled from the global batch 32 (lr_batch 32)


def test_two_process_ddp_on_an_image_folder(jpeg_tree: Path, tmp_path: Path) -> None:
    """The ImageFolder loader under DDP with the paper recipe (repeated augmentation, mixup, RandAugment)."""
    ranks = _ddp(tmp_path, "--dataset", "imagefolder", "--data-dir", str(jpeg_tree), "--preset", "smoke",
                 "--image-size", "32", "--workers", "0", "--val-size", "60", "--recipe", "paper", "--epochs", "1",
                 "--warmup-epochs", "0", "--cooldown-epochs", "0", "--batch-size", "20")
    n_train = 240 - 60
    _check_ranks(ranks, n_train, lambda pairs: pairs[:, 1].tolist())  # positions of the global order
    files = np.concatenate([ranks[r]["indices"][0][:, 0].numpy() for r in (0, 1)])
    assert Counter(Counter(files.tolist()).values()) <= Counter({3: n_train // 3})  # each image 3 times at most
    run_dir = tmp_path / "run"
    logged = _logged(run_dir)
    dm = ImageFolderDataModule(jpeg_tree, batch_size=20, val_size=60, device="cpu", image_size=32, workers=0)
    single = _single_process_eval(run_dir, ranks[0]["state"], dm)
    assert float(logged["val_acc"]) == pytest.approx(single["acc"], abs=1e-5)  # float32 sums
    assert float(logged["val_loss"]) == pytest.approx(single["loss"], rel=1e-5)


# ----------------------------------------------------------------------------------------------- sweeps

class _EpochSpy:
    """What the sweep's pruning callback sees: (epoch, val_acc) at each on_validation_end."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, float]] = []

    def on_validation_end(self, trainer, pl_module) -> None:
        self.seen.append((trainer.current_epoch, float(trainer.callback_metrics["val_acc"])))


@pytest.mark.skipif(real_cifar_dir() is None, reason="real CIFAR-10 not found")
def test_sweep_trial_on_two_devices_runs_in_its_own_command_and_reports_each_epoch(tmp_path: Path,
                                                                                 monkeypatch) -> None:
    from ablations import get_study
    from sweeps.protocols import get_protocol
    from sweeps.trainers import lightning_trainer, trial_config

    monkeypatch.setenv("HIREMLP_CACHE", str(tmp_path / "cache"))
    protocol = get_protocol("smoke").with_changes(devices=2, train_subset=128, eval_subset=64, batch_size=32,
                                                  epochs=2)
    cfg = trial_config(get_study("padding"), protocol, "zero", 0, tmp_path / "trial", data_dir=str(real_cifar_dir()))
    spy = _EpochSpy()
    result = lightning_trainer(cfg, [spy], row="zero")
    assert result["world_size"] == 2 and result["per_device_batch"] == 16
    with open(tmp_path / "trial" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert spy.seen == [(int(r["epoch"]), float(r["val_acc"])) for r in rows] and len(rows) == 2
    assert json.loads((tmp_path / "trial" / "run_config.json").read_text())["devices"] == 2


def test_devices_option_reaches_the_protocol_and_the_study_name(capsys) -> None:
    from sweeps.run import main as sweep_main

    assert sweep_main(["--study", "padding", "--protocol", "imagenet", "--devices", "8", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "8 devices per trial (DDP)" in out and "on 8 GPU(s) per trial" in out
    assert sweep_main(["--study", "padding", "--protocol", "imagenet", "--devices", "3", "--dry-run"]) == 2
    assert "does not divide over devices x num_nodes = 3" in capsys.readouterr().err
