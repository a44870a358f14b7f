"""The LightningModule: a Hire-MLP built from flat hparams plus the CIFAR training recipe.

Every hparam is a primitive, so the logged config alone rebuilds the run's model
(``HireMLPClassifier(**hparams)``). Per-step work stays on the device: losses and accuracies are summed into
device tensors and read once per epoch, so the only host syncs are the epoch summaries and an occasional
divergence check.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

import hiremlp

__all__ = ["RECIPE_DEFAULTS", "DivergedError", "HireMLPClassifier", "mix_batch"]

#: The training recipe: AdamW + linear warmup + per-step cosine, tuned for small MLPs on 32 px CIFAR.
RECIPE_DEFAULTS: dict[str, Any] = dict(
    lr=1e-3,  # peak AdamW lr at batch 256
    weight_decay=0.05,  # decoupled; not applied to 1-D params (norm weights, biases)
    beta1=0.9,
    beta2=0.999,
    warmup_epochs=5.0,  # linear warmup from ~0, then cosine to min_lr_ratio * lr, stepped every batch
    min_lr_ratio=0.0,
    label_smoothing=0.1,
    mixup=0.0,  # Beta(a, a) mixup alpha; 0 = off
    cutmix=0.0,  # Beta(a, a) cutmix alpha; 0 = off; with both on, each batch picks one at random
    ema=0.0,  # EMA decay of the weights used for evaluation; 0 = off
    channels_last=False,
    compile=False,
)

_DIVERGENCE_CHECK_EVERY = 50  # steps; a host sync this rarely costs nothing


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite; the sweep records the trial as failed with this message."""


def mix_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, mixup: float, cutmix: float,
              smoothing: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix on a whole batch (one lambda per batch, timm's 'batch' mode); returns soft targets."""
    target = F.one_hot(y, num_classes).float() * (1 - smoothing) + smoothing / num_classes
    use_cutmix = cutmix > 0 and (mixup <= 0 or torch.rand(()).item() < 0.5)
    alpha = cutmix if use_cutmix else mixup
    lam = float(torch.distributions.Beta(alpha, alpha).sample())
    perm = torch.arange(len(x) - 1, -1, -1, device=x.device)  # pair with the batch reversed (batch is shuffled)
    if use_cutmix:
        h, w = x.shape[-2:]
        rh, rw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        y0, y1, x0, x1 = max(cy - rh // 2, 0), min(cy + rh // 2, h), max(cx - rw // 2, 0), min(cx + rw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted
    else:
        x = x * lam + x[perm] * (1 - lam)
    return x, target * lam + target[perm] * (1 - lam)


class HireMLPClassifier(pl.LightningModule):
    """Hire-MLP image classifier. Accepts the model's ``HireMLPConfig.to_flat()`` keys plus ``RECIPE_DEFAULTS``.

    Logs per epoch: ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` (percent; the pruning callback
    reads ``val_acc``), ``lr``; after ``trainer.test``: ``test_loss``, ``test_acc``. Val/test loss is the plain
    cross-entropy (no smoothing), so it is comparable across recipes.
    """

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        recipe = {k: hparams.pop(k, v) for k, v in RECIPE_DEFAULTS.items()}
        model_cfg = hiremlp.HireMLPConfig.from_flat(hparams)  # ValueError on unknown or bad keys
        for k, v in recipe.items():
            if not isinstance(v, (int, float, str, bool)):
                raise ValueError(f"hparam {k}={v!r} must be a primitive (int, float, str, bool)")
        if recipe["ema"] and not 0 < recipe["ema"] < 1:
            raise ValueError(f"ema={recipe['ema']!r}: give a decay in (0, 1), or 0 to turn EMA off")
        self.save_hyperparameters({**model_cfg.to_flat(), **recipe})
        self.model = hiremlp.build_model(model_cfg)
        if recipe["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False).eval() if recipe["ema"] else None
        # compiled forward kept out of the module tree so state_dict keys stay those of the plain model
        self.__dict__["_forward"] = torch.compile(self.model) if recipe["compile"] else self.model
        self._sums: dict[str, torch.Tensor] = {}
        self.best_val_acc = float("nan")

    @property
    def model_config(self) -> hiremlp.HireMLPConfig:
        return self.model.config

    @property
    def eval_model(self) -> nn.Module:
        """The weights evaluation uses: the EMA copy when enabled."""
        return self.ema_model if self.ema_model is not None else self.model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.eval_model(x)

    # ------------------------------------------------------------------------------------------ bookkeeping
    def _accumulate(self, prefix: str, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Sum loss*n, correct and n on the device; no host sync per step."""
        n = torch.tensor(float(len(y)), device=loss.device)
        stats = torch.stack([loss.detach().float() * n, (logits.argmax(-1) == y).sum().float(), n])
        self._sums[prefix] = self._sums[prefix] + stats if prefix in self._sums else stats

    def epoch_stats(self, prefix: str) -> dict[str, float]:
        """Mean loss and accuracy (percent) of the running epoch for 'train' | 'val' | 'test'."""
        if prefix not in self._sums:
            return {f"{prefix}_loss": math.nan, f"{prefix}_acc": math.nan}
        loss_sum, correct, n = self._sums[prefix].tolist()
        return {f"{prefix}_loss": loss_sum / n, f"{prefix}_acc": 100.0 * correct / n}

    def _check_finite(self) -> None:
        if "train" in self._sums and not math.isfinite(self._sums["train"][0].item()):
            raise DivergedError(f"training loss became non-finite in epoch {self.current_epoch} "
                                f"(by step {self.global_step}, lr {self.current_lr():.3g})")

    def current_lr(self) -> float:
        return self.optimizers().param_groups[0]["lr"] if self._trainer is not None else self.hparams.lr

    # ------------------------------------------------------------------------------------------ steps
    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        h = self.hparams
        if h.mixup > 0 or h.cutmix > 0:
            x, target = mix_batch(x, y, self.model.config.num_classes, h.mixup, h.cutmix, h.label_smoothing)
            logits = self._forward(x)
            loss = F.cross_entropy(logits, target)
        else:
            logits = self._forward(x)
            loss = F.cross_entropy(logits, y, label_smoothing=h.label_smoothing)
        self._accumulate("train", loss, logits, y)
        return loss

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.ema_model is not None:
            self._update_ema()
        if (batch_idx + 1) % _DIVERGENCE_CHECK_EVERY == 0 or batch_idx + 1 == self.trainer.num_training_batches:
            self._check_finite()

    @torch.no_grad()
    def _update_ema(self) -> None:
        # warm the decay up (timm/airbench style) so short runs are not dominated by the initial weights
        step = self.global_step
        decay = min(self.hparams.ema, (1 + step) / (10 + step))
        for e, p in zip(self.ema_model.parameters(), self.model.parameters(), strict=True):
            e.lerp_(p.detach(), 1 - decay)
        for e, b in zip(self.ema_model.buffers(), self.model.buffers(), strict=True):
            e.copy_(b)

    def _eval_step(self, prefix: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        model = self.eval_model if self.ema_model is not None else self._forward
        logits = model(x)
        self._accumulate(prefix, F.cross_entropy(logits, y), logits, y)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    # ------------------------------------------------------------------------------------------ epoch hooks
    def on_train_epoch_start(self) -> None:
        self._sums.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        self._sums.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self._sums.pop("test", None)

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        stats = self.epoch_stats("val")
        if not self.best_val_acc >= stats["val_acc"]:  # also replaces the initial NaN
            self.best_val_acc = stats["val_acc"]
        self.log_dict(stats, prog_bar=True)

    def on_train_epoch_end(self) -> None:
        self._check_finite()
        self.log_dict({**self.epoch_stats("train"), "lr": self.current_lr()}, prog_bar=True)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.epoch_stats("test"))

    # ------------------------------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["best_val_acc"] = self.best_val_acc  # not a tensor, so not in the state dict

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.best_val_acc = float(checkpoint.get("best_val_acc", math.nan))

    # ------------------------------------------------------------------------------------------ optimizer
    def param_groups(self) -> list[dict[str, Any]]:
        """Weight decay on matrices/kernels only: decaying norm gains and biases just hurts (nanoGPT, timm).

        A bias is any 1-D parameter or one named ``*bias``: the inner-region MLP keeps its position bias as a
        ``(C, p)`` matrix (the released code's 1-D ``C*p`` conv bias), which must not be decayed either.
        """
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            if p.requires_grad:
                (no_decay if p.ndim <= 1 or name.endswith("bias") else decay).append(p)
        return [{"params": decay, "weight_decay": self.hparams.weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self) -> dict[str, Any]:
        h = self.hparams
        # one fused kernel per step instead of a dozen ops per tensor (CPU and CUDA both have it)
        fused = self.device.type in ("cpu", "cuda") or None
        opt = torch.optim.AdamW(self.param_groups(), lr=h.lr, betas=(h.beta1, h.beta2), fused=fused)
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        epochs = max(self.trainer.max_epochs or 1, 1)
        warmup = int(round(h.warmup_epochs * total / epochs))
        return {"optimizer": opt,
                "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(total, warmup,
                                                                                             h.min_lr_ratio)),
                                 "interval": "step"}}

    # ------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 autocast_dtype: torch.dtype | None = None) -> dict[str, float]:
        """Plain loss/accuracy (percent) of the evaluation weights over ``batches``, outside the Trainer."""
        model, was_training = self.eval_model, self.eval_model.training
        model.eval()
        loss_sum = correct = n = 0.0
        try:
            for x, y in batches:
                with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    logits = model(x).float()
                loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
                correct += (logits.argmax(-1) == y).sum().item()
                n += len(y)
        finally:
            model.train(was_training)
        return {"loss": loss_sum / max(n, 1), "acc": 100.0 * correct / max(n, 1)}


def lr_lambda(total: int, warmup: int, min_ratio: float):
    """Multiplier of the peak lr at each step: linear warmup to 1, then cosine down to ``min_ratio``."""

    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        t = min((step - warmup) / max(total - warmup, 1), 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    return f
