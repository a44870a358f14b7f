"""Lightning's own experiment loggers, one option away (``logger="csv,tensorboard"``); none by default.

``metrics.csv`` and ``result.json`` are the run's record either way; these are for people who live in
TensorBoard, Weights & Biases or MLflow. Each attempt of a resumed run logs into a new version folder.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from pytorch_lightning.loggers import Logger

__all__ = ["LOGGERS", "make_loggers", "parse_loggers"]

#: logger name -> the packages it needs (any one of them)
LOGGERS: dict[str, tuple[str, ...]] = {
    "csv": (), "tensorboard": ("tensorboard", "tensorboardX"), "wandb": ("wandb",), "mlflow": ("mlflow",),
}


def parse_loggers(spec: str) -> tuple[str, ...]:
    """``"csv,tensorboard"`` -> ``("csv", "tensorboard")``; ``"none"``/``""`` -> ``()``.

    ValueError (one line) for an unknown name or a logger whose package is not installed."""
    names = tuple(dict.fromkeys(n.strip().lower() for n in str(spec).split(",") if n.strip()))
    if names in ((), ("none",)):
        return ()
    for name in names:
        if name not in LOGGERS:
            raise ValueError(f"logger={spec!r}: unknown logger {name!r}; allowed: none or a comma-separated list "
                             f"of {', '.join(LOGGERS)}")
        needs = LOGGERS[name]
        if needs and not any(importlib.util.find_spec(pkg) for pkg in needs):
            raise ValueError(f"logger {name!r} needs the {needs[0]} package: pip install {needs[0]}")
    return names


def make_loggers(names: tuple[str, ...], run_dir: Path, name: str) -> list[Logger]:
    """The loggers for one run: files under ``run_dir/logs/<logger>/``; ``name`` labels the run in W&B/MLflow."""
    from pytorch_lightning.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger

    save_dir = str(Path(run_dir) / "logs")
    made: list[Logger] = []
    for n in names:
        if n == "csv":
            made.append(CSVLogger(save_dir, name="csv"))
        elif n == "tensorboard":
            made.append(TensorBoardLogger(save_dir, name="tensorboard", default_hp_metric=False))
        elif n == "wandb":
            project = os.environ.get("WANDB_PROJECT", "hiremlp-ablations")
            made.append(WandbLogger(project=project, name=name, save_dir=save_dir))
        elif n == "mlflow":
            experiment = os.environ.get("MLFLOW_EXPERIMENT_NAME", "hiremlp-ablations")
            made.append(MLFlowLogger(experiment_name=experiment, run_name=name,
                                     tracking_uri=os.environ.get("MLFLOW_TRACKING_URI"),
                                     save_dir=str(Path(save_dir) / "mlruns")))
    return made
