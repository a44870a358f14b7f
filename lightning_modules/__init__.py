"""CIFAR data (device-resident), ImageFolder data, the Hire-MLP LightningModule, the training recipe, one training
run (``run``).

Names are imported on first use (PEP 562 ``__getattr__``), so ``from lightning_modules.run_config import
RunConfig`` (what a sweep's command line needs to parse its options) does not pay for importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "SPECS": "cifar", "CifarArrays": "cifar", "DatasetError": "cifar", "UnofficialArchiveWarning": "cifar",
    "default_data_dir": "cifar", "load_cifar": "cifar",
    "DivergedError": "classifier", "HireMLPClassifier": "classifier",
    "CIFAR10DataModule": "datamodule", "CIFAR100DataModule": "datamodule", "CIFARDataModule": "datamodule",
    "GpuBatches": "gpu_loader",
    "ImageFolderDataModule": "imagefolder", "scan_image_folder": "imagefolder",
    "PAPER": "recipe", "RECIPES": "recipe", "Recipe": "recipe", "get_recipe": "recipe",
    "EpochMetrics": "epoch_metrics", "EpochProgress": "progress", "RunConfig": "run_config", "run": "runner",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'lightning_modules' has no attribute {name!r}")
    module = importlib.import_module(f".{_WHERE[name]}", __name__)
    for exported, where in _WHERE.items():
        if where == _WHERE[name]:
            globals()[exported] = getattr(module, exported)
    return globals()[name]

