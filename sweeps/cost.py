"""`--dry-run` cost estimate: multiply-accumulates counted on the real model, time from an explicit throughput.

Training is costed as 3x the forward MACs per image (forward + backward), evaluation as 1x. The time is that
count divided by a throughput: measured here with a few synthetic training steps when the protocol's device is
available, otherwise an assumed round number. Data loading, compilation and per-epoch overhead are not included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ablations import Study
from sweeps.protocols import Protocol

ASSUMED_MACS_PER_S = {"cuda": 20e12, "cpu": 30e9}  # sustained training MAC/s: a guess, stated as one
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000, "imagefolder": 1_281_167}  # imagefolder: ImageNet-1k's
TEST_IMAGES = 10_000
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
        k, c = IMAGENET_CLASSES, str(protocol.classes or "")
        if c.isdigit():
            k = int(c)
        elif c and Path(c).is_file():
            k = sum(1 for ln in Path(c).read_text().splitlines() if ln.strip() and not ln.startswith("#"))
        total, n_test = total * k // IMAGENET_CLASSES, n_test * k // IMAGENET_CLASSES
        note = f"ImageNet-1k's counts for {k} of its {IMAGENET_CLASSES} classes"
    n_train = protocol.train_subset or total - protocol.val_size
    n_val = protocol.eval_subset or protocol.val_size
    return n_train, n_val, protocol.eval_subset or n_test, note


@dataclass
class Estimate:
    macs_per_image: dict[str, int | None]  # per row, at 32 px
    params: dict[str, int | None]
    total_macs: float
    seconds: float
    throughput_note: str


def _build(study: Study, protocol: Protocol, label: str):
    import dataclasses

    import hiremlp

    cfg = dataclasses.replace(hiremlp.PRESETS[study.base_preset or protocol.preset], **study.row(label).overrides)
    num_classes = {"cifar100": 100, "imagefolder": IMAGENET_CLASSES}.get(protocol.dataset, 10)
    return hiremlp.build_model(dataclasses.replace(cfg, num_classes=num_classes))


def _measure(model, device: str, batch: int, size: int = 32) -> float:
    """Images/s of plain fp32 training steps on synthetic data (no data loading): an optimistic lower bound on
    time, not a benchmark."""
    import torch

    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters())
    x = torch.randn(batch, 3, size, size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    steps, t0 = 0, 0.0
    for i in range(3):
        if i == 1:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += i >= 1
    if device == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def estimate(study: Study, protocol: Protocol, rows: list[str], seeds: int, eval_sizes: tuple[int, ...],
             n_trials: int = 0, measure: bool = True) -> Estimate:
    """Cost of the whole grid (or `n_trials` tuning trials of the default row)."""
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
    n_train, n_val, n_test, _ = image_counts(protocol)
    size_factor = 1 + sum((s / size) ** 2 for s in eval_sizes if s != size)
    epochs = protocol.recipe.total_epochs
    per_run = {label: (3 * m * n_train * epochs + m * n_val * epochs + m * n_test * size_factor)
               if m else 0.0 for label, m in macs.items()}
    runs = {label: seeds for label in rows} if study.kind == "table" else {rows[0]: n_trials}
    total = sum(per_run[label] * k for label, k in runs.items())

    cuda = torch.cuda.is_available()
    kind = "cpu" if protocol.device == "cpu" else "cuda"  # 'auto' protocols are meant for a GPU
    known = [label for label in rows if macs[label]]
    if measure and known and (kind == "cpu" or cuda):
        device = kind
        batch = min(protocol.recipe.batch_size, 16) if device == "cpu" else protocol.recipe.batch_size
        ips = _measure(_build(study, protocol, known[0]), device, batch, size)
        rate = 3 * macs[known[0]] * ips
        note = (f"measured here: {ips:,.0f} train images/s for row {known[0]!r} on {device} (batch {batch}, fp32, "
                f"{size} px, "
                f"synthetic data, no data loading) = {rate / 1e9:,.1f} GMAC/s")
    else:
        rate = ASSUMED_MACS_PER_S[kind]
        note = f"assumed {rate / 1e9:,.0f} GMAC/s sustained on {kind} (a guess: no {kind} here to measure)"
        if known and kind == "cuda":
            note += f"; = {rate / (3 * macs[known[0]]):,.0f} train images/s per GPU for row {known[0]!r}"
    return Estimate(macs, params, total, total / rate, note)


def human_time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
