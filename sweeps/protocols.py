"""Training protocols: where a study runs and how. A sweep is (study, protocol).

A protocol is a dataset, a preset, a data budget and a training recipe: a named base recipe
(``lightning_modules.recipe.RECIPES``) plus the fields this protocol changes, each with the reason. The
description is generated from those fields, so it cannot claim what the recipe does not do. Adding a protocol
(e.g. a calibrated ``cpu`` one) is one entry in ``PROTOCOLS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lightning_modules.recipe import RECIPES, Recipe, describe, recipe_fields

#: Fields of a protocol that are not the recipe and can be overridden on the command line.
DATA_FIELDS = ("train_subset", "eval_subset", "val_size", "data_seed", "device", "precision", "image_size",
               "classes", "devices")
#: Data fields left out of the study name at these values, so studies made before the field keep their names.
_UNNAMED_AT = {"precision": "auto", "image_size": None, "classes": None, "devices": 1}


@dataclass(frozen=True)
class Protocol:
    """Everything about a trial except the model row and the trial seed."""

    name: str
    purpose: str  # where it runs and what it is for; the rest of the description is generated
    dataset: str  # 'cifar10' | 'cifar100' | 'imagefolder' (any train/<class>/, val/<class>/ tree: --data-dir)
    preset: str  # hiremlp preset the study rows override
    base_recipe: str  # a name in lightning_modules.recipe.RECIPES
    changes: Mapping[str, Any] = field(default_factory=dict)  # recipe fields this protocol sets differently
    why: Mapping[str, str] = field(default_factory=dict)  # field -> the reason for its change
    train_subset: int | None = None  # None: the full training split
    eval_subset: int | None = None  # None: the full validation / test split
    val_size: int = 5000
    data_seed: int = 0  # draws the evaluation images; the same for every trial, whatever its seed
    device: str = "auto"  # 'auto' | 'cpu' | 'cuda'
    # 'auto': bf16-mixed on a GPU, fp32 on a CPU; 'bf16-mixed' on a CPU with AMX trains cifar_tiny ~1.6x faster
    precision: str = "auto"
    image_size: int | None = None  # imagefolder: training size in px (CIFAR: always 32)
    classes: str | None = None  # imagefolder: None (all), "N" (the first N, sorted) or a class list file
    devices: int = 1  # processes (GPUs) per trial, Lightning DDP; recipe.batch_size is the global batch

    def __post_init__(self) -> None:
        if self.base_recipe not in RECIPES:
            raise ValueError(f"base_recipe={self.base_recipe!r} does not exist; allowed: {', '.join(RECIPES)}")
        self.recipe  # noqa: B018 - validates the changes now, with the field names in the error

    @property
    def recipe(self) -> Recipe:
        """The recipe this protocol trains with: the base recipe with ``changes``."""
        return RECIPES[self.base_recipe].replace(**dict(self.changes))

    def deviations(self) -> dict[str, tuple[Any, Any]]:
        """``{field: (base recipe's value, this protocol's)}``."""
        return self.recipe.differences(RECIPES[self.base_recipe])

    @property
    def description(self) -> str:
        """Generated from the fields: purpose, data, which recipe and every way this protocol departs from it."""
        n_train = f"{self.train_subset:,} training images" if self.train_subset else "the full training split"
        n_eval = f", {self.eval_subset:,} validation and test images" if self.eval_subset else ""
        size = f" at {self.image_size} px" if self.image_size else ""
        classes = ""
        if self.classes:
            which = f"the first {self.classes}" if self.classes.isdigit() else f"those listed in {self.classes}"
            classes = f" ({which} classes)"
        devices = f", {self.devices} devices per trial (DDP)" if self.devices > 1 else ""
        text = f"{self.purpose} Preset {self.preset}{size} on {self.dataset}{classes}, {n_train}{n_eval}{devices}. "
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
        return {"name": self.name, "dataset": self.dataset, "preset": self.preset, "base_recipe": self.base_recipe,
                **{k: getattr(self, k) for k in DATA_FIELDS}}

    def spec(self) -> dict[str, Any]:
        """What defines the sweep's study name: data, budget and recipe (not the description or the device)."""
        out = {k: v for k, v in self.record().items() if k not in ("device", "base_recipe")
               and not (k in _UNNAMED_AT and v == _UNNAMED_AT[k])}
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
            dataset="cifar10", preset="smoke", base_recipe="paper",
            changes=dict(epochs=3, batch_size=64, lr=2e-3, lr_batch=64, warmup_epochs=0.0, cooldown_epochs=0,
                         **_OFF),
            why=_each({
                "epochs": "minutes on a CPU",
                "batch_size": "enough steps per epoch on 2,000 images",
                ("lr", "lr_batch"): "a 0.3 M-parameter model has 3 epochs to learn",
                ("warmup_epochs", "cooldown_epochs"): "3 epochs leave no room for them",
                tuple(_OFF): "regularisation cannot pay off in 3 epochs on 2,000 images",
            }),
            train_subset=2000, eval_subset=500, val_size=1000, device="cpu",
        ),
        Protocol(
            name="cpu",
            purpose="A CPU-only machine's measurement (2 cores: about 4 minutes a trial): large effects only; "
                    "the report states the smallest difference its seeds could detect.",
            dataset="cifar10", preset="smoke", base_recipe="paper",
            changes=dict(epochs=6, batch_size=128, lr=2e-3, lr_batch=128, warmup_epochs=1.0, cooldown_epochs=0,
                         **_OFF),
            why=_each({
                "epochs": "a table of 4 rows x 3 seeds in about an hour on 2 cores",
                "batch_size": "fewer, larger steps run faster on a CPU",
                ("lr", "lr_batch"): "a short run of a 0.34 M-parameter model: a higher peak lr than the paper's",
                "warmup_epochs": "shortened with the run",
                "cooldown_epochs": "no room in 6 epochs",
                tuple(_OFF): "regularisation does not pay off in 6 epochs on 10,000 images",
            }),
            train_subset=10_000, eval_subset=5000, val_size=5000, device="cpu",
        ),
        Protocol(
            name="cifar10",
            purpose="One GPU: CIFAR-10 at 32 px.",
            dataset="cifar10", preset="cifar_small", base_recipe="paper",
            changes=dict(epochs=100, batch_size=512, warmup_epochs=5.0),
            why=_each({
                "epochs": "a one-GPU CIFAR budget; the paper's 300 are for ImageNet",
                "batch_size": "one GPU; the peak lr follows by the paper's linear rule",
                "warmup_epochs": "shortened with the run",
            }),
        ),
        Protocol(
            name="cifar100",
            purpose="One GPU: CIFAR-100 at 32 px (downloads CIFAR-100 with --download).",
            dataset="cifar100", preset="cifar_small", base_recipe="paper",
            changes=dict(epochs=200, batch_size=256, warmup_epochs=10.0),
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
            dataset="imagefolder", preset="small", base_recipe="paper", val_size=10_000, image_size=224,
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


def with_overrides(protocol: Protocol, **overrides: Any) -> Protocol:
    """The protocol with overrides of recipe or data fields (None values are ignored); ValueError on a bad one."""
    given = {k: v for k, v in overrides.items() if v is not None}
    unknown = sorted(set(given) - set(recipe_fields()) - set(DATA_FIELDS))
    if unknown:
        raise ValueError(f"unknown protocol field {unknown[0]!r}; allowed: "
                         f"{', '.join((*recipe_fields(), *DATA_FIELDS))}")
    recipe = {k: v for k, v in given.items() if k in recipe_fields()}
    out = dataclasses.replace(protocol, changes={**protocol.changes, **recipe},
                              **{k: v for k, v in given.items() if k in DATA_FIELDS})
    for k in ("train_subset", "eval_subset", "devices"):
        if getattr(out, k) is not None and getattr(out, k) < 1:
            raise ValueError(f"{k}={getattr(out, k)!r} is not allowed: an integer >= 1")
    if out.image_size is not None and (out.dataset != "imagefolder" or out.image_size < 8):
        raise ValueError(f"image_size={out.image_size!r} is not allowed: an integer >= 8, for an imagefolder "
                         f"protocol (CIFAR trains at 32 px)")
    if out.classes is not None and out.dataset != "imagefolder":
        raise ValueError(f"classes={out.classes!r} is for an imagefolder protocol, not {out.dataset}")
    if out.recipe.batch_size % out.devices:
        raise ValueError(f"batch_size={out.recipe.batch_size} (the global batch) does not divide over "
                         f"devices={out.devices}")
    return out
