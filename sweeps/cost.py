"""`--dry-run` cost estimate: multiply-accumulates counted on the real model, time from measurement.

Training is costed as 3x the forward MACs per image (forward + backward), evaluation as 1x. The time comes from
the best source there is, and the dry run names it:

1. `recorded`: COMPLETE trials of the same protocol (name, dataset, batch size, device, precision) in any
   `results.csv` under the runs folder: their wall time per MAC of work, applied to this grid's MACs (so trials
   of another study, another epoch count or subset size still count). The cheapest and the most faithful: it
   includes data handling, Lightning, validation and each trial's warm-up, on this machine.
2. `measured`: synthetic training steps of the first row here, at the protocol's batch size, channels-last
   layout and precision, fused AdamW, each batch through the recipe's on-device augmentation, timed after
   warm-up steps; evaluation timed at the evaluation batch size; the warm-up's extra time is charged once per
   trial. Lightning's loop is not in it (a few percent); on a GPU, `benchmarks/gpu_check.py` records real trials,
   which make the estimate `recorded`.
3. `assumed`: a round throughput for a device that is not here to measure (a GPU protocol on a CPU machine).

Process start-up (imports, storage) is paid once per worker and is not included.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from ablations import Study
from sweeps.protocols import Protocol

ASSUMED_MACS_PER_S = {"cuda": 20e12, "cpu": 30e9}  # sustained training MAC/s: a guess, stated as one
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "imagefolder": 1_281_167}  # imagefolder: ImageNet-1k's
EVAL_BATCH_MIN = 512  # lightning_modules.CIFARDataModule evaluates at max(batch_size, 512)
# protocol and recipe fields that decide images/s on one machine; the rest (epochs, subsets) is scaled as work
SAME_SPEED_FIELDS = ("name", "dataset", "device", "precision")
SAME_SPEED_RECIPE_FIELDS = ("batch_size",)
EVAL_IMAGES = {"cifar10": 10_000, "cifar100": 10_000, "imagefolder": 50_000}  # the reported test split
IMAGENET_CLASSES = 1000


def image_size(protocol: Protocol) -> int:
    """The size the protocol trains at (CIFAR: 32)."""
    return protocol.image_size or 32


def image_counts(protocol: Protocol) -> tuple[int, int, int, str]:
    """(train, validation, test) images per epoch / run and where the numbers come from. An imagefolder
    protocol is costed as ImageNet-1k, scaled by the share of its classes (``--classes N`` or a list file)."""
    total, n_test, note = TRAIN_IMAGES[protocol.dataset], EVAL_IMAGES[protocol.dataset], ""
    if protocol.dataset == "imagefolder":
        k = num_classes(protocol)
        total, n_test = total * k // IMAGENET_CLASSES, n_test * k // IMAGENET_CLASSES
        note = f"ImageNet-1k's counts for {k} of its {IMAGENET_CLASSES} classes"
    n_train = protocol.train_subset or total - protocol.val_size
    n_val = min(protocol.eval_subset or protocol.val_size, protocol.val_size)
    return n_train, n_val, min(protocol.eval_subset or n_test, n_test), note


@dataclass
class Estimate:
    macs_per_image: dict[str, int | None]  # per row, at the protocol's image size
    params: dict[str, int | None]
    total_macs: float
    seconds: float
    throughput_note: str
    source: str = "assumed"  # 'recorded' | 'measured' | 'assumed'


def num_classes(protocol: Protocol) -> int:
    """The dataset's classes (an ImageFolder protocol whose classes are not stated: ImageNet-1k's)."""
    from lightning_modules.dataset_classes import dataset_classes

    return dataset_classes(protocol.dataset, None, protocol.classes) or IMAGENET_CLASSES


def _row_protocol(study: Study, protocol: Protocol, label: str) -> Protocol:
    """The protocol a row's trials train with (a study file's row may change the recipe: epochs, drop path)."""
    from sweeps.trainers import job_for

    return job_for(study, protocol, label, 0, {}, Path("estimate")).protocol


def _build(study: Study, protocol: Protocol, label: str):
    import hiremlp
    from ablations.studies import row_config

    protocol = _row_protocol(study, protocol, label)
    return hiremlp.build_model(row_config(study, label, protocol.preset, drop_path=protocol.recipe.drop_path,
                                          num_classes=num_classes(protocol)))


def split_sizes(protocol: Protocol) -> tuple[int, int, int]:
    """(train, validation, test) images of one trial."""
    return image_counts(protocol)[:3]


def _size_factor(eval_sizes, size: int = 32) -> float:
    """The test pass at the training size plus one per extra size, each costed by its pixel count."""
    return 1 + sum((s / size) ** 2 for s in eval_sizes if s != size)


def trial_macs(macs: float, protocol: Protocol, eval_sizes=(), epochs: int | None = None) -> float:
    """MACs of one trial: 3x per training image, 1x per validation image each epoch and per test image."""
    n_train, n_val, n_test = split_sizes(protocol)
    epochs = protocol.recipe.total_epochs if epochs is None else epochs
    return macs * (3 * n_train * epochs + n_val * epochs + n_test * _size_factor(eval_sizes, image_size(protocol)))


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
    import dataclasses

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
                fields = {f.name: r.get(f"protocol.{f.name}", "") for f in dataclasses.fields(Protocol)}
                epochs = int(r["recipe.epochs"]) + int(r["recipe.cooldown_epochs"] or 0)
                p = dataclasses.replace(
                    protocol, val_size=int(fields["val_size"] or protocol.val_size),
                    train_subset=int(fields["train_subset"]) if fields["train_subset"] not in ("", "None") else None,
                    eval_subset=int(fields["eval_subset"]) if fields["eval_subset"] not in ("", "None") else None)
            except (ValueError, KeyError):
                continue
            sizes = [int(c.split("@")[1]) for c in df.columns if c.startswith("test_acc@") and r[c] != ""]
            if not (macs > 0 and secs > 0 and math.isfinite(secs)):
                continue
            wall += secs
            work += trial_macs(macs, p, sizes, epochs)
            used += 1
        if used:
            trials += used
            files.append(path)
    if not trials:
        return None
    return Recorded(wall / work, trials, files, wall / trials)


# ----------------------------------------------------------------------------------------------- measured

@dataclass
class Measured:
    train_images_per_s: float
    eval_images_per_s: float
    warmup_extra_s: float  # what the first steps of a fresh model cost beyond steady-state steps
    batch: int
    eval_batch: int
    device: str
    precision: str
    channels_last: bool
    warmup_steps: int


def measure(model, protocol: Protocol, device: str, warmup_steps: int = 2, budget_s: float = 1.5) -> Measured:
    """Images/s of training steps as a trial takes them (the protocol's batch size, channels-last, its precision,
    fused AdamW, label-smoothed cross-entropy, the recipe's on-device augmentation) on synthetic images, timed
    after `warmup_steps`; and of evaluation."""
    import torch

    cuda = device == "cuda"
    if not cuda:
        from lightning_modules.host_memory import keep_freed_memory

        keep_freed_memory()  # as a CPU trial runs (lightning_modules/run.py), else its page faults are timed too
    precision = ("bf16-mixed" if cuda else "32") if protocol.precision == "auto" else str(protocol.precision)
    amp = torch.bfloat16 if precision == "bf16-mixed" else None
    model = model.to(device).to(memory_format=torch.channels_last).train()
    recipe = protocol.recipe
    opt = torch.optim.AdamW(model.parameters(), lr=recipe.peak_lr, fused=True)
    batch, eval_batch = recipe.batch_size, max(recipe.batch_size, EVAL_BATCH_MIN)
    size = image_size(protocol)
    # each step's batch goes through the recipe's on-device augmentation, as in training; the images are synthetic
    import numpy as np

    from lightning_modules.gpu_loader import DeviceAugment

    augment = DeviceAugment(recipe, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), torch.device(device), channels_last=True)
    raw = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    y = torch.randint(0, num_classes(protocol), (batch,), device=device)
    gen, host_rng = torch.Generator(device=device), np.random.default_rng(0)
    gen.manual_seed(0)

    def sync() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def train_step() -> None:
        x = augment.mix(augment.finish(raw, gen), y, host_rng)[0]
        with torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None):
            loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=recipe.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    t0 = sync()
    for _ in range(warmup_steps):
        train_step()
    t1 = sync()
    steps = 0
    while steps < 2 or (time.perf_counter() - t1 < budget_s and steps < 50):
        train_step()
        steps += 1
    t2 = sync()
    train_ips = steps * batch / (t2 - t1)
    warmup_extra = max(0.0, (t1 - t0) - warmup_steps * batch / train_ips)

    model.eval()
    xe = torch.randn(eval_batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    with torch.no_grad(), torch.autocast(device, dtype=amp or torch.float32, enabled=amp is not None):
        model(xe)  # warm-up
        t3, n = sync(), 0
        while n < 2 or (time.perf_counter() - t3 < budget_s / 2 and n < 20):
            model(xe)
            n += 1
        eval_ips = n * eval_batch / (sync() - t3)
    return Measured(train_ips, eval_ips, warmup_extra, batch, eval_batch, device, precision, True, warmup_steps)


def measured_trial_seconds(m: Measured, protocol: Protocol, eval_sizes=()) -> float:
    """One trial of the measured row: warm-up, training images, validation every epoch, test (and extra sizes)."""
    n_train, n_val, n_test = split_sizes(protocol)
    epochs = protocol.recipe.total_epochs
    return (m.warmup_extra_s + n_train * epochs / m.train_images_per_s
            + (n_val * epochs + n_test * _size_factor(eval_sizes, image_size(protocol))) / m.eval_images_per_s)


# ----------------------------------------------------------------------------------------------- estimate

def estimate(study: Study, protocol: Protocol, rows: list[str], seeds: int, eval_sizes: tuple[int, ...],
             n_trials: int = 0, measure_here: bool = True, runs_dir: Path | None = None) -> Estimate:
    """Cost of the whole grid (or `n_trials` tuning trials of the default row), with its time and its source."""
    import torch

    import hiremlp

    macs, params = {}, {}
    size = image_size(protocol)
    for label in rows:
        try:
            model = _build(study, protocol, label)
            macs[label], params[label] = hiremlp.count_macs(model, size), hiremlp.count_params(model)
        except Exception:  # noqa: BLE001 - a row that cannot build is reported as unknown
            macs[label] = params[label] = None
    per_run = {label: trial_macs(m, _row_protocol(study, protocol, label), eval_sizes) if m else 0.0
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
        m = measure(_build(study, protocol, known[0]), protocol, kind)
        per_trial = measured_trial_seconds(m, protocol, eval_sizes)
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
