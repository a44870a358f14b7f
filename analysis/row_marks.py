"""Report marks for rows a protocol cannot measure (`ablations.distinct_rows`), as footnotes, not failures.

A row is marked when, at the size it was trained, it is the same network as another row of the study, or has
cross-region steps that do nothing there while they act in the paper's model at 224 px. The configs are the ones
the trials ran with (their `cfg.*` columns), so the mark describes what was measured.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

MARK_COLUMN = "cannot_measure"


def row_configs(df: pd.DataFrame, spec: Any) -> dict:
    """The config each row of `spec` ran with: its trials' `cfg.*` columns when they hold every config field (as
    sweeps writes them), else the study's overrides on the protocol's preset (`protocol.preset` column). Rows with
    neither are left out."""
    from ablations.distinct_rows import study_configs
    from hiremlp import HireMLPConfig
    from hiremlp.config import field_names

    cfg_cols = [f"cfg.{name}" for name in field_names()]
    if not set(cfg_cols) <= set(df.columns):
        cfg_cols = []
    presets = df["protocol.preset"].dropna() if "protocol.preset" in df.columns else pd.Series(dtype=object)
    preset = spec.base_preset or (str(presets.iloc[0]) if len(presets) else None)
    configs = {}
    for label in spec.labels:
        trials = df[df["row"] == label]
        flat = {c[4:]: v for c, v in trials.iloc[0][cfg_cols].items() if pd.notna(v)} if len(trials) else {}
        try:
            configs[label] = HireMLPConfig.from_flat(flat) if flat else None
        except (ValueError, TypeError):
            configs[label] = None
        if configs[label] is None and preset is not None:
            configs[label] = study_configs(spec, preset, [label])[label]
        if configs[label] is None:
            del configs[label]
    return configs


def mark_rows(summary: pd.DataFrame, table: Any, df: pd.DataFrame, spec: Any, image_size: int) -> dict[str, list[str]]:
    """Footnote the row cells of `table` (a `tables.DisplayTable`) and add `MARK_COLUMN` to `summary`.

    Returns the marks per row; no marks (and no change) when `spec` is not an `ablations.Study`.
    """
    from ablations import Study
    from ablations.distinct_rows import check_study, row_marks

    if not isinstance(spec, Study):
        return {}
    configs = row_configs(df, spec)
    marks = row_marks(check_study(spec, image_size, configs=configs), image_size) if configs else {}
    summary[MARK_COLUMN] = ["; ".join(marks[r]) if r in marks else None for r in summary["row"]]
    if "row" in table.frame.columns:
        cells = []
        for cell in table.frame["row"]:
            label = cell if cell in marks else str(cell).split(" (")[0]
            cells.append(" ".join([str(cell), *(table.footnote(m) for m in marks.get(label, []))]))
        table.frame["row"] = cells
    return marks
