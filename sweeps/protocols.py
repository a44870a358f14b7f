"""Training protocols: where a study runs and how. A sweep is (study, protocol).

A protocol is a dataset, a preset, a data budget and a training recipe: a named base recipe
(``lightning_modules.recipe.RECIPES``) plus the fields this protocol changes, each with the reason. The
description is generated from those fields, so it cannot claim what the recipe does not do. Adding a protocol
(e.g. a calibrated ``cpu`` one) is one entry in ``PROTOCOLS``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightning_modules.recipe import RECIPES, describe
from lightning_modules.run_config import PROTOCOL_FIELDS, RunConfig, field_default


@dataclass(frozen=True)
class Protocol:
    """Everything about a trial except the model row and the trial seed: a ``RunConfig`` on a base recipe."""

    name: str
    purpose: str  # where it runs and what it is for; the rest of the description is generated
    base_recipe: str  # a name in lightning_modules.recipe.RECIPES
    # RunConfig fields (dataset, preset, data budget, device) and recipe fields this protocol sets
    changes: Mapping[str, Any] = field(default_factory=dict)
    why: Mapping[str, str] = field(default_factory=dict)  # recipe field -> the reason for its change

    def __post_init__(self) -> None:
        if self.base_recipe not in RECIPES:
            raise ValueError(f"base_recipe={self.base_recipe!r} does not exist; allowed: {', '.join(RECIPES)}")
        self.config  # noqa: B018 - validates the changes now, with the field names in the error

    @functools.cached_property
    def config(self) -> RunConfig:
        """The run this protocol describes (a trial adds its row, seed and folder)."""
        return RunConfig.from_changes(self.base_recipe, dict(self.changes))

    def __getattr__(self, name: str) -> Any:
        """The protocol's run fields and recipe read as its own (``protocol.train_subset``, ``protocol.recipe``)."""
        if name in PROTOCOL_FIELDS or name == "recipe":
            return getattr(self.config, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def with_changes(self, **changes: Any) -> Protocol:
        """This protocol with more changes (None values are ignored); ValueError on an unknown field or a bad value."""
        given = {k: v for k, v in changes.items() if v is not None}
        for k in given:
            if k not in PROTOCOL_FIELDS and k not in RECIPES[self.base_recipe].to_flat():
                raise ValueError(f"unknown protocol field {k!r}; allowed: "
                                 f"{', '.join((*RECIPES[self.base_recipe].to_flat(), *PROTOCOL_FIELDS))}")
        return dataclasses.replace(self, changes={**self.changes, **given})

    def deviations(self) -> dict[str, tuple[Any, Any]]:
        """``{field: (base recipe's value, this protocol's)}``."""
        return self.recipe.differences(RECIPES[self.base_recipe])

    @property
    def description(self) -> str:
        """Generated from the fields: purpose, data, which recipe and every way this protocol departs from it."""
        c = self.config
        n_train = f"{c.train_subset:,} training images" if c.train_subset else "the full training split"
        n_eval = f", {c.eval_subset:,} validation and test images" if c.eval_subset else ""
        if c.test_subset:
            n_eval = f", {c.eval_subset or c.val_size:,} validation images, {c.test_subset:,} test images"
        size = f" at {c.image_size} px" if c.image_size else ""
        classes = ""
        if c.classes:
            which = f"the first {c.classes}" if c.classes.isdigit() else f"those listed in {c.classes}"
            classes = f" ({which} classes)"
        devices = f", {c.devices} devices per trial (DDP)" if c.devices > 1 else ""
        text = f"{self.purpose} Preset {c.preset}{size} on {c.dataset}{classes}, {n_train}{n_eval}{devices}. "
        devs = self.deviations()
        if not devs:
            text += f"Recipe '{self.base_recipe}' unchanged"
        else:
            by_reason: dict[str, list[str]] = {}
            for k, (old, new) in devs.items():
                by_reason.setdefault(self.why.get(k, "override"), []).append(
                    f"{k} {_fmt(new)} ({self.base_recipe} {_fmt(old)})")
            text += f"Recipe '{self.base_recipe}' except: " + "; ".join(
                f"{', '.join(changes)}: {why}" for why, changes in by_reason.items())
        return text + f". Trains with: {describe(self.recipe)}."

    def record(self) -> dict[str, Any]:
        """What a trial stores about its protocol besides the recipe (Optuna user attrs, results.csv)."""
        return {"name": self.name, "base_recipe": self.base_recipe,
                **{k: getattr(self.config, k) for k in PROTOCOL_FIELDS}}

    def spec(self) -> dict[str, Any]:
        """What defines the sweep's study name: data, budget and recipe (not the description or the device).
        A field declared ``named=False`` is left out at its default, so studies named before it existed keep
        their names."""
        unnamed = {f.name for f in dataclasses.fields(RunConfig) if not f.metadata.get("named", True)}
        out = {k: v for k, v in self.record().items() if k not in ("device", "base_recipe")
               and not (k in unnamed and v == field_default(k))}
        out["recipe"] = self.recipe.spec()
        return out


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _each(reasons: Mapping[tuple[str, ...] | str, str]) -> dict[str, str]:
    """``{(field, field): reason}`` -> ``{field: reason}``."""
    out = {}
    for keys, why in reasons.items():
        for k in (keys,) if isinstance(keys, str) else keys:
            out[k] = why
    return out


_OFF = dict(label_smoothing=0.0, drop_path=0.0, mixup=0.0, cutmix=0.0, randaug_ops=0, erase_prob=0.0,
            repeated_aug=1)

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            name="smoke",
            purpose="CPU in minutes: a pipeline check (CI runs it), not a measurement.",
            base_recipe="paper",
            changes=dict(preset="smoke", train_subset=2000, eval_subset=500, val_size=1000, device="cpu",
                         epochs=3, batch_size=64, lr=2e-3, lr_batch=64, warmup_epochs=0.0, cooldown_epochs=0,
                         **_OFF),
            why=_each({
                "epochs": "minutes on a CPU",
                "batch_size": "enough steps per epoch on 2,000 images",
                ("lr", "lr_batch"): "a 0.3 M-parameter model has 3 epochs to learn",
                ("warmup_epochs", "cooldown_epochs"): "3 epochs leave no room for them",
                tuple(_OFF): "regularisation cannot pay off in 3 epochs on 2,000 images",
            }),
        ),
        Protocol(
            name="cpu",
            purpose="A CPU-only machine's measurement (2 cores: about 4 minutes a trial): large effects only; "
                    "the report states the smallest difference its seeds could detect.",
            base_recipe="paper",
            changes=dict(preset="smoke", train_subset=10_000, eval_subset=5000, val_size=5000, device="cpu",
                         epochs=6, batch_size=128, lr=2e-3, lr_batch=128, warmup_epochs=1.0, cooldown_epochs=0,
                         **_OFF),
            why=_each({
                "epochs": "a table of 4 rows x 3 seeds in about an hour on 2 cores",
                "batch_size": "fewer, larger steps run faster on a CPU",
                ("lr", "lr_batch"): "a short run of a 0.34 M-parameter model: a higher peak lr than the paper's",
                "warmup_epochs": "shortened with the run",
                "cooldown_epochs": "no room in 6 epochs",
                tuple(_OFF): "regularisation does not pay off in 6 epochs on 10,000 images",
            }),
        ),
        Protocol(
            name="cifar10",
            purpose="One GPU: CIFAR-10 at 32 px.",
            base_recipe="paper",
            changes=dict(preset="cifar_small", epochs=100, batch_size=512, warmup_epochs=5.0),
            why=_each({
                "epochs": "a one-GPU CIFAR budget; the paper's 300 are for ImageNet",
                "batch_size": "one GPU; the peak lr follows by the paper's linear rule",
                "warmup_epochs": "shortened with the run",
            }),
        ),
        Protocol(
            name="cifar100",
            purpose="One GPU: CIFAR-100 at 32 px (downloads CIFAR-100 with --download).",
            base_recipe="paper",
            changes=dict(dataset="cifar100", preset="cifar_small", epochs=200, batch_size=256, warmup_epochs=10.0),
            why=_each({
                "epochs": "a one-GPU CIFAR budget; the paper's 300 are for ImageNet",
                "batch_size": "500 images per class: more steps per epoch; the peak lr follows by the linear rule",
                "warmup_epochs": "shortened with the run",
            }),
        ),
        Protocol(
            name="imagenet",
            purpose="The paper's own setting: an ImageFolder tree (ImageNet-1k; --classes 100 or a class list file "
                    "for an ImageNet-100-style subset) at 224 px, evaluated at resize 256 / centre crop 224 on the "
                    "tree's val/ (the reported test set), with 10,000 training images held out for per-epoch "
                    "validation; the paper trained on 8 GPUs (--devices 8: global batch 1024 = 8 x 128).",
            base_recipe="paper", changes=dict(dataset="imagefolder", preset="small", val_size=10_000, image_size=224),
        ),
    )
}


def get_protocol(name: str) -> Protocol:
    """The protocol called `name`; ValueError listing the allowed names otherwise."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ValueError(f"unknown protocol {name!r}; allowed: {', '.join(PROTOCOLS)}") from None


def default_protocol_name(cuda_available: bool) -> str:
    """A GPU gets the cifar10 protocol; a CPU-only machine the cpu protocol, which resolves large effects
    (`smoke` is the few-minute pipeline check, asked for by name)."""
    return "cifar10" if cuda_available else "cpu"
