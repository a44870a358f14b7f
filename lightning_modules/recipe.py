"""The training recipe: every knob of training is a field of ONE frozen dataclass, validated where it is defined.

A sweep protocol names a recipe, ``RunConfig`` holds one, a run writes it to ``config.json``, the sweep stores it in
Optuna user attrs and ``results.csv``, and both command lines generate one option per field from this class.
Adding a knob is one ``_knob(...)`` line here plus the code that reads it.

``PAPER`` holds the released training script's values (ggjy/Hire-Wave-MLP.pytorch ``train.py``, DeiT-based,
bundled timm 0.4.13) and the released README's Hire-MLP commands, named as such. Where this harness implements a
knob differently from that script, the field's help says so.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["PAPER", "RECIPES", "Recipe", "get_recipe", "recipe_fields"]

OPTIMIZERS = ("adamw", "sgd")
LR_SCALINGS = ("linear", "sqrt", "none")
ERASE_MODES = ("pixel", "rand", "const")


_ALWAYS_ON = object()  # a knob with no off value


def _knob(default: Any, help: str, allowed: str, ok: Callable[[Any], bool], off: Any = _ALWAYS_ON) -> Any:
    """A recipe field: its help text, the rule its value must meet (and the words for it), and the value that
    turns it off, if any. Fields at their off value are left out of the sweep's spec
    hash, so adding a knob that defaults to off keeps the names of existing studies."""
    return field(default=default, metadata={"help": help, "allowed": allowed, "ok": ok, "off": off})


def _num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _prob(x: Any) -> bool:
    return _num(x) and 0 <= x <= 1


@dataclass(frozen=True)
class Recipe:
    """How a model is trained. The defaults are plain AdamW + cosine with every regulariser off."""

    epochs: int = _knob(100, "epochs of the cosine schedule (the run lasts epochs + cooldown_epochs)",
                        "an integer >= 1", lambda x: _int(x) and x >= 1)
    batch_size: int = _knob(256, "global batch (images per optimiser step)", "an integer >= 1",
                            lambda x: _int(x) and x >= 1)
    optimizer: str = _knob("adamw", "adamw (betas 0.9, 0.999, eps 1e-8) or sgd (momentum 0.9, Nesterov)",
                           "one of " + ", ".join(OPTIMIZERS), lambda x: x in OPTIMIZERS)
    lr: float = _knob(5e-4, "base learning rate at lr_batch images per step", "a number > 0",
                      lambda x: _num(x) and x > 0)
    lr_batch: int = _knob(512, "reference batch of lr: the peak lr is lr x scale(batch_size / lr_batch)",
                          "an integer >= 1", lambda x: _int(x) and x >= 1)
    lr_scaling: str = _knob("linear", "scale(r): linear r, sqrt sqrt(r), none 1 (the released code: linear "
                            "per 512)", "one of " + ", ".join(LR_SCALINGS), lambda x: x in LR_SCALINGS)
    weight_decay: float = _knob(0.05, "decoupled weight decay, not applied to norm weights or biases",
                                "a number >= 0", lambda x: _num(x) and x >= 0)
    warmup_epochs: float = _knob(0.0, "linear warmup from warmup_lr to the peak lr (stepped per batch)",
                                 "a number >= 0", lambda x: _num(x) and x >= 0, off=0.0)
    warmup_lr: float = _knob(1e-6, "lr at the start of the warmup", "a number >= 0",
                             lambda x: _num(x) and x >= 0)
    min_lr: float = _knob(1e-5, "lr at the end of the cosine and during the cooldown", "a number >= 0",
                          lambda x: _num(x) and x >= 0)
    cooldown_epochs: int = _knob(0, "epochs at min_lr after the cosine", "an integer >= 0",
                                 lambda x: _int(x) and x >= 0, off=0)
    label_smoothing: float = _knob(0.0, "label smoothing of the training loss", "a number in [0, 1)",
                                   lambda x: _num(x) and 0 <= x < 1, off=0.0)
    drop_path: float | None = _knob(None, "stochastic depth rate of the last block (None: the preset's)",
                                    "None or a number in [0, 1]", lambda x: x is None or _prob(x), off=None)
    mixup: float = _knob(0.0, "mixup Beta(a, a) alpha (0: off)", "a number >= 0",
                         lambda x: _num(x) and x >= 0, off=0.0)
    cutmix: float = _knob(0.0, "CutMix Beta(a, a) alpha (0: off)", "a number >= 0",
                          lambda x: _num(x) and x >= 0, off=0.0)
    mix_prob: float = _knob(1.0, "probability that a batch is mixed (mixup or CutMix)", "a number in [0, 1]",
                            _prob)
    mix_switch_prob: float = _knob(0.5, "with both on: probability a mixed batch uses CutMix",
                                   "a number in [0, 1]", _prob)
    randaug_ops: int = _knob(0, "RandAugment: ops applied per image, each with probability 0.5 (0: off)",
                             "an integer in [0, 15]", lambda x: _int(x) and 0 <= x <= 15, off=0)
    randaug_magnitude: float = _knob(9.0, "RandAugment magnitude on timm's 0-10 scale", "a number in [0, 10]",
                                     lambda x: _num(x) and 0 <= x <= 10)
    randaug_magnitude_std: float = _knob(0.5, "RandAugment: std of the per-op Gaussian magnitude noise",
                                         "a number >= 0", lambda x: _num(x) and x >= 0)
    erase_prob: float = _knob(0.0, "random erasing: probability per image (0: off)", "a number in [0, 1]",
                              _prob, off=0.0)
    erase_mode: str = _knob("pixel", "random erasing fill: pixel (per-pixel N(0,1)), rand (per channel), "
                            "const (0), all in normalised units", "one of " + ", ".join(ERASE_MODES),
                            lambda x: x in ERASE_MODES)
    repeated_aug: int = _knob(1, "repeated augmentation: each sampled image appears this many times in a row "
                              "(1: off; the released code's RASampler uses 3)", "an integer >= 1",
                              lambda x: _int(x) and x >= 1, off=1)
    ema: float = _knob(0.0, "EMA decay of the weights used for evaluation (0: off)", "a number in [0, 1)",
                       lambda x: _num(x) and 0 <= x < 1, off=0.0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in ("float", "float | None") and _int(value):
                object.__setattr__(self, f.name, value := float(value))
            if not f.metadata["ok"](value):
                raise ValueError(f"{f.name}={value!r} is not allowed: {f.metadata['allowed']}")
        if self.warmup_epochs > self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs:g} is longer than the run: epochs={self.epochs} "
                             f"(the lr would never reach its peak); lower warmup_epochs or raise epochs")

    # ------------------------------------------------------------------------------------------ derived values
    @property
    def total_epochs(self) -> int:
        """How many epochs the run lasts: the cosine's plus the cooldown (as the released script counts them)."""
        return self.epochs + self.cooldown_epochs

    @property
    def peak_lr(self) -> float:
        """The base lr scaled to this batch by the scaling rule."""
        ratio = self.batch_size / self.lr_batch
        return self.lr * {"linear": ratio, "sqrt": math.sqrt(ratio), "none": 1.0}[self.lr_scaling]

    def lr_at(self, epoch: float) -> float:
        """lr at a (fractional) epoch: linear warmup warmup_lr -> peak, cosine peak -> min_lr over ``epochs``
        (timm's CosineLRScheduler shape: the cosine's clock starts at 0, not after the warmup), then min_lr."""
        peak = self.peak_lr
        if epoch < self.warmup_epochs:
            return self.warmup_lr + (peak - self.warmup_lr) * epoch / self.warmup_epochs
        if epoch >= self.epochs:
            return self.min_lr
        return self.min_lr + 0.5 * (peak - self.min_lr) * (1 + math.cos(math.pi * epoch / self.epochs))

    @property
    def mixes(self) -> bool:
        return (self.mixup > 0 or self.cutmix > 0) and self.mix_prob > 0

    # ------------------------------------------------------------------------------------------ serialisation
    def replace(self, **changes: Any) -> Recipe:
        """A copy with ``changes``; an unknown field is a ValueError naming the allowed ones."""
        unknown = sorted(set(changes) - set(recipe_fields()))
        if unknown:
            raise ValueError(f"unknown recipe field {unknown[0]!r}; allowed: {', '.join(recipe_fields())}")
        return dataclasses.replace(self, **changes)

    def to_flat(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> Recipe:
        return cls().replace(**dict(flat))

    def spec(self) -> dict[str, Any]:
        """The fields that define a sweep's study name: all but those at their off value."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.metadata["off"] is _ALWAYS_ON or getattr(self, f.name) != f.metadata["off"]}

    def differences(self, base: Recipe) -> dict[str, tuple[Any, Any]]:
        """``{field: (base value, this value)}`` for every field that differs from ``base``."""
        return {n: (getattr(base, n), getattr(self, n)) for n in recipe_fields()
                if getattr(base, n) != getattr(self, n)}


def recipe_fields() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(Recipe))


#: The released training script and README (Hire-MLP-Small and -Large: no command is given, so the script's
#: default drop path 0.1; the paper's batch 1024, lr 1e-3 = 5e-4 x 1024 / 512).
PAPER = Recipe(
    epochs=300, batch_size=1024, optimizer="adamw", lr=5e-4, lr_batch=512, lr_scaling="linear",
    weight_decay=0.05, warmup_epochs=20.0, warmup_lr=1e-6, min_lr=1e-5, cooldown_epochs=10,
    label_smoothing=0.1, drop_path=0.1, mixup=0.8, cutmix=1.0, mix_prob=1.0, mix_switch_prob=0.5,
    randaug_ops=2, randaug_magnitude=9.0, randaug_magnitude_std=0.5, erase_prob=0.25, erase_mode="pixel",
    repeated_aug=3, ema=0.0,
)

RECIPES: dict[str, Recipe] = {
    "paper": PAPER,
    "paper-tiny": PAPER.replace(batch_size=2048, drop_path=0.0),  # README: 8 x 256, --drop-path 0.0
    "paper-base": PAPER.replace(batch_size=1024, drop_path=0.2),  # README: 8 x 128, --drop-path 0.2
    "plain": Recipe(),
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ValueError naming the allowed ones otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"recipe={name!r} does not exist; allowed: {', '.join(RECIPES)}") from None


def describe(recipe: Recipe) -> str:
    """One line generated from the fields: what this recipe actually switches on."""
    r = recipe
    parts = [f"{r.optimizer} lr {r.lr:g} per {r.lr_batch} ({r.lr_scaling}; peak {r.peak_lr:.3g} at batch "
             f"{r.batch_size})", f"{r.epochs} epochs cosine to {r.min_lr:g}"]
    if r.warmup_epochs:
        parts.append(f"warmup {r.warmup_epochs:g} from {r.warmup_lr:g}")
    if r.cooldown_epochs:
        parts.append(f"cooldown {r.cooldown_epochs}")
    parts.append(f"wd {r.weight_decay:g}")
    if r.label_smoothing:
        parts.append(f"label smoothing {r.label_smoothing:g}")
    if r.drop_path is not None:
        parts.append(f"drop path {r.drop_path:g}")
    if r.mixes:
        mix = [f"mixup {r.mixup:g}"] if r.mixup else []
        mix += [f"CutMix {r.cutmix:g}"] if r.cutmix else []
        parts.append(" + ".join(mix) + f" (prob {r.mix_prob:g}" +
                     (f", switch {r.mix_switch_prob:g})" if r.mixup and r.cutmix else ")"))
    if r.randaug_ops:
        parts.append(f"RandAugment n{r.randaug_ops} m{r.randaug_magnitude:g} mstd{r.randaug_magnitude_std:g}")
    if r.erase_prob:
        parts.append(f"random erasing {r.erase_prob:g} ({r.erase_mode})")
    if r.repeated_aug > 1:
        parts.append(f"repeated augmentation x{r.repeated_aug}")
    if r.ema:
        parts.append(f"EMA {r.ema:g}")
    return ", ".join(parts)
