"""CIFAR data (device-resident), the Hire-MLP LightningModule, and one training run (``run``)."""

from .cifar import SPECS, CifarArrays, DatasetError, UnofficialArchiveWarning, default_data_dir, load_cifar
from .classifier import RECIPE_DEFAULTS, DivergedError, HireMLPClassifier
from .datamodule import CIFAR10DataModule, CIFAR100DataModule, CIFARDataModule
from .epoch_metrics import EpochMetrics
from .gpu_loader import GpuBatches
from .progress import EpochProgress
from .run import RunConfig, run

__all__ = [
    "CIFAR10DataModule", "CIFAR100DataModule", "CIFARDataModule", "CifarArrays", "DatasetError", "DivergedError",
    "EpochMetrics", "EpochProgress", "GpuBatches", "HireMLPClassifier", "RECIPE_DEFAULTS", "RunConfig", "SPECS",
    "UnofficialArchiveWarning", "default_data_dir", "load_cifar", "run",
]
