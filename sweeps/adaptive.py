"""`--target-ci`: the seeds that the stopping rule (`analysis.seed_rule`) asks for, as ordinary grid cells.

Before every claim (under the grid lock) the rule is applied to the COMPLETE trials in the storage; a cell it asks
for that never had a trial is enqueued like any other, so resume, crash recovery, several workers and the duplicate
check work unchanged. Cells that failed are retried once per invocation by `grid.enqueue_missing`, as in a fixed grid;
a row waits for a failed seed before deciding on its next one, which keeps the seed counts a function of the
results. The sweep imports the rule from `analysis` (numpy/scipy only) so that it stops on exactly the interval the
table prints.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from analysis.trial_rows import finished_outcomes, finished_values
from sweeps import grid
from sweeps.grid import Cell

if TYPE_CHECKING:  # the rule (scipy, pandas-free but not light) is imported only by sweeps that use it
    from analysis.seed_rule import RowDecision, SeedRule


def target_cells(decisions: dict[str, RowDecision], rows: Sequence[str]) -> list[Cell]:
    """The cells the decisions ask for, seed-major like `grid.cells`."""
    top = max((d.seeds for d in decisions.values()), default=0)
    return [Cell(r, s) for s in range(top) for r in rows if s < decisions[r].seeds]


def decisions_now(ostudy: optuna.Study, rule: SeedRule) -> dict[str, RowDecision]:
    from analysis.seed_rule import decide

    trials = ostudy.get_trials(deepcopy=False)
    return decide(finished_values(trials, rule.metric), rule, finished_outcomes(trials) if rule.images else None)


def extend(ostudy: optuna.Study, rule: SeedRule, log: Callable[[str], None]) -> list[Cell]:
    """The cells the rule asks for now (the sweep's new `todo`); those that never had a trial are enqueued. Call
    under `grid.grid_lock`."""
    decisions = decisions_now(ostudy, rule)
    todo = target_cells(decisions, rule.rows)
    had = {grid.cell_of(t) for t in ostudy.get_trials(deepcopy=False)}
    new = [c for c in todo if c not in had]
    for cell in new:
        grid.enqueue(ostudy, cell)
    if new:
        why = ", ".join(f"{c.key} (half-width {decisions[c.row].half_width:.2f} > {rule.target_ci:g})"
                        if c.seed >= rule.min_seeds and c.row != rule.default_row else c.key for c in new)
        log(f"--target-ci: queued {why}")
    return todo


def cells_now(ostudy: optuna.Study, rule: SeedRule) -> list[Cell]:
    """The rule's cells without enqueuing (for the final accounting)."""
    return target_cells(decisions_now(ostudy, rule), rule.rows)


def record(ostudy: optuna.Study, folder: Path, rule: SeedRule) -> None:
    """Store the rule with the study (user attr) and beside the results (`seed_rule.json`) for the report."""
    from analysis.seed_rule import write_rule

    if ostudy.user_attrs.get("seed_rule") != rule.to_json():
        ostudy.set_user_attr("seed_rule", rule.to_json())
    write_rule(folder, rule)


def summary_line(ostudy: optuna.Study, rule: SeedRule) -> str:
    """Seeds per row and why, for the end of a sweep."""
    decisions = decisions_now(ostudy, rule)
    return "seeds per row: " + "; ".join(f"{r} {decisions[r].describe(rule)}" for r in rule.rows)
