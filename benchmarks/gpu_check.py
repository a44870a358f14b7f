"""GPU self-check: everything the GPU path promises, checked on one GPU in one command (about 8 minutes).

    python -m benchmarks.gpu_check --data-dir DIR            # on a GPU; writes OUT/gpu_check.json and .md
    python -m benchmarks.gpu_check --dry-run                 # the stages it would run, and how
    python -m benchmarks.gpu_check --device cpu --stages layout,repeatability,fast_vs_reference

Stages (``--stages`` picks some, in this order):

- ``sync``: a ``cifar10``-protocol training run (paper recipe on the device, bf16-mixed, channels-last) with
  ``torch.cuda.set_sync_debug_mode("error")`` from the end of its first batch to the start of its last, so any host
  sync in loading, augmentation, forward, backward, optimizer, scheduler or a callback fails it; and the paper
  augmentation alone.
- ``layout``: every padding x cross-region branch keeps a channels-last map channels-last, forward and backward.
- ``repeatability``: per padding mode, the gradients of two identical steps are compared bit for bit, and the step
  runs under ``torch.use_deterministic_algorithms(True)``.
- ``fast_vs_reference``: the fast and the reference implementation on the device, fp32 and bf16 autocast.
- ``cuda_tests``: the test suite's CUDA-only tests.
- ``sweep``: ``sweeps/run.py`` on two rows of the padding study, 2 epochs on a subset, then two more cells with
  ``--workers 2`` on the one GPU.
- ``resume``: a run SIGKILLed after epoch 2 and resumed, against an uninterrupted run and a second uninterrupted
  run (the GPU's run-to-run noise).
- ``throughput``: train steps of ``cifar_small`` at 32 px, bf16: channels-last vs NCHW, and channels-last compiled;
  images/s and the fraction of a large bf16 matmul's rate (and of the GPU's nominal dense bf16 peak when known).
- ``epoch_time``: seconds per epoch of the ``cifar10`` protocol, from the sweep stage's trials. Those trials'
  ``results.csv`` lie under ``--runs-dir``, where ``sweeps/run.py --dry-run --runs-dir`` takes its time from them
  (source ``recorded``); the stage runs that dry run and reports its time line.

Without a GPU (``--device cpu``) the stages that need one are reported as skipped and the rest run on the CPU at a
small size (the test suite runs them so). It needs no network: CIFAR-10 comes from ``--data-dir`` (a compact copy
works, ``../shared/tools/README.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, needed before CUDA starts

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

#: the suite's tests that only run with a CUDA device
CUDA_TESTS = ("tests/test_recipe.py::test_paper_augmentation_on_a_gpu_never_syncs_with_the_host",
              "tests/test_gpu_path.py::test_roll_and_pads_on_cuda_match_torch_keep_the_layout_and_repeat")
PADDINGS = ("zero", "reflect", "replicate", "circular")
CROSS = ("shift", "shuffle", "none")
#: nominal dense bf16 tensor-core peaks (FLOP/s, no sparsity), from the vendors' data sheets
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


@dataclass
class Check:
    """What the stages share: where to run, at which size, where to write."""

    device: str
    out: Path
    runs_dir: Path
    data_dir: Path | None
    protocol: str = "cifar10"
    preset: str = "cifar_small"
    train_subset: int = 10_240
    eval_subset: int = 2_000
    val_size: int = 2_000
    batch: int = 256
    log: Callable[[str], None] = print
    summary: dict = field(default_factory=dict)

    @property
    def cuda(self) -> bool:
        return self.device == "cuda"

    @classmethod
    def sized(cls, device: str, **kw) -> Check:
        """The GPU sizes, or on a CPU the smallest that still exercises every path."""
        if device == "cpu":
            kw = dict(protocol="smoke", preset="smoke", train_subset=256, eval_subset=128, val_size=128, batch=64,
                      **kw)
        return cls(device=device, **kw)


@dataclass(frozen=True)
class Stage:
    name: str
    what: str
    needs_cuda: bool
    needs_data: bool
    run: Callable[[Check], dict]


# ----------------------------------------------------------------------------------------------- probes

def _run_config(ck: Check, run_dir: Path, epochs: int, **kw):
    from lightning_modules import RunConfig
    from sweeps.protocols import get_protocol

    p = get_protocol(ck.protocol)
    recipe = p.recipe.replace(epochs=epochs, cooldown_epochs=0, warmup_epochs=min(p.recipe.warmup_epochs, 0.5))
    return RunConfig(preset=ck.preset, recipe=recipe, train_subset=ck.train_subset, eval_subset=ck.eval_subset,
                     val_size=ck.val_size, device=ck.device, data_dir=str(ck.data_dir), run_dir=str(run_dir),
                     progress="off", **kw)


def stage_sync(ck: Check) -> dict:
    import pytorch_lightning as pl

    from lightning_modules import run
    from lightning_modules.gpu_loader import GpuBatches
    from lightning_modules.recipe import PAPER

    class SyncWindow(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            last = batch_idx + 2 >= trainer.num_training_batches  # the last batch's divergence check may sync
            torch.cuda.set_sync_debug_mode("default" if last else "error")

    found = {}
    try:
        run(_run_config(ck, ck.out / "sync_run", epochs=1), callbacks=[SyncWindow()])
        found["training_step"] = "no host sync"
    except RuntimeError as e:
        found["training_step"] = f"sync: {_first_line(e)}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    x = torch.randint(0, 256, (4 * ck.batch, 3, 32, 32), dtype=torch.uint8, device="cuda")
    y = torch.randint(0, 10, (4 * ck.batch,), device="cuda")
    loader = GpuBatches(x, y, ck.batch, train=True, mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), seed=0,
                        recipe=PAPER, channels_last=True)
    next(iter(loader))
    torch.cuda.set_sync_debug_mode("error")
    try:
        list(loader)
        found["paper_augmentation"] = "no host sync"
    except RuntimeError as e:
        found["paper_augmentation"] = f"sync: {_first_line(e)}"
    finally:
        torch.cuda.set_sync_debug_mode("default")
    return {"ok": all(v == "no host sync" for v in found.values()), **found}


def stage_layout(ck: Check) -> dict:
    from hiremlp import HireModule
    from hiremlp.inner_region import InnerRegionMLP

    bad = []
    real = InnerRegionMLP.forward_channels_last
    grads: list[bool] = []

    def spy(self, x):
        out = real(self, x)
        out.register_hook(lambda g: grads.append(g.is_contiguous(memory_format=torch.channels_last)))
        return out

    InnerRegionMLP.forward_channels_last = spy
    try:
        for padding in PADDINGS:
            for cross in CROSS:
                grads.clear()
                torch.manual_seed(0)
                m = HireModule(32, region_size=(3, 2), shift=(2, 1), padding=padding, cross_region=cross)
                m = m.to(ck.device).train()
                x = torch.randn(4, 32, 7, 9, device=ck.device).contiguous(memory_format=torch.channels_last)
                x.requires_grad_()
                out = m(x)
                out.backward(torch.randn_like(out))
                cl = torch.channels_last
                if not (out.is_contiguous(memory_format=cl) and x.grad.is_contiguous(memory_format=cl)
                        and grads == [True, True]):
                    bad.append(f"{padding}/{cross}")
    finally:
        InnerRegionMLP.forward_channels_last = real
    return {"ok": not bad, "branches": len(PADDINGS) * len(CROSS), "lost_channels_last": bad}


def _grads(model, x, y, bf16: bool) -> list[torch.Tensor]:
    torch.manual_seed(1)  # the same drop-path draws
    model.zero_grad(set_to_none=True)
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return [p.grad.detach().clone() for p in model.parameters()]


def stage_repeatability(ck: Check) -> dict:
    import hiremlp

    modes = {}
    for padding in PADDINGS:
        torch.manual_seed(0)
        model = hiremlp.create_model(ck.preset, num_classes=10, padding=padding).to(ck.device)
        model = model.to(memory_format=torch.channels_last).train()
        x = torch.randn(ck.batch // 4, 3, 32, 32, device=ck.device).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (len(x),), device=ck.device)
        a, b = _grads(model, x, y, ck.cuda), _grads(model, x, y, ck.cuda)
        differing = sum(not torch.equal(p, q) for p, q in zip(a, b, strict=True))
        torch.use_deterministic_algorithms(True)
        try:
            _grads(model, x, y, ck.cuda)
            deterministic = "ok"
        except RuntimeError as e:
            deterministic = _first_line(e)
        finally:
            torch.use_deterministic_algorithms(False)
        modes[padding] = {"tensors_differing": differing, "of": len(a), "deterministic_algorithms": deterministic}
    ok = all(m["tensors_differing"] == 0 and m["deterministic_algorithms"] == "ok" for m in modes.values())
    return {"ok": ok, **modes}


def stage_fast_vs_reference(ck: Check) -> dict:
    import hiremlp

    found = {}
    torch.manual_seed(0)
    fast = hiremlp.create_model(ck.preset, num_classes=10).to(ck.device).to(memory_format=torch.channels_last)
    ref = hiremlp.create_model(ck.preset, num_classes=10, impl="reference").to(ck.device)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(16, 3, 32, 32, device=ck.device)
    y = torch.randint(0, 10, (16,), device=ck.device)
    limits = {"fp32": 1e-2, "bf16": 0.15}  # of the largest reference value: TF32 and bf16 rounding, not a bug
    for dtype, bf16 in (("fp32", False), ("bf16", True)):
        ga = _grads(fast, x.contiguous(memory_format=torch.channels_last), y, bf16)
        gb = _grads(ref, x, y, bf16)
        with torch.no_grad(), torch.autocast(ck.device, dtype=torch.bfloat16, enabled=bf16):
            la = fast.eval()(x.contiguous(memory_format=torch.channels_last)).float()
            lb = ref.eval()(x).float()
        fast.train()
        ref.train()
        logits = ((la - lb).abs().max() / lb.abs().max()).item()
        # over all parameters at once: a bias followed by BatchNorm has a gradient of rounding noise only
        grad = (max((p - q).abs().max().item() for p, q in zip(ga, gb, strict=True))
                / max(q.abs().max().item() for q in gb))
        found[dtype] = {"logits_rel_diff": logits, "grad_rel_diff": grad, "limit": limits[dtype]}
    return {"ok": all(v["logits_rel_diff"] < v["limit"] and v["grad_rel_diff"] < v["limit"] for v in found.values()),
            **found}


def stage_cuda_tests(ck: Check) -> dict:
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", *CUDA_TESTS], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    tail = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else out.stderr.strip()[-200:]
    return {"ok": out.returncode == 0 and "skipped" not in tail, "tests": list(CUDA_TESTS), "result": tail}


# ----------------------------------------------------------------------------------------------- runs

def sweep_command(ck: Check, seeds: int, workers: int) -> list[str]:
    """The sweep stage's command. The protocol's own device (``auto`` for ``cifar10``), so that a later dry run of
    the protocol counts these trials as recorded ones."""
    return [sys.executable, str(ROOT / "sweeps" / "run.py"), "--study", "padding", "--protocol", ck.protocol,
            "--rows", "zero,reflect", "--seeds", str(seeds), "--epochs", "2", "--warmup-epochs", "0.5",
            "--cooldown-epochs", "0", "--train-subset", str(ck.train_subset), "--eval-subset", str(ck.eval_subset),
            "--val-size", str(ck.val_size), "--data-dir", str(ck.data_dir or "DIR"),
            "--runs-dir", str(ck.runs_dir), "--checkpoint-every-s", "0", *(["--workers", str(workers)]
                                                                         if workers > 1 else [])]


def stage_sweep(ck: Check) -> dict:
    found = {}
    for key, seeds, workers in (("one_worker", 1, 1), ("two_workers", 2, 2)):
        t0 = time.perf_counter()
        out = subprocess.run(sweep_command(ck, seeds, workers), cwd=ROOT, capture_output=True, text=True,
                             timeout=400)
        found[key] = {"exit": out.returncode, "wall_s": round(time.perf_counter() - t0, 1),
                      "last_line": (out.stdout.strip().splitlines() or [""])[-1][-200:]}
        if out.returncode:
            found[key]["stderr"] = out.stderr.strip()[-400:]
    return {"ok": all(v["exit"] == 0 for v in found.values()), **found}


def _metrics(run_dir: Path) -> list[dict]:
    import csv

    path = run_dir / "metrics.csv"
    return list(csv.DictReader(open(path))) if path.is_file() else []


def _run_file(cfg, path: Path) -> subprocess.Popen:
    from lightning_modules.run_file import save_run_config

    path.parent.mkdir(parents=True, exist_ok=True)
    save_run_config(cfg, path)
    return subprocess.Popen([sys.executable, "-m", "lightning_modules.run_file", str(path)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _numbers(run_dir: Path) -> dict[str, list[float]]:
    rows = _metrics(run_dir)
    result = json.loads((run_dir / "result.json").read_text())
    return {"train_loss": [float(r["train_loss"]) for r in rows], "val_acc": [float(r["val_acc"]) for r in rows],
            "test_acc": [float(result["test_acc"])]}


def _largest_diff(a: dict, b: dict) -> float:
    return max(abs(x - y) for k in a for x, y in zip(a[k], b[k], strict=True))


def stage_resume(ck: Check) -> dict:
    from lightning_modules.checkpoints import last_checkpoint

    base = ck.out / "resume"
    dirs = {k: base / k for k in ("uninterrupted", "again", "killed")}
    for k in ("uninterrupted", "again"):
        proc = _run_file(_run_config(ck, dirs[k], epochs=4, checkpoint_every_s=0), dirs[k] / "run.json")
        if proc.wait(timeout=400):
            return {"ok": False, k: proc.stderr.read()[-400:]}
    cfg = _run_config(ck, dirs["killed"], epochs=4, checkpoint_every_s=0)
    proc = _run_file(cfg, dirs["killed"] / "run.json")
    deadline = time.time() + 300
    while len(_metrics(dirs["killed"])) < 2 or not last_checkpoint(dirs["killed"]).is_file():
        if proc.poll() is not None or time.time() > deadline:
            return {"ok": False, "killed": "the run ended or stalled before epoch 2"}
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epochs_at_kill = len(_metrics(dirs["killed"]))
    proc = _run_file(cfg, dirs["killed"] / "run.json")
    if proc.wait(timeout=400):
        return {"ok": False, "resumed": proc.stderr.read()[-400:]}
    a, noise, resumed = (_numbers(dirs[k]) for k in ("uninterrupted", "again", "killed"))
    resumed_from = json.loads((dirs["killed"] / "result.json").read_text())["resumed_from_epoch"]
    found = {"killed_after_epochs": epochs_at_kill, "resumed_from_epoch": resumed_from,
             "resume_vs_uninterrupted": _largest_diff(resumed, a), "run_to_run": _largest_diff(noise, a)}
    # the kill lands after epoch 2's row; its checkpoint may still be in writing, then epoch 1's is the last
    found["ok"] = 1 <= resumed_from < 4 and found["resume_vs_uninterrupted"] <= found["run_to_run"]
    return found


def stage_throughput(ck: Check) -> dict:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench import measure

    size, batch = 32, ck.batch * 2
    rows = {}
    # compile on channels-last only: each compile of cifar_small takes minutes of the 8
    for layout, compile in (("channels_last", False), ("nchw", False), ("channels_last", True)):
        if compile and not ck.cuda:
            continue  # minutes of compiling on a CPU for a number nobody needs there
        r = measure("cifar_small" if ck.cuda else ck.preset, "fast", ck.device, size, batch, steps=10,
                    channels_last=layout == "channels_last", bf16=ck.cuda, compile=compile)
        rows[f"{layout}{' + compile' if compile else ''}"] = r
    yard = _bf16_matmul_flops(ck.device)
    peak = next((v for k, v in BF16_PEAK.items() if ck.cuda and k in torch.cuda.get_device_name()), None)
    found = {name: {"images_per_s": round(r["train_img_s"]), "of_bf16_matmul": round(r["train_flops"] / yard, 4),
                    **({"of_nominal_bf16_peak": round(r["train_flops"] / peak, 4)} if peak else {}),
                    "first_step_s": round(r["first_step_s"], 1)} for name, r in rows.items()}
    return {"ok": True, "batch": batch, "bf16_matmul_tflops": round(yard / 1e12, 1),
            "nominal_bf16_peak_tflops": peak and peak / 1e12, **found}


def _bf16_matmul_flops(device: str) -> float:
    from bench import best_time

    n = 8192 if device == "cuda" else 1024
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    return 2 * n**3 / best_time(lambda: a @ b, device, 10)


def stage_epoch_time(ck: Check) -> dict:
    import pandas as pd

    from sweeps.cost import image_counts
    from sweeps.protocols import get_protocol

    epoch_s = []
    for path in Path(ck.runs_dir).glob("padding-*/trials/*/metrics.csv"):
        rows = pd.read_csv(path)
        epoch_s += list(rows["epoch_s"].iloc[1:] if len(rows) > 1 else rows["epoch_s"])
    if not epoch_s:
        return {"ok": False, "note": "no sweep trials under --runs-dir: run the sweep stage first"}
    n_full = image_counts(get_protocol(ck.protocol))[0]
    per_epoch = sum(epoch_s) / len(epoch_s) * n_full / ck.train_subset
    dry = subprocess.run([sys.executable, str(ROOT / "sweeps" / "run.py"), "--study", "padding", "--protocol",
                          ck.protocol, "--runs-dir", str(ck.runs_dir), "--dry-run"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    time_line = next((ln for ln in dry.stdout.splitlines() if "time:" in ln), dry.stderr.strip()[-200:])
    return {"ok": dry.returncode == 0 and "recorded" in dry.stdout, "protocol": ck.protocol,
            "epoch_s_at_full_split": round(per_epoch, 2), "from_epochs": len(epoch_s),
            "dry_run_time": time_line.strip()}


STAGES = (
    Stage("sync", "no host sync in a training step (set_sync_debug_mode) nor in the paper augmentation", True, True,
          stage_sync),
    Stage("layout", "channels-last through every padding x cross-region branch, forward and backward", False, False,
          stage_layout),
    Stage("repeatability", "bitwise-equal gradients per padding mode; deterministic algorithms accepted", False,
          False, stage_repeatability),
    Stage("fast_vs_reference", "fast vs reference implementation on the device, fp32 and bf16", False, False,
          stage_fast_vs_reference),
    Stage("cuda_tests", f"the CUDA-only tests ({len(CUDA_TESTS)})", True, False, stage_cuda_tests),
    Stage("sweep", "sweeps/run.py: 2 rows x 1 seed x 2 epochs on a subset, then 2 more cells with --workers 2",
          False, True, stage_sweep),
    Stage("resume", "SIGKILL after epoch 2 and resume vs an uninterrupted run and run-to-run noise", False, True,
          stage_resume),
    Stage("throughput", "cifar_small train steps at 32 px, bf16: channels-last vs NCHW, compiled channels-last", True,
          False, stage_throughput),
    Stage("epoch_time", "seconds per epoch of the protocol from the sweep's trials; the dry run's time from them",
          False, True, stage_epoch_time),
)


# ----------------------------------------------------------------------------------------------- the command

def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else ''}"[:300]


def plan(stages: list[Stage], ck: Check) -> list[str]:
    """What each stage would do here (the dry run's lines)."""
    lines = []
    for s in stages:
        skip = " [skipped: needs CUDA]" if s.needs_cuda and not ck.cuda else ""
        lines.append(f"{s.name:18s} {s.what}{skip}")
        if s.name == "sweep" and not skip:
            lines.append(f"{'':18s} $ {' '.join(sweep_command(ck, 1, 1)[1:])}")
            lines.append(f"{'':18s} $ ... --seeds 2 --workers 2")
    return lines


def table(summary: dict) -> str:
    lines = ["| stage | result | figures |", "|---|---|---|"]
    for name, r in summary["stages"].items():
        verdict = "skipped" if r.get("ok") is None else "pass" if r["ok"] else "FAIL"
        figures = "; ".join(f"{k}: {json.dumps(v) if isinstance(v, dict | list) else v}" for k, v in r.items()
                            if k != "ok")
        lines.append(f"| {name} | {verdict} | {figures} |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, help="folder with cifar-10-python.tar.gz (default: $HIREMLP_DATA)")
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu_check", help="where the summary is written")
    p.add_argument("--runs-dir", type=Path, default=None,
                   help="the sweep stage's runs folder (default: OUT/runs); give your runs/ so --dry-run uses it")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--stages", default=",".join(s.name for s in STAGES))
    p.add_argument("--dry-run", action="store_true", help="print the stages and exit")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = [n for n in args.stages.split(",") if n]
    known = {s.name: s for s in STAGES}
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        print(f"error: --stages {args.stages!r}: {', '.join(unknown) or 'no stage'} is not a stage; allowed: "
              f"{', '.join(known)}", file=sys.stderr)
        return 2
    stages = [s for s in STAGES if s.name in names]
    data_dir = args.data_dir or (Path(os.environ["HIREMLP_DATA"]) if os.environ.get("HIREMLP_DATA") else None)
    ck = Check.sized(args.device, out=args.out, runs_dir=args.runs_dir or args.out / "runs", data_dir=data_dir)
    if args.dry_run:
        print(f"gpu_check on {args.device}: {len(stages)} stage(s), summary to {args.out}/gpu_check.json and .md")
        print("\n".join(plan(stages, ck)))
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device here; --device cpu runs the stages a CPU can check",
              file=sys.stderr)
        return 2
    if any(s.needs_data for s in stages) and not (data_dir and (data_dir / "cifar-10-python.tar.gz").is_file()):
        print(f"error: --data-dir {data_dir}: no cifar-10-python.tar.gz there (stages "
              f"{', '.join(s.name for s in stages if s.needs_data)} train on CIFAR-10)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if ck.cuda:
        from lightning_modules.cuda_settings import use_training_math

        use_training_math()
    device_name = torch.cuda.get_device_name() if ck.cuda else f"CPU ({os.cpu_count()} cores)"
    summary = {"device": device_name, "torch": torch.__version__, "stages": {}}
    t_all = time.perf_counter()
    for s in stages:
        if s.needs_cuda and not ck.cuda:
            summary["stages"][s.name] = {"ok": None, "note": "needs CUDA"}
            continue
        t0 = time.perf_counter()
        try:
            result = s.run(ck)
        except Exception as e:  # noqa: BLE001 - one failing stage is reported; the others still run
            result = {"ok": False, "error": _first_line(e), "where": traceback.format_exc().splitlines()[-3:]}
        result["seconds"] = round(time.perf_counter() - t0, 1)
        summary["stages"][s.name] = result
        print(f"{s.name}: {'pass' if result['ok'] else 'FAIL'} ({result['seconds']} s)", flush=True)
    summary["seconds"] = round(time.perf_counter() - t_all, 1)
    (args.out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    text = (f"# GPU self-check on {device_name} (torch {torch.__version__}, {summary['seconds']} s)\n\n"
            f"{table(summary)}\n")
    (args.out / "gpu_check.md").write_text(text)
    print(text)
    return 0 if all(r["ok"] is not False for r in summary["stages"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
