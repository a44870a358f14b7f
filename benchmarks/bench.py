"""Speed table: presets x implementations x devices, train and inference images/s, memory, FLOP utilisation.

    python benchmarks/bench.py                       # CPU (and GPU when present), smoke / cifar_tiny / tiny
    python benchmarks/bench.py --presets tiny --batch-size 128 --steps 20

Achieved FLOP/s counts the model's own arithmetic (2 x MACs forward, x3 for a train step) and is compared with a
large fp32 matmul measured in the same run on the same device, so the ratio says how much of the machine's
arithmetic the model turns into training. Every configuration runs in its own process, so its peak memory is its
own. The reference implementation is the released code's reshape path; the two must agree before either is timed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import hiremlp  # noqa: E402

DEFAULT_SIZES = {"smoke": 32, "cifar_tiny": 32, "tiny": 64}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def matmul_flops(device: str, n: int = 2048, reps: int = 10) -> float:
    """FLOP/s of a large fp32 (TF32 off) square matmul: the yardstick for utilisation."""
    torch.backends.cuda.matmul.allow_tf32 = False
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    for _ in range(3):
        a @ b
    _sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    _sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(preset: str, impl: str, device: str, size: int, batch: int, steps: int, channels_last: bool,
            bf16: bool) -> dict:
    """One configuration, in this process: the train step (fwd, bwd, AdamW) and inference, images/s."""
    torch.manual_seed(0)
    model = hiremlp.create_model(preset, num_classes=10, impl=impl).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)  # as lightning_modules trains
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,), device=device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=bf16)

    def train_step() -> None:
        with autocast:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def timed(fn, n: int) -> float:
        for _ in range(2):
            fn()
        _sync(device)
        start = time.perf_counter()
        for _ in range(n):
            fn()
        _sync(device)
        return (time.perf_counter() - start) / n

    model.train()
    train_s = timed(train_step, steps)
    @torch.no_grad()
    def infer_step() -> None:
        with autocast:
            model(x)

    model.eval()
    infer_s = timed(infer_step, steps)
    macs = hiremlp.count_macs(model.float(), size)
    return {"train_img_s": batch / train_s, "infer_img_s": batch / infer_s, "macs": macs,
            "train_flops": 6 * macs * batch / train_s, "peak_mb": peak_memory_mb(device)}


def agreement(preset: str, size: int) -> float:
    """Largest difference between fast and reference outputs (train mode, same weights, same batch)."""
    torch.manual_seed(0)
    fast = hiremlp.create_model(preset, num_classes=10)
    ref = hiremlp.create_model(preset, num_classes=10, impl="reference")
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(8, 3, size, size)
    return (fast(x) - ref(x)).abs().max().item()


def run_child(args: argparse.Namespace, preset: str, impl: str, device: str, channels_last: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", json.dumps({
        "preset": preset, "impl": impl, "device": device, "size": args.sizes.get(preset, DEFAULT_SIZES[preset]),
        "batch": args.batch_size, "steps": args.steps, "channels_last": channels_last,
        "bf16": device == "cuda"})]
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr.strip() else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="smoke,cifar_tiny,tiny")
    parser.add_argument("--impls", default="fast,reference")
    parser.add_argument("--devices", default="auto", help="cpu, cuda or auto (cpu, plus cuda when present)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="OMP threads per child (0: torch's default)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        spec = json.loads(args.child)
        print(json.dumps(measure(**spec)))
        return 0
    args.sizes = DEFAULT_SIZES
    presets = [p for p in args.presets.split(",") if p]
    for p in presets:
        if p not in hiremlp.PRESETS:
            parser.exit(2, f"error: preset {p!r} does not exist; allowed: {', '.join(hiremlp.PRESETS)}\n")
        DEFAULT_SIZES.setdefault(p, hiremlp.PRESET_IMAGE_SIZE[p])
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if args.devices == "auto" else \
        args.devices.split(",")
    print(f"# torch {torch.__version__}, {os.cpu_count()} CPU cores"
          + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"))
    for device in devices:
        yardstick = matmul_flops(device)
        print(f"\n## {device}: large fp32 matmul {yardstick / 1e9:.1f} GFLOP/s; batch {args.batch_size}")
        header = ("preset", "size", "impl", "layout", "train img/s", "infer img/s", "peak MB", "GFLOP/s",
                  "of matmul", "speed-up")
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for preset in presets:
            size = DEFAULT_SIZES[preset]
            diff = agreement(preset, size)
            results = {(impl, cl): run_child(args, preset, impl, device, cl)
                       for impl in args.impls.split(",") for cl in (False, True)}
            base = results.get(("reference", False), {}).get("train_img_s")
            for (impl, cl), r in results.items():
                layout = "channels_last" if cl else "NCHW"
                if "error" in r:
                    print(f"| {preset} | {size} | {impl} | {layout} | failed: {r['error']} |")
                    continue
                speedup = f"{r['train_img_s'] / base:.2f}x" if base else "-"
                print(f"| {preset} | {size} | {impl} | {layout} | {r['train_img_s']:.1f} | "
                      f"{r['infer_img_s']:.1f} | {r['peak_mb']:.0f} | {r['train_flops'] / 1e9:.1f} | "
                      f"{r['train_flops'] / yardstick:.0%} | {speedup} |")
            print(f"|  | | fast vs reference: max abs diff of logits {diff:.1e} | | | | | | | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
