"""CIFAR data (device-resident), the Hire-MLP LightningModule, and one training run (``run``)."""

from .cifar import SPECS, CifarArrays, DatasetError, UnofficialArchiveWarning, default_data_dir, load_cifar
from .classifier import RECIPE_DEFAULTS, DivergedError, HireMLPClassifier
from .datamodule import CIFAR10DataModule, CIFAR100DataModule, CIFARDataModule
from .gpu_loader import GpuBatches
from .run import EpochMetrics, RunConfig, run

__all__ = [
    "CIFAR10DataModule", "CIFAR100DataModule", "CIFARDataModule", "CifarArrays", "DatasetError", "DivergedError",
    "EpochMetrics", "GpuBatches", "HireMLPClassifier", "RECIPE_DEFAULTS", "RunConfig", "SPECS",
    "UnofficialArchiveWarning", "default_data_dir", "load_cifar", "run",
]
