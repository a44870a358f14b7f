"""How fast a run's training step goes on this machine: the step its trials take, timed after warm-up.

The step is the run's own: its model (``RunConfig.model_config``), batch, precision, channels-last layout and
``torch.compile`` setting, each batch through the recipe's on-device augmentation, the recipe's optimiser over the
trial's parameter groups (``HireMLPClassifier.build_optimizer``) and label-smoothed cross-entropy, on synthetic
images. Data loading and Lightning's loop are not in it (``benchmarks/overhead.py`` measures them: a few percent).
A sweep's up-front estimate (``sweeps/cost.py``) and ``benchmarks/bench.py --cpu-step`` both time this one step
(``training_step``); the benchmark's profile runs it too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import hiremlp

from .dataset_classes import IMAGENET_CLASSES, dataset_classes
from .run_config import RunConfig

__all__ = ["EVAL_BATCH_MIN", "StepTiming", "TrainingStep", "time_training_step", "training_step"]

EVAL_BATCH_MIN = 512  # the data modules evaluate at max(batch_size, 512)


@dataclass
class StepTiming:
    train_images_per_s: float  # over all timed steps (what a long run sustains)
    best_images_per_s: float  # of the fastest step (least disturbed by other processes)
    cpu_images_per_s: float  # of the step with the least process CPU time (threads x busy time)
    eval_images_per_s: float  # nan unless evaluation was timed
    warmup_extra_s: float  # what the first steps of a fresh model cost beyond steady-state steps
    steps: int
    warmup_steps: int
    batch: int
    eval_batch: int
    device: str
    precision: str
    threads: int
    macs_per_image: int


@dataclass
class TrainingStep:
    """One run's training step, ready to call: ``step()`` trains on the next augmented synthetic batch."""

    step: Callable[[], None]
    model: torch.nn.Module
    precision: str


def training_step(cfg: RunConfig, device: str = "cpu") -> TrainingStep:
    """``cfg``'s training step on ``device`` (see the module docstring), under ``torch.compile`` when the run
    compiles (``cfg.compile``), as its trials do."""
    from .classifier import HireMLPClassifier
    from .gpu_loader import DeviceAugment
    from .runner import classifier_hparams

    precision = ("bf16-mixed" if torch.device(device).type == "cuda" else "32") if cfg.precision == "auto" \
        else cfg.precision
    amp = torch.bfloat16 if precision == "bf16-mixed" else None
    classes = dataset_classes(cfg.dataset, cfg.data_dir, cfg.classes, check=False) or IMAGENET_CLASSES
    torch.manual_seed(cfg.seed)
    module = HireMLPClassifier(**classifier_hparams(cfg, cfg.model_config(classes), channels_last=True))
    model = module.model.to(device).train()
    forward = torch.compile(model) if cfg.compile else model
    opt = module.build_optimizer()
    recipe, size, batch = cfg.recipe, cfg.train_image_size, cfg.recipe.batch_size
    augment = DeviceAugment(recipe, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), torch.device(device), channels_last=True)
    raw = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=device)
    y = torch.randint(0, classes, (batch,), device=device)
    gen, host_rng = torch.Generator(device=device), np.random.default_rng(0)
    gen.manual_seed(0)

    def step() -> None:
        x = augment.mix(augment.finish(raw, gen), y, host_rng)[0]
        with torch.autocast(torch.device(device).type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = F.cross_entropy(forward(x), y, label_smoothing=recipe.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return TrainingStep(step, model, precision)


def time_training_step(cfg: RunConfig, device: str = "cpu", *, warmup_steps: int = 2, budget_s: float = 1.5,
                       min_steps: int = 2, max_steps: int = 50, eval_budget_s: float = 0.0,
                       keep_memory: bool = True) -> StepTiming:
    """Time ``cfg``'s training step on ``device``: ``warmup_steps``, then steps until ``budget_s`` has passed (at
    least ``min_steps``, at most ``max_steps``); evaluation too when ``eval_budget_s`` > 0. ``keep_memory``: the
    allocator setting a CPU run applies (``host_memory``), else its page faults are timed as well."""
    from .host_memory import keep_freed_memory

    cuda = torch.device(device).type == "cuda"
    if not cuda and keep_memory:
        keep_freed_memory()
    run = training_step(cfg, device)
    model, train_step, precision = run.model, run.step, run.precision
    amp = torch.bfloat16 if precision == "bf16-mixed" else None
    size, batch = cfg.train_image_size, cfg.recipe.batch_size

    def now() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    t0 = now()
    for _ in range(warmup_steps):
        train_step()
    t1 = now()
    walls, cpus = [], []
    while len(walls) < min_steps or (now() - t1 < budget_s and len(walls) < max_steps):
        wall, cpu = now(), time.process_time()
        train_step()
        walls.append(now() - wall)
        cpus.append(time.process_time() - cpu)
    train_ips = len(walls) * batch / sum(walls)
    warmup_extra = max(0.0, (t1 - t0) - warmup_steps * batch / train_ips)

    eval_batch, eval_ips = max(batch, EVAL_BATCH_MIN), float("nan")
    if eval_budget_s > 0:
        model.eval()
        xe = torch.randn(eval_batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
        with torch.no_grad(), torch.autocast(torch.device(device).type, dtype=amp or torch.float32,
                                             enabled=amp is not None):
            model(xe)  # warm-up
            t3, n = now(), 0
            while n < 2 or (time.perf_counter() - t3 < eval_budget_s and n < 20):
                model(xe)
                n += 1
            eval_ips = n * eval_batch / (now() - t3)
    return StepTiming(train_ips, batch / min(walls), batch / max(min(cpus), 1e-9), eval_ips, warmup_extra,
                      len(walls), warmup_steps, batch, eval_batch, device, precision, torch.get_num_threads(),
                      hiremlp.count_macs(model, size))
