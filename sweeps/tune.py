"""Tuning studies (kind 'tune'): TPE with explicit options and a median pruner (the callback is in `pruning`)."""

from __future__ import annotations

import optuna

from ablations import Param, Study


def make_sampler(study: Study, seed: int) -> optuna.samplers.BaseSampler:
    """TPE for tuning (options spelled out so optuna 4.x and 5.x behave the same); a plain sampler for tables,
    whose params are all fixed by the enqueued cell."""
    if study.kind == "tune":
        return optuna.samplers.TPESampler(seed=seed, **dict(study.sampler))
    return optuna.samplers.RandomSampler(seed=seed)


def make_pruner(study: Study, epochs: int) -> optuna.pruners.BasePruner:
    """Tables are never pruned: a pruned cell has no final accuracy and would bias the row's mean."""
    if study.kind != "tune":
        return optuna.pruners.NopPruner()
    opts = dict(study.pruner)
    warmup = max(1, round(opts.pop("warmup_fraction", 0.25) * epochs))
    return optuna.pruners.MedianPruner(n_warmup_steps=opts.pop("n_warmup_steps", warmup), **opts)


def suggest(trial: optuna.Trial, name: str, p: Param):
    if p.kind == "float":
        return trial.suggest_float(name, p.low, p.high, log=p.log)
    if p.kind == "int":
        return trial.suggest_int(name, int(p.low), int(p.high), log=p.log)
    return trial.suggest_categorical(name, list(p.choices))


def suggest_hparams(trial: optuna.Trial, study: Study, epochs: int) -> dict:
    """The protocol fields this trial overrides; `epochs_scale` becomes an epoch budget."""
    hp = {name: suggest(trial, name, p) for name, p in study.search_space.items()}
    if "epochs_scale" in hp:
        hp["epochs"] = max(1, round(hp.pop("epochs_scale") * epochs))
    return hp
