"""Speed table: presets x implementations x layouts x devices, train and inference images/s, memory, FLOP use.

    python benchmarks/bench.py                       # CPU (and GPU when present): smoke / cifar_tiny / tiny
    python benchmarks/bench.py --presets tiny --batch-size 128 --compile --cpu-bf16
    python benchmarks/bench.py --cpu-step --cpu-step-baseline 6c11f53 --rounds 5   # the cpu protocol's step
    python benchmarks/bench.py --cpu-step --cpu-step-baseline 6c11f53 --cpu-step-compare issue23-gelu --compile \
        --cpu-step-profile --rounds 5     # ... beside a candidate branch and inductor, and where its time goes
    python benchmarks/bench.py --presets smoke --mixers all    # token mixers side by side (mixers study)

``--cpu-step`` times only the ``cpu`` protocol's training step (``protocol_step``, through
``lightning_modules.step_timing``, the step the sweep's up-front estimate times too: its model, batch 128, the
recipe's augmentation, optimiser and parameter groups, channels-last) now, now without the CPU trial's allocator
setting, and with ``--cpu-step-baseline REF`` the model code as at git REF (without that setting, as it then ran),
all in the same interleaved rounds, with the fraction of a large fp32 matmul's FLOP/s. ``--cpu-step-compare REF``
adds the model code at REF with the allocator setting (a candidate held on a branch), ``--compile`` the step under
``torch.compile`` (what whole-graph fusion buys, one round: it compiles for minutes), ``--cpu-step-profile`` the
step's time by op class and the share its convolutions and matmuls alone take. The header names the CPU and
the ISA torch's kernels use; ``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2`` emulates
an AVX2-only machine on a newer one. A REF's model code must run under today's ``step_timing`` (6c11f53 does and
computes the cpu step bit for bit as ef6f0dd, whose model code predates ``hiremlp.row_config``); one that does not
gets a "failed" row.

Columns:
- train / infer img/s: the fastest of ``--steps`` steps (forward, backward, fused AdamW as training uses it),
  best over ``--rounds`` rounds that take every configuration in turn, so noise on a shared box hits all alike.
- GFLOP/s and "of matmul": the model's own arithmetic (2 x MACs forward, x3 for a train step) over the step time,
  and its ratio to a large fp32 matmul measured in the same run on the same device.
- "GEMMs alone": every convolution and matmul that one train step runs (forward and autograd's backward,
  captured at the aten level) replayed back to back on random tensors of the same shapes and strides, with
  nothing else. Its time over the step's time is the share of the step the arithmetic kernels take; the model's
  FLOPs over its time is the utilisation ceiling: what the step would reach if every other op were free.
- speed-up: train img/s over the reference implementation (the released code's clone, roll, pad, reshape,
  1x1 conv, reshape back, crop, roll back) in NCHW, the straightforward baseline. The two implementations must
  agree before either is timed.

Every configuration runs in its own process, so its peak memory is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if os.environ.get("BENCH_HIREMLP_FROM"):  # a --cpu-step-baseline child: that commit's model code, ours for the rest
    sys.path.insert(0, os.environ["BENCH_HIREMLP_FROM"])

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402

import hiremlp  # noqa: E402

DEFAULT_SIZES = {"smoke": 32, "cifar_tiny": 32, "tiny": 64}
ISA_CAPS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")  # how to emulate e.g. AVX2
GEMM_OPS = {torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default,
            torch.ops.aten.mm.default, torch.ops.aten.addmm.default, torch.ops.aten.bmm.default}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_flops(device: str, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of a large fp32 (TF32 off) square matmul: the yardstick for utilisation."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    return 2 * n**3 / best_time(lambda: a @ b, device, reps)


def best_time(fn: Callable[[], object], device: str, n: int, warmup: int = 2) -> float:
    """Fastest of ``n`` timed calls after ``warmup`` untimed ones: CUDA events on a GPU, the wall clock on CPU."""
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(n):
        if device == "cuda":
            start_event, end_event = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start_event.record()
            fn()
            end_event.record()
            end_event.synchronize()
            best = min(best, start_event.elapsed_time(end_event) / 1e3)
            continue
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class GemmRecorder(TorchDispatchMode):
    """Records every convolution / matmul call (op, argument shapes and strides) that passes the dispatcher."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in GEMM_OPS:
            spec = tuple(("T", tuple(a.shape), a.stride(), a.dtype) if isinstance(a, torch.Tensor) else a
                         for a in args)
            self.calls.append((func, spec))
        return func(*args, **(kwargs or {}))


def gemm_replay(calls: list[tuple], device: str) -> Callable[[], None]:
    """A function that runs the recorded calls on random tensors; tensors of one shape and stride are shared."""
    pool: dict[tuple, torch.Tensor] = {}

    def tensor(shape: tuple, stride: tuple, dtype: torch.dtype) -> torch.Tensor:
        key = (shape, stride, dtype)
        if key not in pool:
            pool[key] = torch.empty_strided(shape, stride, dtype=dtype, device=device).normal_()
        return pool[key]

    prepared = [(func, [tensor(*a[1:]) if isinstance(a, tuple) and a[:1] == ("T",) else a for a in spec])
                for func, spec in calls]

    def run() -> None:
        with torch.no_grad():
            for func, args in prepared:
                func(*args)

    return run


def measure(preset: str, impl: str, device: str, size: int, batch: int, steps: int, channels_last: bool,
            bf16: bool, compile: bool, mixer: str = "hire") -> dict:
    """One configuration, in this process: train step and inference images/s, and the GEMM-only floor."""
    torch.manual_seed(0)
    if device == "cuda":  # TF32 for matmuls and convolutions alike, as training sets it
        from lightning_modules.cuda_settings import use_training_math

        use_training_math()
    model = hiremlp.create_model(preset, num_classes=10, impl=impl, mixer=mixer).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    macs = hiremlp.count_macs(model, size)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)  # as lightning_modules trains
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=bf16)
    forward = torch.compile(model) if compile else model

    def train_step() -> None:
        with autocast:
            loss = F.cross_entropy(forward(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    @torch.no_grad()
    def infer_step() -> None:
        with autocast:
            forward(x)

    model.train()
    start = time.perf_counter()
    train_step()
    _sync(device)
    first_step_s = time.perf_counter() - start
    train_s = best_time(train_step, device, steps)
    recorder = GemmRecorder()
    with recorder:
        train_step()
    gemm_s = best_time(gemm_replay(recorder.calls, device), device, steps)
    model.eval()
    infer_s = best_time(infer_step, device, steps)
    return {"train_img_s": batch / train_s, "infer_img_s": batch / infer_s, "macs": macs,
            "params": hiremlp.count_params(model),
            "train_flops": 6 * macs * batch / train_s, "gemm_share": gemm_s / train_s,
            "gemm_flops": 6 * macs * batch / gemm_s, "gemm_calls": len(recorder.calls),
            "first_step_s": first_step_s, "peak_mb": peak_memory_mb(device)}


def machine() -> str:
    """CPU model, the ISA torch's kernels use, and any ISA caps set in the environment: what a timing depends on."""
    model = "unknown CPU"
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                     if ln.startswith("model name"))
    except (OSError, StopIteration):
        pass
    caps = [f"{k}={os.environ[k]}" for k in ISA_CAPS if os.environ.get(k)]
    return (f"{model}, {os.cpu_count()} cores, torch kernels {torch.backends.cpu.get_cpu_capability()}"
            + (f" (capped: {' '.join(caps)})" if caps else ""))


def protocol_step(protocol: str = "cpu", steps: int = 5, keep_memory: bool = True, warmup: int = 2,
                  compile: bool = False) -> dict:
    """Images/s of one training step of ``protocol`` as its trials take it, on this process's CPU threads: the step
    the sweep's estimate times (``lightning_modules.step_timing``: the protocol's preset, batch, augmentation,
    optimiser and loss), fastest of ``steps`` after ``warmup``. ``keep_memory`` applies the allocator setting a CPU
    trial runs with (``lightning_modules.host_memory``). Returns images/s, step seconds, MACs per image, model
    FLOP/s and the threads used.
    """
    from lightning_modules.host_memory import keep_freed_memory
    from lightning_modules.step_timing import time_training_step
    from sweeps.protocols import get_protocol

    kept = keep_freed_memory() if keep_memory else False
    p = get_protocol(protocol)
    cfg = p.config.with_changes(compile=True) if compile else p.config
    t = time_training_step(cfg, "cpu", warmup_steps=warmup, budget_s=0.0, min_steps=steps, max_steps=steps,
                           keep_memory=keep_memory)
    step_s = t.batch / t.best_images_per_s
    return {"img_s": t.best_images_per_s, "step_s": step_s, "cpu_img_s": t.cpu_images_per_s,
            "macs": t.macs_per_image, "flops": 6 * t.macs_per_image * t.batch / step_s, "threads": t.threads,
            "batch": t.batch, "preset": p.preset, "kept_memory": kept, "warmup_extra_s": t.warmup_extra_s,
            "hiremlp_from": str(Path(hiremlp.__file__).parent)}


#: Where a CPU step's time goes, by the aten ops' self time (``--cpu-step-profile``); the rest is "other".
OP_CLASSES = {
    "convolutions (oneDNN)": ("aten::mkldnn_convolution", "aten::convolution_backward"),
    "matmuls (BLAS)": ("aten::mm", "aten::addmm", "aten::bmm"),
    "exact GELU": ("aten::gelu", "aten::gelu_backward"),
    "batch norm": ("aten::native_batch_norm", "aten::native_batch_norm_backward"),
    "copies (transposes, cat, roll, pad)": ("aten::copy_", "aten::cat", "aten::roll", "aten::index_select",
                                            "aten::constant_pad_nd"),
    "elementwise and reductions": ("aten::mul", "aten::add", "aten::add_", "aten::addcmul", "aten::addcmul_",
                                   "aten::sum", "aten::div", "aten::threshold_backward", "aten::clamp_min_",
                                   "aten::fill_", "aten::relu_", "aten::_softmax", "aten::_softmax_backward_data",
                                   "aten::mean"),
    "optimizer": ("aten::_fused_adamw_",),
}


def step_profile(protocol: str = "cpu", steps: int = 3) -> dict:
    """One process: the protocol's step (allocator setting on), its time by op class (torch.profiler, self time)
    and the share its convolutions and matmuls alone take when replayed back to back (``gemm_replay``)."""
    from torch.profiler import ProfilerActivity, profile

    from lightning_modules.host_memory import keep_freed_memory
    from lightning_modules.step_timing import training_step
    from sweeps.protocols import get_protocol

    keep_freed_memory()
    run = training_step(get_protocol(protocol).config, "cpu")
    step_s = best_time(run.step, "cpu", steps, warmup=3)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            run.step()
    self_us = {e.key: e.self_cpu_time_total for e in prof.key_averages()}
    total = sum(self_us.values())
    shares = {name: sum(self_us.get(op, 0.0) for op in ops) / total for name, ops in OP_CLASSES.items()}
    shares["other"] = 1.0 - sum(shares.values())
    classified = {op for ops in OP_CLASSES.values() for op in ops}
    others = sorted(((v, k) for k, v in self_us.items() if k not in classified), reverse=True)[:3]
    recorder = GemmRecorder()
    with recorder:
        run.step()
    gemm_s = best_time(gemm_replay(recorder.calls, "cpu"), "cpu", steps)
    return {"step_s": step_s, "shares": shares, "gemm_share": gemm_s / step_s, "gemm_calls": len(recorder.calls),
            "largest_other": [f"{k} {v / total:.1%}" for v, k in others]}


def print_step_profile(args: argparse.Namespace) -> None:
    r = run_child(args, {"protocol": "cpu", "steps": args.steps}, "--child-profile")
    if "error" in r:
        print(f"\nprofile failed: {r['error']}")
        return
    print(f"\n### where the `now` step's {r['step_s'] * 1e3:.0f} ms go (torch.profiler, aten self time, {args.steps} "
          "steps)")
    print("| op class | share | ms per step |")
    print("|---|---|---|")
    for name, share in sorted(r["shares"].items(), key=lambda kv: -kv[1]):
        print(f"| {name} | {share:.0%} | {share * r['step_s'] * 1e3:.0f} |")
    print(f"(largest in other: {', '.join(r['largest_other'])}; the step's {r['gemm_calls']} convolutions and "
          "matmuls replayed back to back on random tensors take "
          f"{r['gemm_share']:.0%} of the step: the rest is what fusion could at most remove)")


def baseline_tree(ref: str, into: Path) -> Path:
    """``hiremlp/`` as it was at git ``ref``, unpacked under ``into`` (for a before/after row in one run)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "hiremlp"], capture_output=True)
    if archive.returncode != 0:
        raise ValueError(f"--cpu-step-baseline {ref!r} is not a git revision of {ROOT}: "
                         f"{archive.stderr.decode().strip()}")
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def cpu_step_table(args: argparse.Namespace) -> None:
    """The ``cpu`` protocol's step, now and (``--cpu-step-baseline REF``) as at REF, interleaved over rounds."""
    import tempfile

    yardstick = matmul_flops("cpu")
    rows = [("now", {}, True), ("now, glibc's default allocator", {}, False)]
    compiled = ("now, torch.compile (inductor; one round)", {}, True)
    with tempfile.TemporaryDirectory() as tmp:
        for ref in args.cpu_step_compare:
            tree = baseline_tree(ref, Path(tmp) / f"compare-{len(rows)}")
            rows.append((f"model code at {ref}", {"BENCH_HIREMLP_FROM": str(tree)}, True))
        if args.compile:
            rows.append(compiled)
        if args.cpu_step_baseline:
            old = baseline_tree(args.cpu_step_baseline, Path(tmp) / "before")
            rows.append((f"before ({args.cpu_step_baseline})", {"BENCH_HIREMLP_FROM": str(old)}, False))
        runs: list[list[dict]] = [[] for _ in rows]
        for round_ in range(args.rounds):
            for i, row in enumerate(rows):
                name, env, keep = row
                if row is compiled and round_ > 0:
                    continue
                spec = {"protocol": "cpu", "steps": args.steps, "keep_memory": keep, "compile": row is compiled}
                runs[i].append(run_child(args, spec, "--child-step", env))
    print(f"\n## cpu protocol step: {machine()}; large fp32 matmul {yardstick / 1e9:.1f} GFLOP/s; "
          f"best of {args.steps} steps x {args.rounds} rounds")
    header = ("code", "preset", "batch", "threads", "train img/s", "GFLOP/s", "of matmul", "vs before",
              "img per CPU-s", "vs before (CPU time)")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    best = [max((r for r in rs if "error" not in r), key=lambda r: r["img_s"], default=rs[-1]) for rs in runs]
    cpu_best = [max((r.get("cpu_img_s", 0) for r in rs if "error" not in r), default=0) for rs in runs]
    base, cpu_base = (best[-1].get("img_s"), cpu_best[-1]) if args.cpu_step_baseline else (None, None)
    for (name, _, _), r, cpu_ips in zip(rows, best, cpu_best, strict=True):
        if "error" in r:
            print(f"| {name} | failed: {r['error']} |")
            continue
        ratio = f"{r['img_s'] / base:.2f}x" if base else "-"
        cpu_ratio = f"{cpu_ips / cpu_base:.2f}x" if cpu_base else "-"
        if "torch.compile" in name:
            name += f": {r['warmup_extra_s']:.0f} s to compile"
        print(f"| {name} | {r['preset']} | {r['batch']} | {r['threads']} | {r['img_s']:.1f} | "
              f"{r['flops'] / 1e9:.1f} | {r['flops'] / yardstick:.0%} | {ratio} | {cpu_ips:.1f} | {cpu_ratio} |")
    print("(img per CPU-s: batch over the process's CPU time of its fastest step; on a busy machine it is steadier "
          "than the wall clock, and with several threads it also counts their waiting)")
    if args.cpu_step_profile:
        print_step_profile(args)


def agreement(preset: str, size: int, device: str = "cpu", bf16: bool = False) -> float:
    """Largest difference between fast (channels-last) and reference (NCHW) logits: same weights, same batch, on
    ``device`` (a GPU runs other kernels than the CPU), in fp32 or under bf16 autocast."""
    torch.manual_seed(0)
    fast = hiremlp.create_model(preset, num_classes=10).to(device).to(memory_format=torch.channels_last)
    ref = hiremlp.create_model(preset, num_classes=10, impl="reference").to(device)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(8, 3, size, size, device=device)
    with torch.no_grad(), torch.autocast(device, dtype=torch.bfloat16, enabled=bf16):
        diff = fast(x.contiguous(memory_format=torch.channels_last)).float() - ref(x).float()
    return diff.abs().max().item()


def run_child(args: argparse.Namespace, spec: dict, mode: str = "--child", extra_env: dict | None = None) -> dict:
    cmd = [sys.executable, __file__, mode, json.dumps(spec)]
    env = {**os.environ, **(extra_env or {})}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def fastest(results: list[dict]) -> dict:
    """The round with the fastest train step, with the fastest inference of any round; an error if all failed."""
    ok = [r for r in results if "error" not in r]
    if not ok:
        return results[-1]
    best = max(ok, key=lambda r: r["train_img_s"])
    return {**best, "infer_img_s": max(r["infer_img_s"] for r in ok)}


def configurations(args: argparse.Namespace, device: str) -> list[dict]:
    """(impl, layout, precision, compile) rows for one device; the baseline first."""
    rows = [dict(impl=impl, channels_last=cl, bf16=False, compile=False)
            for impl in args.impls.split(",") for cl in (False, True)]
    rows.sort(key=lambda r: (r["impl"] != "reference", r["channels_last"]))
    fast_cl = dict(impl="fast", channels_last=True)
    if device == "cuda" or args.cpu_bf16:
        rows.append({**fast_cl, "bf16": True, "compile": False})
    if args.compile:
        rows.append({**fast_cl, "bf16": device == "cuda", "compile": True})
    return rows


def label(cfg: dict) -> str:
    extra = [name for name, on in (("bf16", cfg["bf16"]), ("compile", cfg["compile"])) if on]
    return cfg["impl"] + (" + " + " + ".join(extra) if extra else "")


def mixer_table(args: argparse.Namespace, device: str, presets: list[str], mixers: list[str]) -> None:
    """Token mixers side by side in one network (``--mixers``): the fast path, channels-last, fp32, each mixer
    in its own process and the rounds interleaved, so "AS-MLP is faster" is measured under one load."""
    header = ("preset", "size", "mixer", "params (M)", "MACs (M)", "train img/s", "infer img/s", "peak MB",
              "train vs hire", "infer vs hire")
    print(f"\n### token mixers on {device}: fast impl, channels_last, fp32, batch {args.batch_size}")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for preset in presets:
        size = DEFAULT_SIZES.get(preset, hiremlp.PRESET_IMAGE_SIZE[preset])
        specs = [dict(preset=preset, impl="fast", device=device, size=size, batch=args.batch_size,
                      steps=args.steps, channels_last=True, bf16=False, compile=False, mixer=m) for m in mixers]
        runs: list[list[dict]] = [[] for _ in specs]
        for _ in range(args.rounds):
            for i, spec in enumerate(specs):
                runs[i].append(run_child(args, spec))
        best = dict(zip(mixers, (fastest(r) for r in runs), strict=True))
        hire = best.get("hire", {})
        for mixer, r in best.items():
            if "error" in r:
                print(f"| {preset} | {size} | {mixer} | failed: {r['error']} |")
                continue
            rel = [f"{r[k] / hire[k]:.2f}x" if k in hire else "-" for k in ("train_img_s", "infer_img_s")]
            print(f"| {preset} | {size} | {mixer} | {r['params'] / 1e6:.3f} | {r['macs'] / 1e6:.1f} | "
                  f"{r['train_img_s']:.1f} | {r['infer_img_s']:.1f} | {r['peak_mb']:.0f} | {rel[0]} | {rel[1]} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="smoke,cifar_tiny,tiny")
    parser.add_argument("--impls", default="fast,reference")
    parser.add_argument("--devices", default="auto", help="cpu, cuda or auto (cpu, plus cuda when present)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round (the fastest counts)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over all configurations (the best counts)")
    parser.add_argument("--threads", type=int, default=0, help="OMP threads per child (0: torch's default)")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row (slow to compile on CPU)")
    parser.add_argument("--cpu-bf16", action="store_true", help="add a bf16-autocast row on CPU (on GPU always)")
    parser.add_argument("--cpu-step", action="store_true",
                        help="only the cpu protocol's training step (smoke, its batch and optimiser), with the "
                             "fraction of a large matmul's FLOP/s")
    parser.add_argument("--cpu-step-baseline", metavar="REF",
                        help="add a row for the model code (hiremlp/) at git REF, timed in the same rounds")
    parser.add_argument("--cpu-step-compare", metavar="REF[,REF]", default="",
                        type=lambda v: [r for r in v.split(",") if r],
                        help="add a row per git REF: that commit's model code with the CPU trial's allocator "
                             "setting (a candidate speed-up held on a branch, timed beside now)")
    parser.add_argument("--cpu-step-profile", action="store_true",
                        help="after the table: where now's step spends its time, by op class, and the share its "
                             "convolutions and matmuls alone take")
    parser.add_argument("--mixers", default="", help="comma-separated token mixers (hiremlp.config.MIXERS, or "
                        "'all'): print their speed table instead of the implementations'")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-step", help=argparse.SUPPRESS)
    parser.add_argument("--child-profile", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(**json.loads(args.child))))
        return 0
    if args.child_step:
        print(json.dumps(protocol_step(**json.loads(args.child_step))))
        return 0
    if args.child_profile:
        print(json.dumps(step_profile(**json.loads(args.child_profile))))
        return 0
    if args.cpu_step or args.cpu_step_baseline or args.cpu_step_compare or args.cpu_step_profile:
        for flag, ref in ([("--cpu-step-baseline", args.cpu_step_baseline)] if args.cpu_step_baseline else []) + \
                [("--cpu-step-compare", r) for r in args.cpu_step_compare]:
            check = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet",
                                    f"{ref}^{{commit}}"], capture_output=True)
            if check.returncode != 0:
                parser.exit(2, f"error: {flag} {ref!r} is not a commit of {ROOT}\n")
        print(f"# torch {torch.__version__}, {machine()}")
        cpu_step_table(args)
        return 0
    presets = [p for p in args.presets.split(",") if p]
    for p in presets:
        if p not in hiremlp.PRESETS:
            parser.exit(2, f"error: preset {p!r} does not exist; allowed: {', '.join(hiremlp.PRESETS)}\n")
    for impl in args.impls.split(","):
        if impl not in hiremlp.config.IMPLS:
            parser.exit(2, f"error: impl {impl!r} does not exist; allowed: {', '.join(hiremlp.config.IMPLS)}\n")
    mixers = list(hiremlp.config.MIXERS) if args.mixers == "all" else [m for m in args.mixers.split(",") if m]
    for mixer in mixers:
        if mixer not in hiremlp.config.MIXERS:
            parser.exit(2, f"error: mixer {mixer!r} does not exist; allowed: {', '.join(hiremlp.config.MIXERS)}, "
                           "all\n")
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" else \
        args.devices.split(",")
    print(f"# torch {torch.__version__}, {machine()}"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    if mixers:
        for device in devices:
            mixer_table(args, device, presets, mixers)
        return 0
    for device in devices:
        yardstick = matmul_flops(device)
        print(f"\n## {device}: large fp32 matmul {yardstick / 1e9:.1f} GFLOP/s; batch {args.batch_size}, "
              f"best of {args.steps} steps x {args.rounds} rounds")
        header = ("preset", "size", "impl", "layout", "train img/s", "infer img/s", "peak MB", "GFLOP/s",
                  "of matmul", "GEMMs alone: share of step", "ceiling of matmul", "speed-up")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for preset in presets:
            size = DEFAULT_SIZES.get(preset, hiremlp.PRESET_IMAGE_SIZE[preset])
            diff = agreement(preset, size, device)
            rows = configurations(args, device)
            specs = [dict(preset=preset, device=device, size=size, batch=args.batch_size, steps=args.steps, **r)
                     for r in rows]
            runs: list[list[dict]] = [[] for _ in specs]
            for _ in range(args.rounds):
                for i, spec in enumerate(specs):
                    runs[i].append(run_child(args, spec))
            best = [fastest(r) for r in runs]
            base = best[0].get("train_img_s") if rows[0]["impl"] == "reference" else None
            for cfg, r in zip(rows, best, strict=True):
                layout = "channels_last" if cfg["channels_last"] else "NCHW"
                if "error" in r:
                    print(f"| {preset} | {size} | {label(cfg)} | {layout} | failed: {r['error']} |")
                    continue
                speedup = f"{r['train_img_s'] / base:.2f}x" if base else "-"
                print(f"| {preset} | {size} | {label(cfg)} | {layout} | {r['train_img_s']:.1f} | "
                      f"{r['infer_img_s']:.1f} | {r['peak_mb']:.0f} | {r['train_flops'] / 1e9:.1f} | "
                      f"{r['train_flops'] / yardstick:.0%} | {r['gemm_share']:.0%} | "
                      f"{r['gemm_flops'] / yardstick:.0%} | {speedup} |")
                if cfg["compile"]:
                    print(f"|  | | (compile + first step took {r['first_step_s']:.0f} s) | | | | | | | | | |")
            bf16 = (f", bf16 autocast {agreement(preset, size, device, bf16=True):.1e}"
                    if device == "cuda" or args.cpu_bf16 else "")
            print(f"|  | | fast vs reference: max abs diff of logits {diff:.1e} ({device} fp32{bf16})"
                  " | | | | | | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
