"""Cost of the training loader's augmentation per batch: crop + flip alone, then each recipe knob added.

    python benchmarks/augment.py                          # CPU, batches 64 / 256 / 512, 1 thread
    python benchmarks/augment.py --device cuda --batch-sizes 512,1024

Each row times producing one training batch of 32 px CIFAR-sized uint8 images (synthetic: augmentation cost does
not depend on the pixels) with ``GpuBatches``, exactly as training does: the best of ``--repeats`` epochs of
``--batches`` batches, per batch, in milliseconds, and the extra over crop + flip. RandAugment computes all 15 ops
for the whole batch in each of its layers and keeps each where an image chose it (no host sync on a GPU), so its
cost does not depend on which ops the images drew. On CUDA the timings are synchronised.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lightning_modules.gpu_loader import GpuBatches  # noqa: E402
from lightning_modules.recipe import PAPER, Recipe  # noqa: E402

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

CONFIGS: dict[str, Recipe | None] = {
    "crop + flip": None,
    "+ RandAugment n2 m9 mstd0.5": Recipe(randaug_ops=2, randaug_magnitude=9.0, randaug_magnitude_std=0.5),
    "+ random erasing 0.25 pixel": Recipe(erase_prob=0.25, erase_mode="pixel"),
    "+ mixup 0.8 / CutMix 1.0": Recipe(mixup=0.8, cutmix=1.0),
    "+ repeated augmentation x3": Recipe(repeated_aug=3),
    "paper (all of the above)": PAPER,
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_loader(recipe: Recipe | None, batch: int, batches: int, repeats: int, device: torch.device) -> float:
    """Seconds per batch (best epoch of ``repeats``)."""
    n = batch * batches
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=device)
    y = torch.randint(0, 10, (n,), device=device)
    loader = GpuBatches(x, y, batch, train=True, mean=MEAN, std=STD, seed=0, recipe=recipe)
    best = float("inf")
    for _ in range(repeats + 1):  # the first epoch warms up
        _sync(device)
        t = time.perf_counter()
        for _ in loader:
            pass
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best / batches


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-sizes", default="64,256,512")
    p.add_argument("--batches", type=int, default=8, help="batches per timed epoch")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs (the best counts)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sizes = [int(s) for s in args.batch_sizes.split(",") if s]
    print(f"augmentation cost per batch on {device} ({torch.get_num_threads()} thread(s), torch "
          f"{torch.__version__}), ms; in parentheses: extra over crop + flip")
    print("| pipeline | " + " | ".join(f"batch {b}" for b in sizes) + " |")
    print("|---|" + "---|" * len(sizes))
    base = {b: time_loader(None, b, args.batches, args.repeats, device) for b in sizes}
    for name, recipe in CONFIGS.items():
        cells = []
        for b in sizes:
            t = base[b] if recipe is None else time_loader(recipe, b, args.batches, args.repeats, device)
            cells.append(f"{1e3 * t:.2f}" + ("" if recipe is None else f" (+{1e3 * (t - base[b]):.2f})"))
        print(f"| {name} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
