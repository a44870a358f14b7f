"""CIFAR-10/100 LightningDataModules: seeded class-balanced splits, data resident on the training device."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from .cifar import SPECS, CifarArrays, download, find_data_dir, load_cifar
from .data_base import EpochStateDataModule, balanced_subset, split_indices
from .distributed import per_device_batch, world_of
from .gpu_loader import GpuBatches
from .recipe import Recipe

__all__ = ["CIFAR10DataModule", "CIFAR100DataModule", "CIFARDataModule", "balanced_subset", "resolve_device"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' → cuda if available else cpu."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class CIFARDataModule(EpochStateDataModule):
    """Train/val/test splits of one CIFAR dataset as ``GpuBatches`` on ``device``.

    ``val_size`` images are held out of the official training set (class-balanced) for model selection and
    pruning; the official test set is only used for the final report. ``train_subset`` and ``eval_subset`` shrink
    the train and the val/test splits (class-balanced) for smoke runs. The evaluation images (the validation split
    and both eval subsets) are drawn with ``data_seed`` alone, so every trial of a study, whatever its ``seed``,
    is scored on the same images and rows can be compared pairwise; ``seed`` draws the training subset and drives
    the order and augmentation of the training batches. ``recipe`` supplies the training loader's augmentation.
    """

    dataset: str = ""
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.25, 0.25, 0.25)

    def __init__(self, data_dir: str | os.PathLike | None = None, batch_size: int = 256, val_size: int = 5000,
                 train_subset: int | None = None, eval_subset: int | None = None, seed: int = 0,
                 device: str | torch.device = "auto", download: bool = False, eval_batch_size: int | None = None,
                 channels_last: bool = False, pad: int = 4, flip: bool = True, data_seed: int = 0,
                 recipe: Recipe | None = None, budget: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if batch_size < 1 or val_size < 0 or (train_subset is not None and train_subset < 1) \
                or (eval_subset is not None and eval_subset < 1):
            raise ValueError("batch_size, train_subset and eval_subset must be >= 1 and val_size >= 0")
        self.data_dir = data_dir
        self.batch_size, self.seed, self.recipe = batch_size, seed, recipe
        # split_indices' keywords: these four, and any other the run configures (RunConfig.budget())
        self.budget = {"val_size": val_size, "train_subset": train_subset, "eval_subset": eval_subset,
                       "data_seed": data_seed, **(budget or {})}
        self.device = resolve_device(device)
        self.download, self.channels_last, self.pad, self.flip = download, channels_last, pad, flip
        self.eval_batch_size = eval_batch_size or max(batch_size, 512)
        self.splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.classes: list[str] = []

    @property
    def num_classes(self) -> int:
        return SPECS[self.dataset].num_classes

    @property
    def image_size(self) -> int:
        return 32

    def prepare_data(self) -> None:
        """Download once if asked (assigns no state, per Lightning's rule)."""
        spec = SPECS[self.dataset]
        root = find_data_dir(self.dataset, self.data_dir, download_ok=True)
        if self.download and not (root / spec.archive).is_file() and not (root / spec.folder).is_dir():
            download(spec, root)

    def load(self) -> CifarArrays:
        return load_cifar(self.dataset, self.data_dir, download_ok=self.download)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        a = self.load()
        self.classes = a.classes
        idx = split_indices(a.train_y, len(a.test_y), a.test_y, **self.budget, seed=self.seed,
                            where=f"{self.dataset}'s training set")

        def put(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.from_numpy(np.ascontiguousarray(x)).to(self.device), torch.from_numpy(y).to(self.device)

        self.splits = {"train": put(a.train_x[idx.train], a.train_y[idx.train]),
                       "val": put(a.train_x[idx.val], a.train_y[idx.val]),
                       "test": put(a.test_x[idx.test], a.test_y[idx.test])}

    def batches(self, split: str, *, train: bool = False, size: int | None = None, shard: bool = True) -> GpuBatches:
        """Batches of one split; ``size`` resizes the images (evaluation at other input sizes). Under
        data-parallel training each rank gets its shard (``shard=False``: the whole split) and the global
        ``batch_size`` is divided over the ranks."""
        x, y = self.splits[split]
        rank, world = world_of(self.trainer) if shard else (0, 1)
        bs = per_device_batch(self.batch_size, world) if train else max(1, self.eval_batch_size // world)
        return GpuBatches(x, y, bs, train=train, mean=self.mean,
                          std=self.std, seed=self.seed, pad=self.pad, flip=self.flip,
                          channels_last=self.channels_last, size=size, recipe=self.recipe if train else None,
                          rank=rank, world_size=world)


class CIFAR10DataModule(CIFARDataModule):
    dataset = "cifar10"
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)


class CIFAR100DataModule(CIFARDataModule):
    dataset = "cifar100"
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
