"""Overhead table: what Lightning and the sweep machinery cost on top of the model's own arithmetic.

    python benchmarks/overhead.py                                   # smoke + cifar_tiny, then a 4-trial smoke sweep
    python benchmarks/overhead.py --presets smoke --repeats 5 --threads 1 --no-sweep

1. Training loop. ``lightning_modules.runner.run`` (the real ``HireMLPClassifier``, ``CIFAR10DataModule`` and the
   ``pl.Trainer`` it configures; validation off, so an epoch is training only) trains ``repeats + 1`` epochs of
   ``--train-subset`` real CIFAR-10 images. A callback runs, at the start of every Lightning epoch, one epoch of
   the bare loop: a copy of the same initial model, the same batches materialised beforehand as tensors, the
   same loss, AdamW param groups and per-step LR schedule, and nothing else. The two therefore alternate in one
   process with one thread setting (noise on a shared box hits both alike); epoch 0 of each is warm-up and is
   dropped (for the bare loop, which has no per-run setup, it is two steps), and each side's fastest remaining
   epoch is reported. The Lightning epoch is the time between two consecutive epoch starts with the bare epoch
   cut out, so it includes everything Lightning and our module do per epoch: hooks, the device-resident
   augmentation (reported separately as ``aug``), per-step bookkeeping.
2. Sweep. A real ``python sweeps/run.py --protocol smoke`` subprocess on a fresh run folder, whose trainer is
   ``lightning`` wrapped to record wall-clock timestamps (entering the trainer, Lightning ``setup``, first
   training step, end of test, leaving the trainer). With Optuna's ``datetime_start`` / ``datetime_complete``
   they split the time from the end of one trial's test to the next trial's first training step into its parts;
   that gap is compared with the trial's own compute span (first training step to end of test). Process start
   and the end-of-sweep report are once per sweep and are shown apart, not folded into the per-trial figure.

``--threads`` sets torch's CPU threads here and ``OMP_NUM_THREADS`` for the sweep child. On a small shared box
``--threads 1`` is the robust choice: with as many OpenMP threads as cores, another busy process can make a step
tens of times slower, which swamps what is being measured.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

STAMP_ENV = "HIREMLP_OVERHEAD_STAMPS"  # the sweep child appends one JSON line of timestamps per trial here
LOOP_TARGET, SWEEP_TARGET = 10.0, 5.0  # percent


# ------------------------------------------------------------------------------------------ 1. training loop

class _Interleaved(pl.Callback):
    """Runs one bare epoch at the start of each Lightning epoch and times both (the bare one cut out)."""

    def __init__(self) -> None:
        self.lightning_s: list[float] = []
        self.bare_s: list[float] = []
        self.aug_s: list[float] = []
        self._t0: float | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        r = pl_module.recipe
        self.model = copy.deepcopy(pl_module.model).train()  # the same initial weights
        # the optimizer the module builds (same decay groups, fused kernel), over the copy's parameters
        own = dict(zip(map(id, pl_module.model.parameters()), self.model.parameters(), strict=True))
        groups = [{**g, "params": [own[id(p)] for p in g["params"]]} for g in pl_module.param_groups()]
        self.opt = torch.optim.AdamW(groups, lr=r.peak_lr, betas=(0.9, 0.999), eps=1e-8, fused=True)
        per_epoch = max(int(trainer.estimated_stepping_batches), 1) / max(trainer.max_epochs or 1, 1)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda step: r.lr_at(step / per_epoch) / r.peak_lr)
        self.smoothing = r.label_smoothing
        # the very batches Lightning's loader yields (same seed, epoch by epoch), made once, outside any timing
        loader = trainer.datamodule.batches("train", train=True)
        self.epochs = [list(loader) for _ in range(trainer.max_epochs)]
        t = time.perf_counter()
        for _ in loader:  # what producing one epoch of augmented batches costs (inside the Lightning time)
            pass
        self.aug_s.append(time.perf_counter() - t)

    def _bare_epoch(self, batches: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> float:
        t = time.perf_counter()
        with torch.enable_grad():
            for x, y in batches:
                loss = F.cross_entropy(self.model(x), y, label_smoothing=self.smoothing)
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                self.opt.step()
                self.sched.step()
        return time.perf_counter() - t

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        now = time.perf_counter()
        if self._t0 is not None:
            self.lightning_s.append(now - self._t0)
        batches = self.epochs[trainer.current_epoch]
        # the bare loop has no per-run setup: two steps warm it up (kernels, allocator), saving a whole epoch
        self.bare_s.append(self._bare_epoch(batches if trainer.current_epoch else batches[:2]))
        self._t0 = time.perf_counter()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.lightning_s.append(time.perf_counter() - self._t0)


def measure_loop(preset: str, data_dir: str, train_subset: int, batch_size: int, repeats: int) -> dict[str, Any]:
    """Seconds per training epoch of ``lightning_modules.runner.run`` and of the bare loop (min over ``repeats``)."""
    from lightning_modules import Recipe, RunConfig, run

    probe = _Interleaved()
    with tempfile.TemporaryDirectory(prefix="overhead-") as tmp:
        cfg = RunConfig(preset=preset, data_dir=data_dir,
                        recipe=Recipe(epochs=repeats + 1, batch_size=batch_size, label_smoothing=0.1),
                        train_subset=train_subset, val_size=0, eval_subset=batch_size, device="cpu",
                        run_dir=tmp)
        run(cfg, callbacks=[probe])
    lit, bare = probe.lightning_s[1:], probe.bare_s[1:]  # epoch 0 is warm-up
    steps = train_subset // batch_size
    return {"preset": preset, "steps": steps, "lightning_s": min(lit), "bare_s": min(bare),
            "aug_s": probe.aug_s[0], "overhead_pct": 100 * (min(lit) / min(bare) - 1),
            "lightning_all": lit, "bare_all": bare}


# ------------------------------------------------------------------------------------------ 2. sweep

_GC = {"s": 0.0, "t": 0.0}  # seconds the sweep child has spent in Python's cyclic garbage collector so far


def _gc_timer(phase: str, info: dict) -> None:
    if phase == "start":
        _GC["t"] = time.perf_counter()
    else:
        _GC["s"] += time.perf_counter() - _GC["t"]


class _Stamps(pl.Callback):
    """Wall-clock timestamps of one trial's phases (time.time(), comparable with Optuna's datetimes)."""

    def __init__(self, stamps: dict[str, float]) -> None:
        self.stamps = stamps

    def _mark(self, key: str) -> None:
        if key not in self.stamps:
            self.stamps[key], self.stamps[f"gc@{key}"] = time.time(), _GC["s"]

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._mark("setup")  # the first one is fit's (test's comes later)

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._mark("first_step")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._mark("test_end")


def timed_trainer(job: Any, callbacks: Sequence[Any] = ()) -> dict:
    """``sweeps.trainers.lightning_trainer`` plus timestamps (``--trainer benchmarks.overhead:timed_trainer``)."""
    from sweeps.trainers import lightning_trainer

    if _gc_timer not in gc.callbacks:
        gc.callbacks.append(_gc_timer)
    stamps: dict[str, Any] = {"row": job.row, "seed": job.seed, "enter": time.time(), "gc@enter": _GC["s"]}
    try:
        return lightning_trainer(job, [_Stamps(stamps), *callbacks])
    finally:
        stamps["exit"], stamps["gc@exit"] = time.time(), _GC["s"]
        with open(os.environ[STAMP_ENV], "a") as fh:
            fh.write(json.dumps(stamps) + "\n")


def measure_sweep(data_dir: str, study: str, trials: int, threads: int) -> dict[str, Any]:
    """Run a real smoke sweep of ``trials`` rows of ``study`` and split its wall time into trials and gaps."""
    import optuna

    from ablations import get_study
    from sweeps.storage import open_storage

    rows = get_study(study).labels[:trials]
    with tempfile.TemporaryDirectory(prefix="overhead-sweep-") as tmp:
        stamp_file = Path(tmp) / "stamps.jsonl"
        env = {**os.environ, STAMP_ENV: str(stamp_file), "OMP_NUM_THREADS": str(threads),
               "PYTHONWARNINGS": "ignore"}
        cmd = [sys.executable, str(ROOT / "sweeps" / "run.py"), "--study", study, "--protocol", "smoke",
               "--rows", ",".join(rows), "--seeds", "1", "--runs-dir", str(Path(tmp) / "runs"),
               "--data-dir", data_dir, "--trainer", "benchmarks.overhead:timed_trainer"]
        launch = time.time()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        done = time.time()
        if proc.returncode != 0:
            raise SystemExit(f"sweep failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
        stamps = {(s["row"], s["seed"]): s for s in map(json.loads, stamp_file.read_text().splitlines())}
        folder = next((Path(tmp) / "runs").glob(f"{study}-smoke*"))
        storage = open_storage(None, folder)
        ostudy = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
        for t in ostudy.get_trials(deepcopy=False):
            s = stamps[(t.user_attrs["row"], t.user_attrs["seed"])]
            s["claimed"], s["told"] = t.datetime_start.timestamp(), t.datetime_complete.timestamp()
    seq = sorted(stamps.values(), key=lambda s: s["first_step"])
    phases = {  # (label, from, to): from the end of trial i-1's test to trial i's first training step
        "result dict, count_macs, result.json (run's tail)": ("test_end", "exit", -1, -1),
        "Optuna: result attrs + tell": ("exit", "told", -1, -1),
        "trial.json, results.csv rewrite, claim next (lock, recovery scan)": ("told", "claimed", -1, 0),
        "claim to trainer: owner attrs, run folder, provenance attrs": ("claimed", "enter", 0, 0),
        "run(): config, data load from cache, model build, Trainer()": ("enter", "setup", 0, 0),
        "Lightning fit start: optimizer, loaders, hooks to first step": ("setup", "first_step", 0, 0),
    }
    per_phase = {name: statistics.mean(seq[i + b][k1] - seq[i + a][k0] for i in range(1, len(seq)))
                 for name, (k0, k1, a, b) in phases.items()}
    compute = [s["test_end"] - s["first_step"] for s in seq]
    gaps = [seq[i]["first_step"] - seq[i - 1]["test_end"] for i in range(1, len(seq))]
    # GC seen by the trainer wrapper: test end -> exit of trial i-1 plus entry -> first step of trial i
    gc_gap = [seq[i - 1]["gc@exit"] - seq[i - 1]["gc@test_end"] + seq[i]["gc@first_step"] - seq[i]["gc@enter"]
              for i in range(1, len(seq))]
    gc_compute = [s["gc@test_end"] - s["gc@first_step"] for s in seq]
    return {"trials": len(seq), "compute_s": statistics.mean(compute), "gap_s": statistics.mean(gaps),
            "gc_gap_s": statistics.mean(gc_gap), "gc_compute_s": statistics.mean(gc_compute),
            "phases": per_phase, "startup_s": seq[0]["first_step"] - launch,
            "first_trial_setup_s": seq[0]["first_step"] - seq[0]["enter"],
            "tail_s": done - seq[-1]["test_end"], "wall_s": done - launch}


# ------------------------------------------------------------------------------------------ report

def loop_table(rows: Sequence[dict[str, Any]], threads: int, train_subset: int, batch_size: int) -> str:
    """Markdown table of the training-loop measurements."""
    out = [f"Training loop, CPU, {threads} thread(s), {train_subset} CIFAR-10 images/epoch, batch {batch_size} "
           f"(min over epochs 1..N; all epochs in parentheses)", "",
           "| preset | steps/epoch | Lightning s/epoch | bare s/epoch | overhead | of which aug | target |",
           "|---|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        ok = "ok" if r["overhead_pct"] <= LOOP_TARGET else "ABOVE"
        lit = ", ".join(f"{v:.2f}" for v in r["lightning_all"])
        bare = ", ".join(f"{v:.2f}" for v in r["bare_all"])
        out.append(f"| {r['preset']} | {r['steps']} | {r['lightning_s']:.3f} ({lit}) | {r['bare_s']:.3f} ({bare}) "
                   f"| {r['overhead_pct']:+.1f}% | {100 * r['aug_s'] / r['bare_s']:.1f}% "
                   f"| <= {LOOP_TARGET:.0f}%: {ok} |")
    return "\n".join(out)


def sweep_table(r: dict[str, Any], study: str) -> str:
    """Markdown table of the sweep measurements (per-trial gap split into phases)."""
    c = r["compute_s"]
    ok = "ok" if 100 * r["gap_s"] / c < SWEEP_TARGET else "ABOVE"
    out = [f"Sweep overhead: `sweeps/run.py --study {study} --protocol smoke`, {r['trials']} trials in one process "
           f"(mean over the {r['trials'] - 1} trial-to-trial gaps)", "",
           "| between two trials | s | % of a smoke trial |", "|---|---:|---:|"]
    for name, s in r["phases"].items():
        out.append(f"| {name} | {s:.3f} | {100 * s / c:.1f}% |")
    out += [f"| **gap: end of test -> next first training step** | **{r['gap_s']:.3f}** | "
            f"**{100 * r['gap_s'] / c:.1f}%** (target < {SWEEP_TARGET:.0f}%: {ok}) |",
            f"| of which Python GC inside run() (part of the rows above) | {r['gc_gap_s']:.3f} | "
            f"{100 * r['gc_gap_s'] / c:.1f}% |",
            f"| smoke trial compute (first training step -> end of test) | {c:.3f} | 100% |",
            f"| of which Python GC | {r['gc_compute_s']:.3f} | {100 * r['gc_compute_s'] / c:.1f}% |",
            "", "| once per sweep | s |", "|---|---:|",
            f"| process start -> first trial's first step (imports, storage, enqueue, first data load) "
            f"| {r['startup_s']:.2f} |",
            f"| of which the first trial's own setup (trainer entry -> first step) | {r['first_trial_setup_s']:.2f} |",
            f"| last trial's end of test -> process exit (results.csv, report) | {r['tail_s']:.2f} |",
            f"| whole sweep wall time | {r['wall_s']:.2f} |"]
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--presets", default="smoke,cifar_tiny")
    p.add_argument("--train-subset", type=int, default=2048)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3, help="timed epochs after the warm-up epoch")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads (both sides)")
    p.add_argument("--data-dir", help="folder with cifar-10-python.tar.gz (default $HIREMLP_DATA, ../shared/data)")
    p.add_argument("--sweep-study", default="padding")
    p.add_argument("--sweep-trials", type=int, default=4)
    p.add_argument("--no-loop", action="store_true", help="skip the training-loop measurement")
    p.add_argument("--no-sweep", action="store_true", help="skip the sweep measurement")
    args = p.parse_args(argv)
    if args.repeats < 1 or args.train_subset < args.batch_size or args.sweep_trials < 2:
        p.error("need --repeats >= 1, --train-subset >= --batch-size and --sweep-trials >= 2")
    torch.set_num_threads(args.threads)
    from lightning_modules.cifar import DatasetError, find_data_dir

    try:
        data_dir = str(find_data_dir("cifar10", args.data_dir))
    except DatasetError as e:
        raise SystemExit(str(e)) from None
    warnings.filterwarnings("ignore", message=r".*md5.*is not the official.*")
    tables = []
    if not args.no_loop:
        rows = []
        for preset in [s.strip() for s in args.presets.split(",") if s.strip()]:
            t = time.perf_counter()
            rows.append(measure_loop(preset, data_dir, args.train_subset, args.batch_size, args.repeats))
            print(f"[{preset}: {time.perf_counter() - t:.0f}s]", file=sys.stderr, flush=True)
        tables.append(loop_table(rows, args.threads, args.train_subset, args.batch_size))
    if not args.no_sweep:
        t = time.perf_counter()
        tables.append(sweep_table(measure_sweep(data_dir, args.sweep_study, args.sweep_trials, args.threads),
                                  args.sweep_study))
        print(f"[sweep: {time.perf_counter() - t:.0f}s]", file=sys.stderr, flush=True)
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
