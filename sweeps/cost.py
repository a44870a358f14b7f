"""`--dry-run` cost estimate: multiply-accumulates counted on the real model, time from measurement.

Training is costed as 3x the forward MACs per image (forward + backward), evaluation as 1x. The time comes from
the best source there is, and the dry run names it:

1. `recorded`: COMPLETE trials of the same protocol (name, dataset, batch size, device, precision) in any
   `results.csv` under the runs folder: their wall time per MAC of work, applied to this grid's MACs (so trials
   of another study, another epoch count or subset size still count). The cheapest and the most faithful: it
   includes data handling, Lightning, validation and each trial's warm-up, on this machine.
2. `measured`: the first row's training step timed here after warm-up (`lightning_modules.step_timing`, the
   step `benchmarks/bench.py --cpu-step` times too: the trial's batch, layout, precision, augmentation and
   optimiser); evaluation timed at the evaluation batch size; the warm-up's extra time is charged once per trial.
   Lightning's loop is not in it (a few percent); on a GPU, `benchmarks/gpu_check.py` records real trials, which
   make the estimate `recorded`.
3. `assumed`: a round throughput for a device that is not here to measure (a GPU protocol on a CPU machine).

Process start-up (imports, storage) is paid once per worker and is not included.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from ablations import Study
from lightning_modules.dataset_classes import IMAGENET_CLASSES
from lightning_modules.run_config import RunConfig, field_default
from lightning_modules.step_timing import StepTiming, time_training_step
from sweeps.protocols import Protocol
from sweeps.trainers import trial_config

ASSUMED_MACS_PER_S = {"cuda": 20e12, "cpu": 30e9}  # sustained training MAC/s: a guess, stated as one
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "imagefolder": 1_281_167}  # imagefolder: ImageNet-1k's
# protocol and recipe fields that decide images/s on one machine; the rest (epochs, subsets) is scaled as work
SAME_SPEED_FIELDS = ("name", "dataset", "device", "precision")
SAME_SPEED_RECIPE_FIELDS = ("batch_size",)
EVAL_IMAGES = {"cifar10": 10_000, "cifar100": 10_000, "imagefolder": 50_000}  # the reported test split


def image_counts(protocol: Protocol | RunConfig) -> tuple[int, int, int, str]:
    """(train, validation, test) images per epoch / run and where the numbers come from. An imagefolder
    protocol is costed as ImageNet-1k, scaled by the share of its classes (``--classes N`` or a list file)."""
    total, n_test, note = TRAIN_IMAGES[protocol.dataset], EVAL_IMAGES[protocol.dataset], ""
    if protocol.dataset == "imagefolder":
        k = num_classes(protocol)
        total, n_test = total * k // IMAGENET_CLASSES, n_test * k // IMAGENET_CLASSES
        note = f"ImageNet-1k's counts for {k} of its {IMAGENET_CLASSES} classes"
    n_train = protocol.train_subset or total - protocol.val_size
    n_val = min(protocol.eval_subset or protocol.val_size, protocol.val_size)
    return n_train, n_val, min(protocol.test_subset or protocol.eval_subset or n_test, n_test), note


@dataclass
class Estimate:
    macs_per_image: dict[str, int | None]  # per row, at the protocol's image size
    params: dict[str, int | None]
    total_macs: float
    seconds: float
    throughput_note: str
    source: str = "assumed"  # 'recorded' | 'measured' | 'assumed'


def num_classes(protocol: Protocol | RunConfig) -> int:
    """The dataset's classes (an ImageFolder protocol whose classes are not stated: ImageNet-1k's)."""
    from lightning_modules.dataset_classes import dataset_classes

    return dataset_classes(protocol.dataset, None, protocol.classes) or IMAGENET_CLASSES


def _row_config(study: Study, protocol: Protocol, label: str, eval_sizes=()) -> RunConfig:
    """The run a row's trials train (a study file's row may change the recipe: epochs, drop path)."""
    return trial_config(study, protocol, label, 0, Path("estimate"), eval_sizes=tuple(eval_sizes))


def _build(study: Study, protocol: Protocol, label: str):
    import hiremlp

    cfg = _row_config(study, protocol, label)
    return hiremlp.build_model(cfg.model_config(num_classes(cfg)))


def split_sizes(protocol: Protocol | RunConfig) -> tuple[int, int, int]:
    """(train, validation, test) images of one trial."""
    return image_counts(protocol)[:3]


def _size_factor(eval_sizes, size: int = 32) -> float:
    """The test pass at the training size plus one per extra size, each costed by its pixel count."""
    return 1 + sum((s / size) ** 2 for s in eval_sizes if s != size)


def trial_macs(macs: float, cfg: RunConfig) -> float:
    """MACs of one trial: 3x per training image, 1x per validation image each epoch and per test image (and per
    test image at each of ``cfg.eval_sizes``)."""
    n_train, n_val, n_test = split_sizes(cfg)
    epochs = cfg.recipe.total_epochs
    return macs * (3 * n_train * epochs + n_val * epochs + n_test * _size_factor(cfg.eval_sizes,
                                                                                 cfg.train_image_size))


# ----------------------------------------------------------------------------------------------- recorded

@dataclass
class Recorded:
    seconds_per_mac: float
    trials: int
    files: list[Path]
    mean_trial_s: float


def recorded_rate(runs_dir: Path | None, protocol: Protocol) -> Recorded | None:
    """Seconds per MAC of work over the COMPLETE trials of the same protocol recorded under `runs_dir`."""
    if runs_dir is None or not Path(runs_dir).is_dir():
        return None
    import pandas as pd

    want = {**{f"protocol.{k}": str(getattr(protocol, k)) for k in SAME_SPEED_FIELDS},
            **{f"recipe.{k}": str(getattr(protocol.recipe, k)) for k in SAME_SPEED_RECIPE_FIELDS}}
    wall = work = 0.0
    trials, files = 0, []
    for path in sorted(Path(runs_dir).glob("*/results.csv")):
        try:
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
        except (OSError, ValueError):
            continue
        needed = {"state", "macs", "wall_s", *want, "recipe.epochs", "recipe.cooldown_epochs"}
        if not needed <= set(df.columns):
            continue
        df = df[(df["state"] == "COMPLETE") & (df[list(want)] == pd.Series(want)).all(axis=1)]
        used = 0
        for _, r in df.iterrows():
            try:
                macs, secs = float(r["macs"]), float(r["wall_s"])
                budget = {k: _recorded(r, f"protocol.{k}", field_default(k)) for k in protocol.config.budget()}
                cfg = protocol.config.with_changes(
                    **budget, epochs=int(r["recipe.epochs"]), cooldown_epochs=int(r["recipe.cooldown_epochs"] or 0),
                    eval_sizes=[int(c.split("@")[1]) for c in df.columns if c.startswith("test_acc@") and r[c] != ""])
            except (ValueError, KeyError):
                continue
            if not (macs > 0 and secs > 0 and math.isfinite(secs)):
                continue
            wall += secs
            work += trial_macs(macs, cfg)
            used += 1
        if used:
            trials += used
            files.append(path)
    if not trials:
        return None
    return Recorded(wall / work, trials, files, wall / trials)


def measured_trial_seconds(m: StepTiming, cfg: RunConfig) -> float:
    """One trial of the measured row: warm-up, training images, validation every epoch, test (and extra sizes)."""
    n_train, n_val, n_test = split_sizes(cfg)
    epochs = cfg.recipe.total_epochs
    return (m.warmup_extra_s + n_train * epochs / m.train_images_per_s
            + (n_val * epochs + n_test * _size_factor(cfg.eval_sizes, cfg.train_image_size)) / m.eval_images_per_s)


def _recorded(row, column: str, default):
    """A results.csv value as the int it was (None where it was None; ``default`` where the column is newer than
    the file)."""
    if column not in row:
        return default
    return None if row[column] in ("", "None") else int(row[column])


# ----------------------------------------------------------------------------------------------- estimate

def estimate(study: Study, protocol: Protocol, rows: list[str], seeds: int, eval_sizes: tuple[int, ...],
             n_trials: int = 0, measure_here: bool = True, runs_dir: Path | None = None) -> Estimate:
    """Cost of the whole grid (or `n_trials` tuning trials of the default row), with its time and its source."""
    import torch

    import hiremlp

    macs, params = {}, {}
    size = protocol.config.train_image_size
    for label in rows:
        try:
            model = _build(study, protocol, label)
            macs[label], params[label] = hiremlp.count_macs(model, size), hiremlp.count_params(model)
        except Exception:  # noqa: BLE001 - a row that cannot build is reported as unknown
            macs[label] = params[label] = None
    per_run = {label: trial_macs(m, _row_config(study, protocol, label, eval_sizes)) if m else 0.0
               for label, m in macs.items()}
    runs = {label: seeds for label in rows} if study.kind == "table" else {rows[0]: n_trials}
    total = sum(per_run[label] * k for label, k in runs.items())

    rec = recorded_rate(runs_dir, protocol)
    if rec is not None:
        where = rec.files[0].parent.parent
        note = (f"{rec.trials} COMPLETE trial(s) of protocol {protocol.name} (batch {protocol.recipe.batch_size}, "
                f"device {protocol.device}, precision {protocol.precision}) recorded in {len(rec.files)} "
                f"results.csv under {where}, {rec.mean_trial_s:.1f} s each, scaled by MACs x images x epochs")
        return Estimate(macs, params, total, total * rec.seconds_per_mac, note, "recorded")

    cuda = torch.cuda.is_available()
    kind = "cpu" if protocol.device == "cpu" else "cuda"  # 'auto' protocols are meant for a GPU
    known = [label for label in rows if macs[label]]
    if measure_here and known and (kind == "cpu" or cuda):
        row = _row_config(study, protocol, known[0], eval_sizes)
        m = time_training_step(row, kind, eval_budget_s=0.75)
        per_trial = measured_trial_seconds(m, row)
        seconds = per_trial * total / per_run[known[0]]
        note = (f"row {known[0]!r} on {kind}: {m.train_images_per_s:,.0f} train images/s at batch {m.batch}, "
                f"{m.eval_images_per_s:,.0f} eval images/s at batch {m.eval_batch}, channels_last, precision "
                f"{m.precision}, after {m.warmup_steps} warm-up steps (+{m.warmup_extra_s:.1f} s per trial); "
                f"synthetic images through the recipe's on-device augmentation; Lightning's loop not included "
                f"(+3% on a CPU, benchmarks/overhead.py); other rows scaled by MACs")
        return Estimate(macs, params, total, seconds, note, "measured")
    rate = ASSUMED_MACS_PER_S[kind]
    note = f"{rate / 1e9:,.0f} GMAC/s sustained on {kind} (a guess: no {kind} here to measure, no recorded trials)"
    if known and kind == "cuda":
        note += f"; = {rate / (3 * macs[known[0]]):,.0f} train images/s per GPU for row {known[0]!r}"
    return Estimate(macs, params, total, total / rate, note, "assumed")


def start_line(study: Study, protocol: Protocol, rows: list[str], eval_sizes: tuple[int, ...], to_run: int,
               runs_dir: Path | None = None) -> str:
    """What a sweep says first: the estimated time of the `to_run` trials still to run, from `estimate` (recorded
    trials here, else a warmed-up measurement on this machine), and how long finding it took."""
    t0 = time.perf_counter()
    est = estimate(study, protocol, rows, 1, eval_sizes, n_trials=1, runs_dir=runs_dir)
    trials = len(rows) if study.kind == "table" else 1
    took = time.perf_counter() - t0
    return (f"estimated time: ~{human_time(est.seconds / trials * to_run)} for {to_run} trial(s) on one device, "
            f"{est.source}: {est.throughput_note} (the estimate took {took:.1f} s; worker start-up not included)")


def human_time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
