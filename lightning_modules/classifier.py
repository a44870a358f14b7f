"""The LightningModule: a Hire-MLP built from flat hparams plus the CIFAR training recipe.

Every hparam is a primitive, so the logged config alone rebuilds the run's model
(``HireMLPClassifier(**hparams)``). Per-step work stays on the device: losses and accuracies are summed into
device tensors and read once per epoch, so the only host syncs are the epoch summaries and an occasional
divergence check.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

import hiremlp

from .distributed import all_reduce_sum
from .recipe import Recipe, recipe_fields

__all__ = ["RUN_OPTIONS", "DivergedError", "HireMLPClassifier"]

#: Hparams of the module that are not recipe fields: how the arithmetic runs, not what is trained.
RUN_OPTIONS: dict[str, Any] = dict(channels_last=False, compile=False)
#: Recipe fields the data side or the model config applies; the module does not keep them.
_NOT_MODULE = ("drop_path",)

_DIVERGENCE_CHECK_EVERY = 50  # steps; a host sync this rarely costs nothing


class DivergedError(RuntimeError):
    """The training loss became NaN or infinite; the sweep records the trial as failed with this message."""


class HireMLPClassifier(pl.LightningModule):
    """Hire-MLP image classifier. Accepts the model's ``HireMLPConfig.to_flat()`` keys, ``Recipe`` fields (all but
    ``drop_path``, which is the model's ``drop_path_rate``) and ``RUN_OPTIONS``; missing ones take their defaults.

    Logs per epoch: ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc`` (percent; the pruning callback
    reads ``val_acc``), ``lr``; after ``trainer.test``: ``test_loss``, ``test_acc``. Val/test loss is the plain
    cross-entropy (no smoothing), so it is comparable across recipes.
    """

    def __init__(self, **hparams: Any) -> None:
        super().__init__()
        options = {k: hparams.pop(k, v) for k, v in RUN_OPTIONS.items()}
        keep = [k for k in recipe_fields() if k not in _NOT_MODULE]
        self.recipe = Recipe().replace(**{k: hparams.pop(k) for k in keep if k in hparams})  # validated there
        model_cfg = hiremlp.HireMLPConfig.from_flat(hparams)  # ValueError on unknown or bad keys
        recipe = {k: v for k, v in dataclasses.asdict(self.recipe).items() if k in keep}
        self.save_hyperparameters({**model_cfg.spec(), **recipe, **options})  # a Hire model's: as before mixers
        self.model = hiremlp.build_model(model_cfg)
        if options["channels_last"]:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False).eval() if self.recipe.ema else None
        # compiled forward kept out of the module tree so state_dict keys stay those of the plain model
        self.__dict__["_forward"] = torch.compile(self.model) if options["compile"] else self.model
        self._sums: dict[str, torch.Tensor] = {}
        self._reduced: set[str] = set()  # sums already all-reduced over the ranks this epoch
        self._test_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []  # (predicted class, label) per batch
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
        """Sum loss*n, correct and n on the device; no host sync per step (``torch.full`` fills on the device,
        where ``torch.tensor(..., device=cuda)`` copies from the host and waits)."""
        n = torch.full((), float(len(y)), device=loss.device)
        stats = torch.stack([loss.detach().float() * n, (logits.argmax(-1) == y).sum().float(), n])
        self._sums[prefix] = self._sums[prefix] + stats if prefix in self._sums else stats

    def epoch_stats(self, prefix: str, reduce: bool = True) -> dict[str, float]:
        """Mean loss and accuracy (percent) of the running epoch for 'train' | 'val' | 'test'.

        Under data-parallel training the first call of an epoch all-reduces the sums of every rank (so the
        numbers are global, not this rank's shard); every rank makes the same calls in the same hooks.
        ``reduce=False`` reads this rank's sums as they are, for a caller that runs on one rank only (the
        progress bar): a collective there would wait for ranks that never enter it.
        """
        if (reduce and self._trainer is not None and self.trainer.world_size > 1
                and prefix not in self._reduced):
            local = self._sums.get(prefix, torch.zeros(3, device=self.device))  # a rank may have had no batch
            self._sums[prefix] = all_reduce_sum(local)
            self._reduced.add(prefix)
        if prefix not in self._sums or self._sums[prefix][2] == 0:
            return {f"{prefix}_loss": math.nan, f"{prefix}_acc": math.nan}
        loss_sum, correct, n = self._sums[prefix].tolist()
        return {f"{prefix}_loss": loss_sum / n, f"{prefix}_acc": 100.0 * correct / n}

    def _check_finite(self) -> None:
        if "train" in self._sums and not math.isfinite(self._sums["train"][0].item()):
            raise DivergedError(f"training loss became non-finite in epoch {self.current_epoch} "
                                f"(by step {self.global_step}, lr {self.current_lr():.3g})")

    def current_lr(self) -> float:
        return self.optimizers().param_groups[0]["lr"] if self._trainer is not None else self.recipe.lr_at(0)

    # ------------------------------------------------------------------------------------------ steps
    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        """Cross-entropy with label smoothing; a mixed batch (x, y, partner, lam) is scored against
        ``lam * y + (1 - lam) * partner`` (timm's mixed, smoothed soft targets: CE is linear in the target)."""
        x, y = batch[0], batch[1]
        logits = self._forward(x)
        loss = F.cross_entropy(logits, y, label_smoothing=self.recipe.label_smoothing)
        if len(batch) == 4:
            partner, lam = batch[2], float(batch[3])
            if lam < 1.0:
                loss = lam * loss + (1 - lam) * F.cross_entropy(logits, partner,
                                                                label_smoothing=self.recipe.label_smoothing)
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
        decay = min(self.recipe.ema, (1 + step) / (10 + step))
        for e, p in zip(self.ema_model.parameters(), self.model.parameters(), strict=True):
            e.lerp_(p.detach(), 1 - decay)
        for e, b in zip(self.ema_model.buffers(), self.model.buffers(), strict=True):
            e.copy_(b)

    def _eval_step(self, prefix: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        model = self.eval_model if self.ema_model is not None else self._forward
        logits = model(x)
        self._accumulate(prefix, F.cross_entropy(logits, y), logits, y)
        if prefix == "test":  # kept on the device until asked for
            self._test_outputs.append((logits.argmax(-1), y))

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._eval_step("test", batch)

    # ------------------------------------------------------------------------------------------ epoch hooks
    def on_train_epoch_start(self) -> None:
        self._sums.pop("train", None)
        self._reduced.discard("train")

    def on_validation_epoch_start(self) -> None:
        self._sums.pop("val", None)
        self._reduced.discard("val")

    def on_test_epoch_start(self) -> None:
        self._sums.pop("test", None)
        self._reduced.discard("test")
        self._test_outputs.clear()

    def test_predictions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(predicted class, label) per image of this rank's last test pass, in the loader's order (on CPU)."""
        if not self._test_outputs:
            empty = torch.zeros(0, dtype=torch.long)
            return empty, empty
        pred, label = (torch.cat(t).cpu() for t in zip(*self._test_outputs, strict=True))
        return pred, label

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
        return [{"params": decay, "weight_decay": self.recipe.weight_decay},
                {"params": no_decay, "weight_decay": 0.0}]

    def build_optimizer(self) -> torch.optim.Optimizer:
        """The recipe's optimiser over :meth:`param_groups` at its peak lr (also what ``benchmarks/bench.py`` times)."""
        r = self.recipe
        # one fused kernel per step instead of a dozen ops per tensor (CPU and CUDA both have it)
        fused = self.device.type in ("cpu", "cuda") or None
        if r.optimizer == "sgd":
            return torch.optim.SGD(self.param_groups(), lr=r.peak_lr, momentum=0.9, nesterov=True, fused=fused)
        return torch.optim.AdamW(self.param_groups(), lr=r.peak_lr, betas=(0.9, 0.999), eps=1e-8, fused=fused)

    def configure_optimizers(self) -> dict[str, Any]:
        """The recipe's optimiser at its peak lr, and its schedule (``Recipe.lr_at``) stepped every batch."""
        r = self.recipe
        peak = r.peak_lr
        opt = self.build_optimizer()
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        steps_per_epoch = total / max(self.trainer.max_epochs or 1, 1)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: r.lr_at(step / steps_per_epoch) / peak)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                 autocast_dtype: torch.dtype | None = None) -> dict[str, Any]:
        """Plain loss/accuracy (percent) of the evaluation weights over ``batches``, outside the Trainer; also the
        predicted class and label per image (``pred``, ``label``, CPU tensors), which the run keeps."""
        model, was_training = self.eval_model, self.eval_model.training
        model.eval()
        # summed on the device and read once: float64 adds of each batch's float32 sum, as the host's float did
        loss_sum = correct = None
        n = 0
        preds, labels = [], []
        try:
            for x, y in batches:
                with torch.autocast(x.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    logits = model(x).float()
                batch_loss = F.cross_entropy(logits, y, reduction="sum").double()
                pred_b = logits.argmax(-1)
                batch_correct = (pred_b == y).sum()
                loss_sum = batch_loss if loss_sum is None else loss_sum + batch_loss
                correct = batch_correct if correct is None else correct + batch_correct
                n += len(y)
                preds.append(pred_b)
                labels.append(y)
        finally:
            model.train(was_training)
        pred, label = (torch.cat(t).cpu() if t else torch.zeros(0, dtype=torch.long) for t in (preds, labels))
        if loss_sum is None:
            return {"loss": 0.0, "acc": 0.0, "pred": pred, "label": label}
        return {"loss": loss_sum.item() / n, "acc": 100.0 * correct.item() / n, "pred": pred, "label": label}
