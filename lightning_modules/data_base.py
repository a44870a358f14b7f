"""What every data module shares: the seeded train/val/test split and the training loader's epoch, saved in checkpoints.

The CIFAR modules (``datamodule.py``) and the ImageFolder module (``imagefolder.py``) differ in how they hold and
decode images, not in which images go where or in how a resumed run continues its data stream; both live here once.
"""

from __future__ import annotations

import inspect
from typing import Any, NamedTuple

import numpy as np
import pytorch_lightning as pl

__all__ = ["SPLIT_FIELDS", "EpochStateDataModule", "Splits", "balanced_subset", "split_indices"]


def balanced_subset(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` seeded-random items with the per-class counts as equal as possible (sorted).

    Balanced subsets keep a 500-image smoke run or a 5000-image validation split from being skewed by chance.
    """
    classes = np.unique(labels)
    if n > len(labels):
        raise ValueError(f"subset of {n} requested from {len(labels)} items")
    perm = rng.permutation(len(labels))
    by_class = [perm[labels[perm] == c] for c in classes]
    quota = np.full(len(classes), n // len(classes))
    # the remainder goes to randomly chosen classes that still have spare items
    spare = [i for i, idx in enumerate(by_class) if len(idx) > quota[i]]
    for i in rng.permutation(spare)[: n - quota.sum()]:
        quota[i] += 1
    if any(q > len(idx) for q, idx in zip(quota, by_class, strict=True)):
        raise ValueError(f"cannot take a class-balanced subset of {n} from these labels")
    return np.sort(np.concatenate([idx[:q] for idx, q in zip(by_class, quota, strict=True)]))


class Splits(NamedTuple):
    """Indices into the training set (``train``, ``val``) and into the test set (``test``)."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


def split_indices(train_labels: np.ndarray, n_test: int, test_labels: np.ndarray | None = None, *, val_size: int,
                  train_subset: int | None, eval_subset: int | None, data_seed: int, test_subset: int | None = None,
                  seed: int, where: str = "the training set") -> Splits:
    """The one split of every data module: ``val_size`` class-balanced images held out of training (``data_seed``),
    the eval subsets (``data_seed``, so every trial is scored on the same images: ``test_subset`` test images when
    given, else ``eval_subset``'s count) and the training subset (``seed``). ValueError naming the value and what
    the data allows, so a sweep can check a budget against the real data before its first trial."""
    n, n_classes = len(train_labels), len(np.unique(train_labels))
    if not 0 <= val_size <= n - n_classes:
        raise ValueError(f"val_size={val_size}: {where} has {n:,} images; allowed 0..{n - n_classes:,} "
                         f"(at least one training image per class must remain)")
    if test_subset is not None and not 1 <= test_subset <= n_test:
        raise ValueError(f"test_subset={test_subset}: the test set has {n_test:,} images; allowed 1..{n_test:,} (or "
                         f"none: as many as eval_subset)")
    if train_subset is not None and not 1 <= train_subset <= n - val_size:
        raise ValueError(f"train_subset={train_subset}: {where} has {n - val_size:,} images left for training "
                         f"after val_size {val_size:,}; allowed 1..{n - val_size:,} (or none: all of them)")
    eval_rng, train_rng = np.random.default_rng(data_seed), np.random.default_rng(seed)
    held_out = balanced_subset(train_labels, val_size, eval_rng) if val_size else np.zeros(0, np.int64)
    train_idx = np.setdiff1d(np.arange(n), held_out)  # all of it stays out of training
    val_idx, test_idx = held_out, np.arange(n_test)
    if eval_subset is not None and eval_subset < len(val_idx):
        val_idx = val_idx[balanced_subset(train_labels[val_idx], eval_subset, eval_rng)]
    n_scored = test_subset if test_subset is not None else eval_subset
    if n_scored is not None and n_scored < len(test_idx):
        test_idx = balanced_subset(test_labels, n_scored, eval_rng)
    if train_subset is not None and train_subset < len(train_idx):
        train_idx = train_idx[balanced_subset(train_labels[train_idx], train_subset, train_rng)]
    return Splits(train_idx, val_idx, test_idx)


#: the data budget: split_indices' keywords that a run configures (``RunConfig.budget()`` passes them to the modules)
SPLIT_FIELDS = tuple(n for n, p in inspect.signature(split_indices).parameters.items()
                     if p.kind == p.KEYWORD_ONLY and n not in ("seed", "where"))


class EpochStateDataModule(pl.LightningDataModule):
    """A data module whose training loader is one object for the whole fit, with an ``epoch`` counter that seeds its
    shuffle and augmentation; the counter is saved in checkpoints and restored before or after the loader exists,
    so a resumed run continues the data stream of an uninterrupted one. Subclasses give ``batches``."""

    def __init__(self) -> None:
        super().__init__()
        self._resume_epoch = 0
        self._train: Any = None

    def batches(self, split: str, *, train: bool = False, size: int | None = None, shard: bool = True) -> Any:
        raise NotImplementedError

    def train_dataloader(self) -> Any:
        if self._train is None:  # one object for the whole fit, so its epoch counter advances
            self._train = self.batches("train", train=True)
            self._train.epoch = self._resume_epoch
        return self._train

    def state_dict(self) -> dict[str, int]:
        """Saved in checkpoints: the training loader's epoch counter, which seeds its shuffle and augmentation."""
        return {"train_epoch": self._train.epoch if self._train is not None else self._resume_epoch}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self._resume_epoch = int(state_dict.get("train_epoch", 0))
        if self._train is not None:
            self._train.epoch = self._resume_epoch

    def val_dataloader(self) -> Any:
        return self.batches("val")

    def test_dataloader(self) -> Any:
        return self.batches("test")
