"""Device-resident batches with vectorised augmentation (airbench style).

The whole split lives on the training device as one uint8 tensor; a batch is an index into it. Random crop
(reflect padding) and horizontal flip are one gather per batch: the crop offsets and the flip are folded into
the row/column indices, so there is no padded copy, no per-image Python and no DataLoader worker. The recipe's
RandAugment, random erasing, mixup/CutMix and repeated augmentation (``augment.py``) run on the batch after that.
The shuffling/augmentation generators are seeded from (seed, epoch) and live apart from the global RNG, so every
model variant with the same seed sees exactly the same data stream.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .augment import RandAugment, mix_batch, random_erase, repeated_order
from .distributed import rank_seed, shard, shard_eval
from .recipe import Recipe

__all__ = ["DeviceAugment", "GpuBatches", "augment_indices"]


def _reflect_index(n: int, pad: int, device: torch.device) -> torch.Tensor:
    """Source index of every coordinate of a reflect-padded axis: n + 2*pad entries."""
    i = torch.arange(-pad, n + pad, device=device).abs()
    return torch.where(i >= n, 2 * (n - 1) - i, i)


def augment_indices(b: int, h: int, w: int, pad: int, flip: bool, gen: torch.Generator,
                    device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (rows (b, h), cols (b, w)) source indices for a random reflect-padded crop and optional flip."""
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=device)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=gen, device=device)
    rows = _reflect_index(h, pad, device)[dy + torch.arange(h, device=device)]
    cols = _reflect_index(w, pad, device)[dx + torch.arange(w, device=device)]
    if flip:
        mirrored = torch.rand(b, 1, generator=gen, device=device) < 0.5
        cols = torch.where(mirrored, cols.flip(1), cols)
    return rows, cols


class GpuBatches:
    """Iterable of (images float (B, 3, S, S) normalised, labels int64 (B,)) over tensors on one device.

    A training loader whose ``recipe`` mixes yields (images, labels, labels of the mixing partner, lambda): the
    target of image i is ``lam * labels[i] + (1 - lam) * partner[i]``.

    Args:
        images: uint8 (N, 3, H, W) on the target device.
        labels: int64 (N,) on the same device.
        train: shuffle + augment (crop with ``pad`` reflect padding, flip) and drop the last partial batch.
        size: resize every batch to ``size`` x ``size`` (bilinear, antialiased) after normalising, for
            evaluation at other input sizes.
        recipe: the training recipe whose data-side knobs (RandAugment, random erasing, mixup/CutMix, repeated
            augmentation) a training loader applies; None: crop and flip only.
        rank, world_size: this process's share under data-parallel training (``distributed.py``): a training
            loader takes its shard of the epoch order all ranks draw from ``seed``, an evaluation loader every
            ``world_size``-th image; ``batch_size`` is then the per-process batch.
    """

    interpolation = "bilinear(antialias=True, align_corners=False)"

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, *, train: bool,
                 mean: tuple[float, ...], std: tuple[float, ...], seed: int = 0, pad: int = 4,
                 flip: bool = True, channels_last: bool = False, size: int | None = None,
                 recipe: Recipe | None = None, rank: int = 0, world_size: int = 1) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {images.dtype} {tuple(images.shape)}")
        self.images, self.labels = images, labels
        self.batch_size, self.train, self.seed, self.pad, self.flip = batch_size, train, seed, pad, flip
        self.recipe = recipe if train else None
        self.rank, self.world = rank, world_size
        self.finisher = DeviceAugment(self.recipe, mean, std, images.device, channels_last=channels_last, size=size)
        self.epoch = 0  # advanced by each __iter__ of a training loader

    @property
    def device(self) -> torch.device:
        return self.images.device

    @property
    def size(self) -> int | None:
        return self.finisher.size

    @size.setter
    def size(self, value: int | None) -> None:
        self.finisher.size = value

    @property
    def channels_last(self) -> bool:
        return self.finisher.channels_last

    @channels_last.setter
    def channels_last(self, value: bool) -> None:
        self.finisher.channels_last = value

    def __len__(self) -> int:
        n = len(self.labels)
        if self.train:
            n //= self.world
            return n // self.batch_size if n >= self.batch_size else math.ceil(n / self.batch_size)
        return math.ceil(len(range(n)[shard_eval(n, self.rank, self.world)]) / self.batch_size)

    def _finish(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        return self.finisher.finish(x, gen)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, bs, dev = len(self.labels), self.batch_size, self.device
        if not self.train:
            part = shard_eval(n, self.rank, self.world)
            images, labels = self.images[part], self.labels[part]
            for i in range(0, len(labels), bs):
                yield self._finish(images[i:i + bs]), labels[i:i + bs]
            return
        order, gen, host_rng = self.epoch_order(self.epoch)
        self.epoch += 1
        _, c, h, w = self.images.shape
        ch = torch.arange(c, device=dev).view(1, c, 1, 1)
        for k in range(len(self)):
            idx = order[k * bs:(k + 1) * bs]
            rows, cols = augment_indices(len(idx), h, w, self.pad, self.flip, gen, dev)
            x = self._finish(self.images[idx.view(-1, 1, 1, 1), ch, rows[:, None, :, None], cols[:, None, None, :]],
                             gen)
            yield self.finisher.mix(x, self.labels[idx], host_rng)

    def epoch_order(self, epoch: int) -> tuple[torch.Tensor, torch.Generator, np.random.Generator]:
        """This rank's sample indices for ``epoch`` (its shard of the order every rank draws from the shared seed),
        and the generators of its augmentation draws (rank 0's continue the single-process stream)."""
        dev = self.device
        gen = torch.Generator(device=dev)
        gen.manual_seed(self.seed * 1_000_003 + epoch)
        r = self.recipe
        order = shard(repeated_order(len(self.labels), r.repeated_aug if r is not None else 1, gen, dev),
                      self.rank, self.world)
        host_rng = np.random.default_rng([self.seed, epoch])  # per-batch scalars (mixup), as timm's
        if self.rank:
            gen.manual_seed(rank_seed(self.seed, epoch, self.rank))
            host_rng = np.random.default_rng([self.seed, epoch, self.rank])
        return order, gen, host_rng


class DeviceAugment:
    """What happens to a uint8 batch on the device after cropping: RandAugment, normalisation, random erasing,
    optional resize (evaluation at other sizes), layout, then mixup/CutMix. Shared by the CIFAR loader and the
    ImageFolder loader, so both apply the recipe identically."""

    def __init__(self, recipe: Recipe | None, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device,
                 *, channels_last: bool = False, size: int | None = None) -> None:
        self.recipe, self.channels_last, self.size = recipe, channels_last, size
        fill = tuple(float(m) for m in mean)  # geometric ops fill with the dataset mean, as timm's img_mean
        self.randaug = (RandAugment(recipe.randaug_ops, recipe.randaug_magnitude, recipe.randaug_magnitude_std,
                                    fill) if recipe is not None and recipe.randaug_ops else None)
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255

    def finish(self, x: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
        if self.randaug is not None:
            x = self.randaug(x.float() / 255, gen) * 255
        x = (x.float() - self.mean) / self.std
        if self.recipe is not None and self.recipe.erase_prob > 0:
            x = random_erase(x, self.recipe.erase_prob, self.recipe.erase_mode, gen)
        if self.size is not None and self.size != x.shape[-1]:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def mix(self, x: torch.Tensor, y: torch.Tensor, host_rng: np.random.Generator) -> tuple:
        """(x, y), or (x, y, partner labels, lambda) when the recipe mixes."""
        r = self.recipe
        if r is not None and r.mixes:
            x, lam = mix_batch(x, host_rng, r.mixup, r.cutmix, r.mix_prob, r.mix_switch_prob)
            return x, y, y.flip(0), lam
        return x, y
