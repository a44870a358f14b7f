"""`--dry-run` cost estimate: multiply-accumulates counted on the real model, time from an explicit throughput.

Training is costed as 3x the forward MACs per image (forward + backward), evaluation as 1x. The time is that
count divided by a throughput: measured here with a few synthetic training steps when the protocol's device is
available, otherwise an assumed round number. Data loading, compilation and per-epoch overhead are not included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from ablations import Study
from sweeps.protocols import Protocol

ASSUMED_MACS_PER_S = {"cuda": 20e12, "cpu": 30e9}  # sustained training MAC/s: a guess, stated as one
TRAIN_IMAGES = {"cifar10": 50_000, "cifar100": 50_000}
TEST_IMAGES = 10_000


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
    num_classes = 100 if protocol.dataset == "cifar100" else 10
    return hiremlp.build_model(dataclasses.replace(cfg, num_classes=num_classes))


def _measure(model, device: str, batch: int) -> float:
    """Images/s of plain fp32 training steps on synthetic data (no data loading): an optimistic lower bound on
    time, not a benchmark."""
    import torch

    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters())
    x = torch.randn(batch, 3, 32, 32, device=device)
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
    for label in rows:
        try:
            model = _build(study, protocol, label)
            macs[label], params[label] = hiremlp.count_macs(model, 32), hiremlp.count_params(model)
        except Exception:  # noqa: BLE001 - a row that cannot build is reported as unknown
            macs[label] = params[label] = None
    n_train = protocol.train_subset or TRAIN_IMAGES[protocol.dataset] - protocol.val_size
    n_val = protocol.eval_subset or protocol.val_size
    n_test = protocol.eval_subset or TEST_IMAGES
    size_factor = 1 + sum((s / 32) ** 2 for s in eval_sizes if s != 32)
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
        ips = _measure(_build(study, protocol, known[0]), device, batch)
        rate = 3 * macs[known[0]] * ips
        note = (f"measured here: {ips:,.0f} train images/s for row {known[0]!r} on {device} (batch {batch}, fp32, "
                f"synthetic data, no data loading) = {rate / 1e9:,.1f} GMAC/s")
    else:
        rate = ASSUMED_MACS_PER_S[kind]
        note = f"assumed {rate / 1e9:,.0f} GMAC/s sustained on {kind} (a guess: no {kind} here to measure)"
    return Estimate(macs, params, total, total / rate, note)


def human_time(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
