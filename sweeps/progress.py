"""The sweep's progress line after each finished trial: cells done of the total, and an ETA from measured trials.

Everything is read back from the storage, so the line is right whoever ran which trial, on whichever machine.
"""

from __future__ import annotations

from collections.abc import Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from sweeps import grid, recovery
from sweeps.cost import human_time


def full_trial_seconds(trial: FrozenTrial) -> float | None:
    """What the whole trial would take uninterrupted: a resumed trial's wall time covers only its last epochs."""
    a = trial.user_attrs
    try:
        wall, epochs = float(a["wall_s"]), int(a.get("epochs_run") or 0)
        resumed = int(a.get("resumed_from_epoch") or 0)
    except (KeyError, TypeError, ValueError):
        return None
    if resumed and epochs > resumed:
        return wall * epochs / (epochs - resumed)
    return wall


def live_workers(study: optuna.Study) -> int:
    """Distinct workers holding a live RUNNING trial of this study (this one, between trials, not counted)."""
    owners = {(o.get("host"), o.get("pid")) for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
              if recovery.is_live(t) and (o := recovery.owner(t))}
    return len(owners)


def progress_line(study: optuna.Study, todo: Sequence[grid.Cell] | None, budget: int = 0) -> str:
    """``cells 3/8 complete (1 running); ~12 min left at 90 s per trial with 2 worker(s)``.

    `todo`: the table cells of this invocation; None for a tune study, counted against `budget` trials. The ETA is
    (cells left) x (mean measured trial time) / (live workers + this one); it says so when nothing was measured.
    """
    trials = study.get_trials(deepcopy=False)
    running = sum(t.state == TrialState.RUNNING for t in trials)
    if todo is not None:
        wanted = set(todo)
        done_cells = {grid.cell_of(t) for t in trials if t.state == TrialState.COMPLETE} & wanted
        done, total = len(done_cells), len(wanted)
        what = "cells"
    else:
        done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
        total, what = max(budget, done), "trials"
    finished = [s for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
                and (s := full_trial_seconds(t)) is not None]
    head = f"{what} {done}/{total} complete" + (f" ({running} running)" if running else "")
    left = total - done
    if not left:
        return head
    if not finished:
        return f"{head}; no trial measured yet for an ETA"
    per_trial = sum(finished) / len(finished)
    workers = live_workers(study) + 1
    return (f"{head}; ~{human_time(left * per_trial / workers)} left at {human_time(per_trial)} per trial"
            f" with {workers} worker(s)")
