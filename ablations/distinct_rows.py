"""Whether a study's rows are different networks at the scale a protocol runs them (`hiremlp.mixing_plan`).

A row that is the same network as another at 32 px, or whose cross-region steps do nothing at 32 px while they
act at 224 px, is a row that protocol cannot measure. `sweeps/run.py --dry-run` prints `dry_run_text` before a
sweep is spent on it; `analysis` marks the same rows in the report.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence

from ablations.studies import Study, row_config

PAPER_PRESET = "small"  # the paper ablates Hire-MLP-Small at 224 px (v1 §4.2)
PAPER_IMAGE_SIZE = 224


def study_configs(study: Study, preset: str, labels: Iterable[str] | None = None) -> dict:
    """`hiremlp.HireMLPConfig` per row: the rows' overrides on `preset` (the study's own base preset wins)."""
    return {label: row_config(study, label, preset) for label in (labels or study.labels)}


def paper_configs(study: Study, labels: Iterable[str] | None = None) -> dict:
    """The same rows on the paper's model, to tell this protocol's degeneracies from the paper's own."""
    from hiremlp import row_config as build_row

    return {label: build_row(PAPER_PRESET, study.row(label).overrides) for label in (labels or study.labels)}


def check_study(study: Study, image_size: int, preset: str | None = None, labels: Sequence[str] | None = None,
                configs: Mapping | None = None) -> dict:
    """`hiremlp.mixing_plan.RowFinding` per row at `image_size`, for `configs` (default: the rows on `preset`).

    Differences are against the study's default row when it is among the rows checked.
    """
    from hiremlp.mixing_plan import compare_rows

    if configs is None:
        configs = study_configs(study, preset, labels)
    reference = paper_configs(study, [label for label in configs if label in study.labels])
    findings = compare_rows(configs, image_size, study.default_row, reference, PAPER_IMAGE_SIZE)
    return {label: _same_recipe_only(study, label, f) for label, f in findings.items()}


def _recipe(study: Study, label: str) -> dict:
    return dict(study.row(label).recipe) if label in study.labels else {}


def _same_recipe_only(study: Study, label: str, finding):
    """Rows with one network but different recipes (a study file's `label_smoothing = 0.1`) train differently:
    they are not "the same network" for the study."""
    same = tuple(o for o in finding.same_as if _recipe(study, o) == _recipe(study, label))
    return finding if same == finding.same_as else dataclasses.replace(finding, same_as=same)


def inert_text(steps: Sequence) -> str:
    """Inert steps grouped by stage and geometry: "stage 4 block 2 (h, w): shift 2 on 4 rows/columns, regions of 2"."""
    groups: dict[tuple, tuple[set, set]] = {}
    for s in steps:
        blocks, axes = groups.setdefault((s.stage, s.manner, s.step, s.length, s.region), (set(), set()))
        blocks.add(s.block)
        axes.add(s.axis)
    parts = []
    for (stage, manner, step, length, region), (blocks, axes) in sorted(groups.items()):
        b = sorted(blocks)
        parts.append(f"stage {stage} block{'s' if len(b) > 1 else ''} {','.join(map(str, b))} "
                     f"({', '.join(sorted(axes))}): {manner} {step} on {length} "
                     f"{'rows' if axes == {'h'} else 'columns' if axes == {'w'} else 'rows/columns'}, "
                     f"regions of {region}")
    return "; ".join(parts)


def same_network_groups(findings: Mapping) -> list[tuple[str, ...]]:
    """Rows that are one network, as groups of two or more, in the study's order."""
    groups, seen = [], set()
    for label, f in findings.items():
        if f.same_as and label not in seen:
            group = (label, *f.same_as)
            groups.append(group)
            seen.update(group)
    return groups


def row_marks(findings: Mapping, image_size: int) -> dict[str, list[str]]:
    """Per row, the sentences a report puts beside it (none for a row this protocol can measure)."""
    marks: dict[str, list[str]] = {}
    for label, f in findings.items():
        if f.same_as:
            marks.setdefault(label, []).append(
                f"same network as row{'s' if len(f.same_as) > 1 else ''} {', '.join(f.same_as)} at {image_size} px: "
                "this protocol cannot measure it")
        if f.inert_here_only:
            many = len({(s.stage, s.block) for s in f.inert_here_only}) > 1
            marks.setdefault(label, []).append(
                f"cross-region step{'s' if many else ''} inert at {image_size} px that act{'' if many else 's'} at "
                f"{PAPER_IMAGE_SIZE} px ({inert_text(f.inert_here_only)}): this protocol does not measure "
                f"{'them' if many else 'it'}")
    return marks


def dry_run_text(study: Study, preset: str, labels: Sequence[str], image_size: int | None = None) -> str:
    """The `--dry-run` block: per row the stages where it differs from the default row, then the warnings, at
    `image_size` (default: the preset's)."""
    from hiremlp import PRESET_IMAGE_SIZE

    size = image_size or PRESET_IMAGE_SIZE[study.base_preset or preset]
    findings = check_study(study, size, preset, labels)
    width = max(16, *(len(label) for label in labels))
    lines = [f"mixing plan at {size} px ({study.base_preset or preset}; `hiremlp.mixing_plan`), against row "
             f"{study.default_row!r}:", f"{'row':{width}s} differs in"]
    for label, f in findings.items():
        what = ("cannot run: " + f.reason if f.reason else "(default row)" if label == study.default_row
                else f.difference_text())
        if _recipe(study, label):
            what += "; recipe " + ", ".join(f"{k}={v!r}" for k, v in _recipe(study, label).items())
        lines.append(f"{label:{width}s} {what}")
    for group in same_network_groups(findings):
        lines.append(f"warning: rows {', '.join(group)} are the same network at {size} px: this protocol cannot "
                     "measure their difference")
    for label, f in findings.items():
        if f.inert_here_only:
            lines.append(f"warning: row {label}: cross-region steps inert at {size} px that act at "
                         f"{PAPER_IMAGE_SIZE} px ({PAPER_PRESET}), so this protocol does not measure them: "
                         f"{inert_text(f.inert_here_only)}")
        also = [s for s in f.inert if s not in f.inert_here_only]
        if also:
            lines.append(f"note: row {label}: inert cross-region steps that the paper's model ({PAPER_PRESET}, "
                         f"{PAPER_IMAGE_SIZE} px) has too: {inert_text(also)}")
    return "\n".join(lines)
