"""Batched training augmentation on the device: RandAugment, random erasing, mixup/CutMix, repeated augmentation.

Everything here works on whole device-resident batches with per-image random choices and draws its randomness
from the generators the loader passes in (seeded by trial seed and epoch), never from the global RNG, so every
model variant trained with one seed sees the same augmented data stream. On a GPU nothing is read back to the host:
per-image choices are masks, and each RandAugment op is computed for the whole batch and kept where its mask is set;
on a CPU, where reading the choice costs nothing, each op runs only on the images that chose it
(``benchmarks/augment.py`` measures the cost per batch).

What follows timm 0.4.13 (the released script's library) and where it differs:

* ``RandAugment`` is timm's ``rand-m{m}-mstd{s}-inc1``: per image, ``num_ops`` layers; each layer picks one of the 15
  ops of timm's increasing-severity set uniformly (with replacement), applies it with probability 0.5, at a
  magnitude drawn per image and layer from N(m, s) clipped to [0, 10], with timm's level-to-argument maps and a
  random sign for the symmetric ops. The pixel work is kornia's where kornia computes what PIL does
  (``equalize``, ``posterize``, ``sharpness``, ``rgb_to_grayscale``, ``warp_affine``, ``get_rotation_matrix2d``);
  PIL's enhance blends (colour, contrast, brightness), solarize, solarize-add, invert and autocontrast are one
  tensor expression each. kornia's own ``RandAugment`` is not used: it picks the same ops for the whole batch,
  applies every picked op (no probability 0.5), has no magnitude noise, maps magnitudes on a 0-30 scale, shears
  by ``magnitude x 180`` degrees, and its brightness/contrast/colour ops (additive brightness, multiplicative
  contrast, HSV saturation) are not PIL's. Remaining differences from timm: geometric ops resample bilinearly
  (the released script asks PIL for bicubic), images stay float between ops (PIL rounds every op's output to
  8 bits), and the ops see the 32 px crop (the released script augments 224 px crops).
* ``random_erase`` is timm's ``RandomErasing(probability, mode, count 1)``: per image with probability ``p``, up
  to 10 tries of an area in [0.02, 1/3] of the image and a log-uniform aspect ratio in [0.3, 1/0.3], the first
  box that fits is filled (in normalised units) with per-pixel N(0, 1) (``pixel``), a per-channel N(0, 1)
  (``rand``) or 0 (``const``). kornia's ``RandomErasing`` is not used: it fills with one constant (no pixel mode),
  makes a single draw clamped to the image instead of rejecting boxes that do not fit, draws the aspect ratio
  from two uniform halves instead of log-uniformly, and uses the global RNG.
* ``mix_batch`` is timm's ``Mixup`` in batch mode: with probability ``mix_prob`` the batch is mixed with its
  reverse, by CutMix with probability ``switch_prob`` when both are on, lambda ~ Beta(alpha, alpha), CutMix's
  lambda corrected to the pasted area.
* ``repeated_order`` is the released code's ``RASampler`` order: a shuffled order in which every image appears
  ``repeats`` times in a row, cut to the epoch's length. Under DDP each rank takes every W-th position of it
  (``distributed.py``), so the copies go to different GPUs as the released code deals them; in one process they
  share one batch. The released code also rounds each epoch down to a multiple of 256 images; this does not.
"""

from __future__ import annotations

import math

import kornia
import numpy as np
import torch

__all__ = ["RANDAUG_OPS", "RandAugment", "mix_batch", "random_erase", "repeated_order"]

#: timm's ``_RAND_INCREASING_TRANSFORMS`` (``inc1``), in its order.
RANDAUG_OPS = ("auto_contrast", "equalize", "invert", "rotate", "posterize", "solarize", "solarize_add", "color",
               "contrast", "brightness", "sharpness", "shear_x", "shear_y", "translate_x", "translate_y")
_GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")


def _where(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.view(-1, 1, 1, 1), a, b)


def _autocontrast(x: torch.Tensor, *_: torch.Tensor) -> torch.Tensor:
    """PIL ``autocontrast`` (cutoff 0): each channel stretched to [0, 1]; a flat channel is left as it is."""
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)
    return torch.where(hi > lo, (x - lo) / (hi - lo).clamp_min(1e-12), x)


def _posterize(x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    return kornia.enhance.posterize(x, (4 - torch.floor(level * 4)).long())  # timm: keep 4 - int(4 m) bits


def _solarize(x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    threshold = (256 - torch.floor(level * 256)).view(-1, 1, 1, 1) / 255  # timm: 256 - int(256 m)
    return torch.where(x >= threshold - 1e-6, 1.0 - x, x)


def _solarize_add(x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    add = torch.floor(level * 110).view(-1, 1, 1, 1) / 255  # timm: + int(110 m) to the pixels below 128
    return torch.where(x < 128 / 255, (x + add).clamp(max=1.0), x)


def _factor(level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    return 1.0 + 0.9 * level * sign  # timm's *_increasing enhance factor: 1 +- 0.9 m


def _color(x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    gray = kornia.color.rgb_to_grayscale(x)  # PIL 'L': 0.299 R + 0.587 G + 0.114 B
    return torch.lerp(gray.expand_as(x), x, _factor(level, sign).view(-1, 1, 1, 1)).clamp(0, 1)


def _contrast(x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    mean = torch.round(kornia.color.rgb_to_grayscale(x).mean((1, 2, 3), keepdim=True) * 255) / 255  # PIL rounds
    return torch.lerp(mean.expand_as(x), x, _factor(level, sign).view(-1, 1, 1, 1)).clamp(0, 1)


def _brightness(x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    return (x * _factor(level, sign).view(-1, 1, 1, 1)).clamp(0, 1)


def _sharpness(x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    return kornia.enhance.sharpness(x, _factor(level, sign)).clamp(0, 1)  # PIL's 3x3 smoothing kernel


_PIXEL_OPS = {
    "auto_contrast": _autocontrast, "equalize": lambda x, *_: kornia.enhance.equalize(x),
    "invert": lambda x, *_: 1.0 - x, "posterize": _posterize, "solarize": _solarize, "solarize_add": _solarize_add,
    "color": _color, "contrast": _contrast, "brightness": _brightness, "sharpness": _sharpness,
}


class RandAugment:
    """timm's ``rand-m{magnitude}-mstd{magnitude_std}-inc1`` on float images in [0, 1], (B, 3, H, W).

    ``fill`` is the value (per channel, in [0, 1]) geometric ops bring in from outside the image: timm fills with
    the dataset mean, which DeiT passes as ``img_mean``.
    """

    prob = 0.5  # timm's per-op probability for RandAugment

    def __init__(self, num_ops: int, magnitude: float, magnitude_std: float,
                 fill: tuple[float, float, float] = (0.5, 0.5, 0.5)) -> None:
        self.num_ops, self.magnitude, self.magnitude_std = num_ops, magnitude, magnitude_std
        self.fill = fill
        self._constants: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _warp_constants(self, h: int, w: int, dev: torch.device, dt: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(rotation centre (1, 2), fill (3,)), made once per size, device and dtype: ``torch.tensor(...,
        device=cuda)`` is a host-to-device copy that waits for the queued kernels, in every layer of every batch."""
        key = (h, w, dev, dt)
        if key not in self._constants:
            self._constants[key] = (torch.tensor([[(w - 1) / 2, (h - 1) / 2]], device=dev, dtype=dt),
                                    torch.tensor(self.fill, device=dev, dtype=dt))
        return self._constants[key]

    def __call__(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        b, dev = x.shape[0], x.device
        for _ in range(self.num_ops):
            op = torch.randint(0, len(RANDAUG_OPS), (b,), generator=gen, device=dev)
            applied = torch.rand(b, generator=gen, device=dev) < self.prob
            op = torch.where(applied, op, -1)
            level = torch.full((b,), float(self.magnitude), device=dev)
            if self.magnitude_std > 0:
                level = level + self.magnitude_std * torch.randn(b, generator=gen, device=dev)
            level = level.clamp(0, 10) / 10
            sign = torch.where(torch.rand(b, generator=gen, device=dev) < 0.5, -1.0, 1.0)
            x = self.apply(x, op, level, sign)
        return x

    def apply(self, x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor,
              gather: bool | None = None) -> torch.Tensor:
        """Apply op ``op[i]`` (index into ``RANDAUG_OPS``; -1 = none) at ``level[i]`` in [0, 1] to image i.

        ``gather`` (default: on a CPU) runs each op on the images that chose it; otherwise (default on a GPU) every
        op runs on the whole batch and is kept where chosen, because selecting by index would read the choice
        back to the host. Both give the same images.
        """
        gather = x.device.type == "cpu" if gather is None else gather
        x = x.clone() if gather else x
        geometric = torch.zeros_like(op, dtype=torch.bool)
        for k in (RANDAUG_OPS.index(name) for name in _GEOMETRIC):
            geometric |= op == k
        steps = [(geometric, self._geometric)] + [(op == RANDAUG_OPS.index(name), fn)
                                                  for name, fn in _PIXEL_OPS.items()]
        for mask, fn in steps:
            if not gather:
                x = _where(mask, fn(x, op, level, sign), x)
            elif (idx := mask.nonzero()[:, 0]).numel():
                x[idx] = fn(x[idx], op[idx], level[idx], sign[idx])
        return x

    def _geometric(self, x: torch.Tensor, op: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
        """All five geometric ops as one per-image affine warp (identity for the other images).

        Matrices map source to destination pixel indices (kornia's convention); PIL's affine data maps output
        to input with pixel centres at +0.5, hence the half-pixel terms of the shears.
        """
        b, _, h, w = x.shape
        dev, dt = x.device, x.dtype
        is_op = {name: op == RANDAUG_OPS.index(name) for name in _GEOMETRIC}
        m = torch.eye(3, device=dev, dtype=dt).repeat(b, 1, 1)
        shear = (0.3 * level * sign).to(dt)  # timm: shear factor 0.3 m
        m[:, 0, 1] = torch.where(is_op["shear_x"], -shear, 0.0)
        m[:, 0, 2] = torch.where(is_op["shear_x"], -0.5 * shear, 0.0)
        m[:, 1, 0] = torch.where(is_op["shear_y"], -shear, 0.0)
        m[:, 1, 2] = torch.where(is_op["shear_y"], -0.5 * shear, 0.0)
        shift = 0.45 * level * sign  # timm TranslateRel: 0.45 m of the image size
        m[:, 0, 2] -= torch.where(is_op["translate_x"], shift * w, 0.0)
        m[:, 1, 2] -= torch.where(is_op["translate_y"], shift * h, 0.0)
        angle = torch.where(is_op["rotate"], 30.0 * level * sign, 0.0).to(dt)  # timm: 30 m degrees, CCW
        center, fill = self._warp_constants(h, w, dev, dt)
        rot = kornia.geometry.transform.get_rotation_matrix2d(center.expand(b, 2), angle,
                                                              torch.ones(b, 2, device=dev, dtype=dt))
        m[:, :2] = torch.where(is_op["rotate"].view(-1, 1, 1), rot, m[:, :2])
        return kornia.geometry.transform.warp_affine(x, m[:, :2], (h, w), mode="bilinear", padding_mode="fill",
                                                     align_corners=True, fill_value=fill)


def random_erase(x: torch.Tensor, prob: float, mode: str, gen: torch.Generator, attempts: int = 10) -> torch.Tensor:
    """timm's ``RandomErasing(prob, mode, count=1)`` per image on a normalised batch (B, C, H, W)."""
    b, c, h, w = x.shape
    dev = x.device
    area = h * w * (0.02 + (1 / 3 - 0.02) * torch.rand(attempts, b, generator=gen, device=dev))
    log_lo, log_hi = math.log(0.3), math.log(1 / 0.3)
    ratio = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(attempts, b, generator=gen, device=dev))
    eh, ew = torch.round(torch.sqrt(area * ratio)), torch.round(torch.sqrt(area / ratio))
    fits = (eh < h) & (ew < w)
    first = fits.to(torch.uint8).argmax(0, keepdim=True)  # the first try that fits
    eh, ew = eh.gather(0, first)[0], ew.gather(0, first)[0]
    top = torch.floor(torch.rand(b, generator=gen, device=dev) * (h - eh + 1))
    left = torch.floor(torch.rand(b, generator=gen, device=dev) * (w - ew + 1))
    erase = (torch.rand(b, generator=gen, device=dev) < prob) & fits.any(0)
    rows = torch.arange(h, device=dev).view(1, h, 1)
    cols = torch.arange(w, device=dev).view(1, 1, w)
    box = ((rows >= top.view(-1, 1, 1)) & (rows < (top + eh).view(-1, 1, 1)) & (cols >= left.view(-1, 1, 1))
           & (cols < (left + ew).view(-1, 1, 1)) & erase.view(-1, 1, 1))
    if mode == "pixel":
        fill = torch.randn(x.shape, generator=gen, device=dev, dtype=x.dtype)
    elif mode == "rand":
        fill = torch.randn((b, c, 1, 1), generator=gen, device=dev, dtype=x.dtype).expand_as(x)
    else:
        fill = torch.zeros((), device=dev, dtype=x.dtype)
    return torch.where(box.unsqueeze(1), fill, x)


def mix_batch(x: torch.Tensor, rng: np.random.Generator, mixup: float, cutmix: float, prob: float,
              switch_prob: float) -> tuple[torch.Tensor, float]:
    """timm ``Mixup`` (batch mode) of ``x`` with ``x.flip(0)``; returns (images, lambda). lambda = 1: unmixed.

    The targets are ``lam * y + (1 - lam) * y.flip(0)`` (each label-smoothed); the loss takes them apart.
    Scalars come from a host NumPy generator (as timm's do), so nothing is read back from the device.
    """
    if not ((mixup > 0 or cutmix > 0) and rng.random() < prob):
        return x, 1.0
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < switch_prob)
    alpha = cutmix if use_cutmix else mixup
    lam = float(rng.beta(alpha, alpha))
    if not use_cutmix:
        return x * lam + x.flip(0) * (1 - lam), lam
    h, w = x.shape[-2:]
    cut = math.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
    y0, y1 = int(np.clip(cy - ch // 2, 0, h)), int(np.clip(cy + ch // 2, 0, h))
    x0, x1 = int(np.clip(cx - cw // 2, 0, w)), int(np.clip(cx + cw // 2, 0, w))
    x = x.clone()
    x[..., y0:y1, x0:x1] = x.flip(0)[..., y0:y1, x0:x1]
    return x, 1 - (y1 - y0) * (x1 - x0) / (h * w)  # lambda corrected to the pasted area


def repeated_order(n: int, repeats: int, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """One epoch's sample order: a permutation of ``n`` images, each repeated ``repeats`` times in a row, cut to
    ``n`` samples (so an epoch sees about n / repeats distinct images, each ``repeats`` times)."""
    order = torch.randperm(n, generator=gen, device=device)
    return order if repeats <= 1 else order.repeat_interleave(repeats)[:n]
