"""``RunConfig``: the one declaration of a run's fields: their defaults, their help, their checks and their roles.

Every field says what it is for (``scope``): the ``model``, the ``data``, the ``system`` it runs on, the ``trial``
(its seed) or ``control`` (how the run is watched and kept: a checkpoint made under other values of these still
resumes). ``protocol=True`` marks the fields a sweep protocol may set: they are recorded with every trial
(``protocol.<field>`` in ``results.csv``) and name its Optuna study; a field added after studies were named says
``named=False`` and is left out of the name at its default, so older studies keep their names. Both command
lines (``lightning_modules.train`` and ``sweeps/run.py``) generate their options from these declarations, and a
sweep's protocols are changes to them (``sweeps/protocols.py``). Adding a knob is one field here plus its use.

No Lightning import here: a sweep's command line parses and checks a config before it imports Lightning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import hiremlp

from .recipe import PAPER, Recipe, get_recipe, recipe_fields

__all__ = ["DATASETS", "PROGRESS_MODES", "PROTOCOL_FIELDS", "RUN_CONTROL", "RunConfig", "change_fields"]

DATASETS = ("cifar10", "cifar100", "imagefolder")  # imagefolder: any train/<class>/, val/<class>/ tree
PROGRESS_MODES = ("auto", "bar", "lines", "off")
SCOPES = ("model", "data", "system", "trial", "control")


def knob(default: Any, help: str, scope: str, *, protocol: bool = False, named: bool = True,
         minimum: float | None = None, factory: Any = None) -> Any:
    """A RunConfig field with its help text, its roles (see the module docstring) and, for a number, the smallest
    value allowed (None stays allowed)."""
    assert scope in SCOPES, scope
    meta = {"help": help, "scope": scope, "protocol": protocol, "named": named, "minimum": minimum}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class RunConfig:
    """Everything one run depends on: the model, the data budget, the training ``recipe``, the seeds, the device.

    ``seed`` drives initialisation, the training subset, batch order and augmentation; ``data_seed`` alone picks the
    evaluation images (validation split, eval subsets), so runs with different seeds are scored on the same images.
    """

    preset: str = knob("cifar_tiny", "hiremlp preset the model overrides apply to", "model", protocol=True)
    model_overrides: dict[str, Any] = knob(None, "HireMLPConfig fields", "model", factory=dict)
    dataset: str = knob("cifar10", "cifar10, cifar100 or imagefolder (a train/<class>/, val/<class>/ tree)", "data",
                        protocol=True)
    data_dir: str | None = knob(None, "the dataset's folder (None: the first of $HIREMLP_DATA, "
                                "~/.cache/hiremlp/data, <repository>/data, <repository>/../shared/data that holds "
                                "it); imagefolder: the tree's root", "control")
    download: bool = knob(False, "download the dataset if it is missing", "control")
    recipe: Recipe = knob(PAPER, "the training recipe (the released training script's by default)", "model")
    train_subset: int | None = knob(None, "training images (None: the whole training split)", "data",
                                    protocol=True, minimum=1)
    eval_subset: int | None = knob(None, "validation and test images (None: the whole splits)", "data",
                                   protocol=True, minimum=1)
    test_subset: int | None = knob(None, "test images scored (None: as many as eval_subset, or the whole test "
                                   "split)", "data", protocol=True, named=False, minimum=1)
    val_size: int = knob(5000, "training images held out for per-epoch validation", "data", protocol=True,
                         minimum=0)
    data_seed: int = knob(0, "seed of the evaluation images: the same for every run, whatever its seed", "data",
                          protocol=True)
    image_size: int | None = knob(None, "imagefolder: training size in px (None: 224; CIFAR trains at 32)", "data",
                                  protocol=True, named=False)
    classes: str | None = knob(None, "imagefolder: None (all), N (the first N, sorted) or a class list file",
                               "data", protocol=True, named=False)
    workers: int | None = knob(None, "imagefolder: DataLoader workers per process (None: its CPUs, up to 8)",
                               "control")
    decoder: str = knob("auto", "imagefolder: image decoder, auto, pil or torchvision", "data")
    seed: int = knob(0, "initialisation, training subset, batch order and augmentation", "trial")
    device: str = knob("auto", "auto, cpu, cuda or cuda:N", "system", protocol=True)
    precision: str = knob("auto", "auto (bf16-mixed on a GPU, 32 on a CPU), 32 or bf16-mixed (faster on CPUs "
                          "with AMX)", "system", protocol=True, named=False)
    compile: bool = knob(False, "torch.compile the model", "system")
    channels_last: bool | str = knob("auto", "auto (on: measured faster on CPU too), true or false", "system")
    devices: int = knob(1, "processes (GPUs) per node, Lightning DDP; the recipe's batch size stays the global "
                        "batch", "system", protocol=True, named=False)
    num_nodes: int = knob(1, "nodes of a multi-node run", "system")
    eval_sizes: tuple[int, ...] = knob((), "extra test sizes after training, e.g. 24,28,32", "control")
    run_dir: str | None = knob(None, "the run's folder (None: runs/single/<UTC timestamp>)", "control")
    progress: str = knob("off", "auto (a bar on a terminal, a line per epoch otherwise), bar, lines or off",
                         "control")
    checkpoint_every_s: float = knob(60.0, "seconds of training between checkpoints (0: every epoch)", "control",
                                     minimum=0)
    keep_checkpoint: bool = knob(False, "keep checkpoints/last.ckpt after the run completes", "control")
    logger: str = knob("none", "none or a comma-separated list of csv, tensorboard, wandb, mlflow", "control")

    def __post_init__(self) -> None:
        if isinstance(self.progress, bool):  # the field used to be a flag
            self.progress = "auto" if self.progress else "off"
        if self.progress not in PROGRESS_MODES:
            raise ValueError(f"progress={self.progress!r}: expected one of {', '.join(PROGRESS_MODES)}")
        if str(self.logger).strip().lower() not in ("", "none"):
            from .loggers import parse_loggers  # imports Lightning: only when a logger is asked for

            parse_loggers(self.logger)  # ValueError for unknown names and missing packages, before any work
        if self.dataset not in DATASETS:
            raise ValueError(f"dataset={self.dataset!r}: expected one of {', '.join(DATASETS)}")
        if self.dataset != "imagefolder" and self.image_size not in (None, 32):
            raise ValueError(f"image_size={self.image_size!r}: CIFAR trains at 32 px (use eval_sizes to evaluate "
                             f"at others); image_size is for the imagefolder dataset")
        if self.image_size is not None and self.image_size < 8:
            raise ValueError(f"image_size={self.image_size!r} is not allowed: an integer >= 8")
        if self.classes is not None and self.dataset != "imagefolder":
            raise ValueError(f"classes={self.classes!r} is for the imagefolder dataset, not {self.dataset}")
        for name in ("devices", "num_nodes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r} is not allowed: an integer >= 1")
        if self.workers is not None and self.workers < 0:
            raise ValueError(f"workers={self.workers!r} is not allowed: an integer >= 0")
        if self.decoder not in ("auto", "pil", "torchvision"):
            raise ValueError(f"decoder={self.decoder!r}: expected auto, pil or torchvision")
        if not isinstance(self.recipe, Recipe):
            raise ValueError(f"recipe={self.recipe!r}: expected a lightning_modules.Recipe")
        if self.recipe.batch_size % (self.devices * self.num_nodes):
            raise ValueError(f"batch_size={self.recipe.batch_size} (the global batch) does not divide over "
                             f"devices x num_nodes = {self.devices * self.num_nodes} processes")
        if self.device not in ("auto", "cpu", "cuda") and not str(self.device).startswith("cuda:"):
            raise ValueError(f"device={self.device!r}: expected auto, cpu or cuda")
        self.precision = str(self.precision)
        if self.precision not in ("auto", "32", "32-true", "bf16-mixed"):
            raise ValueError(f"precision={self.precision!r}: expected auto, 32 or bf16-mixed")
        if self.channels_last not in ("auto", True, False):
            raise ValueError(f"channels_last={self.channels_last!r}: expected auto, true or false")
        self.eval_sizes = tuple(int(s) for s in self.eval_sizes)
        for f in dataclasses.fields(self):
            value, minimum = getattr(self, f.name), f.metadata.get("minimum")
            if minimum is not None and value is not None and value < minimum:
                raise ValueError(f"{f.name}={value!r} is not allowed: a number >= {minimum}")
        self.model_config(None)  # the preset, the overrides and the drop path, checked where they are combined
        if any(s < 1 for s in self.eval_sizes):
            raise ValueError(f"eval_sizes={','.join(map(str, self.eval_sizes))}: sizes must be positive integers "
                             f"(pixels), e.g. 24,28,32")

    def model_config(self, num_classes: int | None) -> hiremlp.HireMLPConfig:
        """The preset with ``model_overrides`` (and ``drop_path``) applied; ValueError on bad fields."""
        return hiremlp.row_config(self.preset, self.model_overrides, drop_path=self.recipe.drop_path,
                                  num_classes=num_classes)

    @property
    def train_image_size(self) -> int:
        """The size it trains at: CIFAR's 32 px, an ImageFolder's ``image_size`` (224 when unset)."""
        return (self.image_size or 224) if self.dataset == "imagefolder" else 32

    def with_changes(self, **changes: Any) -> RunConfig:
        """This config with run fields and recipe fields (flat names: ``epochs``, ``train_subset``) changed, checked
        as a whole; ValueError naming an unknown field and the allowed ones."""
        unknown = sorted(set(changes) - set(change_fields()))
        if unknown:
            raise ValueError(f"unknown run field {unknown[0]!r}; allowed: {', '.join(change_fields())}")
        recipe = {k: v for k, v in changes.items() if k in recipe_fields()}
        run = {k: v for k, v in changes.items() if k not in recipe_fields()}
        return dataclasses.replace(self, recipe=self.recipe.replace(**recipe) if recipe else self.recipe, **run)

    @classmethod
    def from_changes(cls, base_recipe: str, changes: dict[str, Any]) -> RunConfig:
        """``RunConfig()`` on recipe ``base_recipe`` with ``changes`` (see ``with_changes``)."""
        return cls(recipe=get_recipe(base_recipe)).with_changes(**changes)

    def budget(self) -> dict[str, Any]:
        """Which images the run uses: the fields that are ``lightning_modules.data_base.split_indices``' keywords."""
        from .data_base import SPLIT_FIELDS

        return {k: getattr(self, k) for k in SPLIT_FIELDS}

    def resolved(self) -> dict[str, Any]:
        """Device, precision and channels_last with 'auto' replaced by what the run actually uses."""
        from .datamodule import resolve_device

        dev = resolve_device(self.device)
        cuda = dev.type == "cuda"
        precision = ("bf16-mixed" if cuda else "32") if self.precision == "auto" else self.precision
        if precision == "32-true":
            precision = "32"
        channels_last = True if self.channels_last == "auto" else bool(self.channels_last)
        world = self.devices * self.num_nodes
        return {"device": str(dev), "precision": precision, "channels_last": channels_last, "world_size": world,
                "global_batch": self.recipe.batch_size, "per_device_batch": self.recipe.batch_size // world,
                "peak_lr": self.recipe.peak_lr}


def _fields_where(**meta: Any) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(RunConfig)
                 if all(f.metadata.get(k) == v for k, v in meta.items()))


#: fields that change how a run is watched or kept, not what it trains: a checkpoint made under other values resumes
RUN_CONTROL = frozenset(_fields_where(scope="control"))
#: fields a sweep protocol sets: recorded with each trial, and (see ``named``) in its study's name
PROTOCOL_FIELDS = _fields_where(protocol=True)


def change_fields() -> tuple[str, ...]:
    """The flat names ``with_changes`` takes: every run field but the recipe itself, then every recipe field."""
    return (*(f.name for f in dataclasses.fields(RunConfig) if f.name != "recipe"), *recipe_fields())


def field_default(name: str) -> Any:
    """A RunConfig field's default value."""
    f = next(f for f in dataclasses.fields(RunConfig) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]
