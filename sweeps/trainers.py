"""What a worker trains: one trial's ``RunConfig``, and the trainer that runs it.

A trainer is ``trainer(cfg: RunConfig, callbacks, *, row: str) -> dict`` (the result: ``val_acc``, ``test_acc``,
...). ``lightning`` is the real one; any ``module:function`` with that signature can be passed with --trainer (the
suite's fast stand-ins are ``tests/sweep_fakes.py``). A trainer that reads no dataset sets ``needs_data = False``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ablations import Study
from lightning_modules.run_config import RunConfig
from sweeps.protocols import Protocol

Trainer = Callable[..., dict]


def trial_config(study: Study, protocol: Protocol, row: str, seed: int, run_dir: Path, hp: dict | None = None,
                 **settings: Any) -> RunConfig:
    """One trial's run: the protocol's config with the row's recipe changes, then ``hp`` (a tune trial's), the row's
    model overrides on the study's base preset, the seed, the trial folder and the sweep's ``settings`` (data
    folder, eval sizes, checkpointing); checked as a whole, ValueError when they make an invalid run."""
    r = study.row(row)
    return protocol.config.with_changes(**{
        **r.recipe, **(hp or {}), "preset": study.base_preset or protocol.preset,
        "model_overrides": dict(r.overrides), "seed": seed, "run_dir": str(run_dir), **settings})


def lightning_trainer(cfg: RunConfig, callbacks: Sequence[Any] = (), *, row: str = "") -> dict:
    """Run ``cfg`` through ``lightning_modules.runner.run`` (in a command of its own when it trains on several
    devices: Lightning's launcher re-runs the command once per rank)."""
    from lightning_modules.runner import run

    if cfg.devices > 1:
        from sweeps.multi_device import run_in_child

        return run_in_child(cfg, callbacks)
    return run(cfg, callbacks=callbacks)


def check_trial(cfg: RunConfig) -> None:
    """Build what a trial builds before it trains (the model config, with the dataset's classes) and plan its input
    sizes; ValueError/TypeError on a bad value."""
    import hiremlp
    from lightning_modules.dataset_classes import dataset_classes

    model = cfg.model_config(dataset_classes(cfg.dataset, cfg.data_dir, cfg.classes, check=False))
    hiremlp.check_input_size(model, cfg.train_image_size)  # a row that cannot train at it fails every seed
    for size in cfg.eval_sizes:  # a size a row cannot run is recorded as na@size, never an error
        hiremlp.stage_plan(model, size)


def resolve_trainer(name: str) -> Trainer:
    """'lightning' or 'package.module:function'."""
    if name == "lightning":
        return lightning_trainer
    module, _, attr = name.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError):
        raise ValueError(f"unknown trainer {name!r}; allowed: lightning, or module:function") from None
