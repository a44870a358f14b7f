"""The paper's ablation tables (and a few of our own) as declarative data.

A `Study` is a list of `Row`s; each row is a set of `hiremlp.HireMLPConfig` overrides applied to a base preset.
Adding a study means adding one definition to `STUDIES`; `sweeps/` turns it into an Optuna grid or tuning study.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any, Literal

PAPER_SOURCE = "Hire-MLP-Small, ImageNet-1k top-1 (%), arXiv 2108.13341 v1 (30 Aug 2021), Tables 3-7"
"""Where every `Row.paper_top1` comes from. They are ImageNet numbers at 224 px: compare deltas, not levels."""


@dataclass(frozen=True)
class Row:
    """One line of an ablation table: a label, the model overrides, the paper's number (None if not in it) and
    the recipe fields the row changes (a row of a study file may: `label_smoothing = 0.1`)."""

    label: str
    overrides: Mapping[str, Any]
    paper_top1: float | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Param:
    """One hyperparameter of a tuning study, kept free of Optuna so `ablations` stays plain data."""

    kind: Literal["float", "int", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()


@dataclass(frozen=True)
class Study:
    """An ablation table (kind 'table': rows x seeds, no pruning) or a tuning study (kind 'tune': TPE + pruning)."""

    name: str
    description: str
    paper_table: str | None
    rows: tuple[Row, ...]
    default_row: str
    kind: Literal["table", "tune"] = "table"
    base_preset: str | None = None  # None: the protocol's preset
    eval_sizes: tuple[int, ...] = ()  # extra test input sizes, evaluated after training
    search_space: Mapping[str, Param] = field(default_factory=dict)  # tune only
    sampler: Mapping[str, Any] = field(default_factory=dict)  # TPESampler options (tune only)
    pruner: Mapping[str, Any] = field(default_factory=dict)  # MedianPruner options (tune only)
    n_trials: int = 0  # default trial budget (tune only)
    figures: tuple[str, ...] = ()  # extra report figures (functions of analysis.figures taking the summary)
    factors: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # a factorial study: (field, levels); rows = product
    source: str | None = None  # the file (or module:attr) a user's study came from

    def __post_init__(self) -> None:
        labels = [r.label for r in self.rows]
        if len(set(labels)) != len(labels):
            raise ValueError(f"study {self.name!r}: duplicate row labels in {labels}")
        if self.default_row not in labels:
            raise ValueError(f"study {self.name!r}: default row {self.default_row!r} not in {labels}")
        if self.kind == "tune" and not self.search_space:
            raise ValueError(f"study {self.name!r}: a 'tune' study needs a search_space")

    @property
    def labels(self) -> list[str]:
        return [r.label for r in self.rows]

    def row(self, label: str) -> Row:
        """The row called `label`; ValueError naming the allowed labels otherwise."""
        for r in self.rows:
            if r.label == label:
                return r
        raise ValueError(f"unknown row {label!r} for study {self.name!r}; allowed: {', '.join(self.labels)}")

    def level_of(self, label: str) -> tuple[int, ...]:
        """A factorial study's row as the index of its level in each factor (the cell of the design)."""
        r = self.row(label)
        values = {**r.overrides, **r.recipe}
        return tuple(levels.index(values[name]) for name, levels in self.factors)


def _square(*sizes: int) -> tuple[tuple[int, int], ...]:
    """Per-stage (h, w) region sizes with h == w, as in the paper's Table 3."""
    return tuple((p, p) for p in sizes)


def _steps(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split("-"))


# A row's s is the released code's per-stage step scale (`shift_steps`), not one shift per block: the official
# schedule shifts block i of a stage by (i % stride) * s with strides (2, 2, 3, 2), so stages 1, 2 and 4 alternate
# 0, s and stage 3 cycles 0, s, 2s. Table 3's "s = 1" is read the same way, as the released code reads it.
_REGION_TOP1 = {  # Table 3, all with s = (1,1,1,1)
    "2-2-2-2": 80.95, "3-2-2-2": 81.04, "3-3-2-2": 81.33, "3-3-3-2": 81.58, "3-3-3-3": 81.51,
    "4-3-3-2": 81.69, "4-3-3-3": 81.50, "4-4-3-3": 81.35, "5-4-3-3": 81.16,
}
_SHIFT_TOP1 = {"0-0-0-0": 81.06, "1-1-1-1": 81.53, "2-2-1-1": 81.78, "2-2-2-2": 81.46}  # Table 4
_PADDING_TOP1 = {"zero": 81.59, "circular": 81.78, "reflect": 81.36, "replicate": 81.42}  # Table 5
_PADDINGS = ("zero", "circular", "reflect", "replicate")
_PAPER_TEXT = {"norm": "layer", "fusion": "sum", "shift_schedule": "paper"}
_MIXERS = ("hire", "as_mlp", "vip", "cycle", "dwconv", "channel_only")  # hiremlp.config.MIXERS, as data


def _branch_rows() -> tuple[Row, ...]:
    """Every non-empty subset of the h, w and c branches, largest first."""
    subsets = [c for n in (3, 2, 1) for c in combinations("hwc", n)]
    return tuple(Row("".join(s), {"branches": s}) for s in subsets)


_STUDY_LIST = (
    Study(
        name="region_size",
        description=("How large the inner-region blocks of each stage should be (h = w per stage), with step scale "
                     "s = 1 in every stage as the released code reads it: blocks shift by 0, 1 (stage 3: 0, 1, 2)."),
        paper_table="Table 3",
        rows=tuple(
            Row(label, {"region_sizes": _square(*_steps(label)), "shift_steps": (1, 1, 1, 1)}, top1)
            for label, top1 in _REGION_TOP1.items()
        ),
        default_row="4-3-3-2",
    ),
    Study(
        name="shift_step",
        description=("How far the cross-region shift moves tokens: each row gives the per-stage step scale s of the "
                     "released schedule, block i shifting by (i % stride) * s (stages 1, 2, 4: 0, s; stage 3: "
                     "0, s, 2s); 0-0-0-0 removes cross-region mixing."),
        paper_table="Table 4",
        rows=tuple(Row(label, {"shift_steps": _steps(label)}, top1) for label, top1 in _SHIFT_TOP1.items()),
        default_row="2-2-1-1",
    ),
    Study(
        name="padding",
        description="Which padding mode fills a region that does not divide the feature map.",
        paper_table="Table 5",
        rows=tuple(Row(mode, {"padding": mode}, _PADDING_TOP1[mode]) for mode in _PADDINGS),
        default_row="circular",
    ),
    Study(
        name="components",
        description="How much each part of the Hire module (cross-region, inner-region, channel branch) contributes.",
        paper_table="Table 6",
        rows=(
            Row("full", {}, 81.78),
            Row("no-cross", {"cross_region": "none"}, 81.06),
            Row("no-inner", {"inner_region": False}, 79.81),
            Row("no-channel", {"branches": ("h", "w")}, 81.18),
        ),
        default_row="full",
    ),
    Study(
        name="cross_region",
        description="Whether regions should talk through a shift or through a ShuffleNet-style channel shuffle.",
        paper_table="Table 7",
        rows=(Row("shift", {"cross_region": "shift"}, 81.78), Row("shuffle", {"cross_region": "shuffle"}, 80.82)),
        default_row="shift",
    ),
    Study(
        name="fidelity",
        description="Whether the released code's choices (BN, reweighting, its shift schedule) beat the paper text's.",
        paper_table=None,
        rows=(
            Row("official", {}),
            Row("layer-norm", {"norm": "layer"}),
            Row("sum-fusion", {"fusion": "sum"}),
            Row("paper-schedule", {"shift_schedule": "paper"}),
            Row("paper-text", dict(_PAPER_TEXT)),
        ),
        default_row="official",
    ),
    Study(
        name="branches",
        description="Which of the height, width and channel branches the Hire module needs.",
        paper_table=None,
        rows=_branch_rows(),
        default_row="hwc",
    ),
    Study(
        name="mixers",
        description=("Whether Hire-MLP's token mixer beats AS-MLP's axial shift, ViP's Permute-MLP, CycleMLP's Cycle "
                     "FC, a 3x3 depthwise conv or no spatial mixing, in one network (stem, stages, channel MLP, "
                     "recipe shared)."),
        paper_table=None,
        rows=tuple(Row(m, {"mixer": m}) for m in _MIXERS),
        default_row="hire",
        figures=("accuracy_vs_macs",),
    ),
    Study(
        name="resolution",
        description=(
            "Whether accuracy is insensitive to the test input size (trained at 32 px), and which padding mode "
            "makes it so."
        ),
        paper_table=None,
        rows=tuple(Row(mode, {"padding": mode}) for mode in _PADDINGS),
        default_row="circular",
        eval_sizes=(24, 28, 32, 36, 40, 48),
    ),
    Study(
        name="recipe",
        description="Which optimiser and regularisation settings train the default model best in the budget.",
        paper_table=None,
        rows=(Row("default", {}),),
        default_row="default",
        kind="tune",
        search_space={
            "lr": Param("float", 1e-4, 5e-3, log=True),
            "weight_decay": Param("float", 0.0, 0.1),
            "drop_path": Param("float", 0.0, 0.3),
            "label_smoothing": Param("float", 0.0, 0.2),
            "epochs_scale": Param("categorical", choices=(0.5, 1.0)),  # budget: fraction of the protocol's epochs
        },
        sampler={"multivariate": True, "constant_liar": True, "n_startup_trials": 8},
        pruner={"n_startup_trials": 5, "warmup_fraction": 0.25},  # n_warmup_steps = fraction x epochs
        n_trials=30,
    ),
)

STUDIES: dict[str, Study] = {s.name: s for s in _STUDY_LIST}


def get_study(name: str) -> Study:
    """The study called `name`; ValueError listing the allowed names otherwise."""
    try:
        return STUDIES[name]
    except KeyError:
        raise ValueError(f"unknown study {name!r}; allowed: {', '.join(STUDIES)}") from None


def row_config(study: Study, label: str, preset: str = "smoke", *, drop_path: float | None = None,
               num_classes: int | None = None):
    """The `hiremlp.HireMLPConfig` of one row on `preset` (the study's own base preset wins), with the recipe's
    drop path and the dataset's classes when given (`hiremlp.row_config`: unknown fields and bad values raise)."""
    from hiremlp import row_config as build_row

    return build_row(study.base_preset or preset, study.row(label).overrides, drop_path=drop_path,
                     num_classes=num_classes)
