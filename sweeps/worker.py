"""The worker loop: recover stale trials, claim one cell, train it, record everything, repeat until none is left.

Several workers (processes, possibly on several machines with an RDB storage) can run this loop on one study.
"""

from __future__ import annotations

import gc
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
import torch
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from ablations import Study
from lightning_modules.failures import BROKEN_DEVICE, failure_reason
from lightning_modules.predictions import KEY as PREDICTIONS_KEY
from sweeps import adaptive, grid, progress, recovery, results, tune
from sweeps.grid import Cell
from sweeps.protocols import Protocol
from sweeps.trainers import Trainer, trial_config

if TYPE_CHECKING:
    from analysis.seed_rule import SeedRule

POLL_S = float(os.environ.get("SWEEP_POLL_S", 5))  # how often an idle worker looks for new cells
RESULT_KEYS = ("val_acc", "best_val_acc", "test_acc", "test_loss", "params", "macs", "images_per_s", "wall_s",
               "epochs_run", "resumed_from_epoch")


@dataclass
class Sweep:
    """Everything a worker needs to know about the sweep it is part of."""

    study: Study
    protocol: Protocol
    ostudy: optuna.Study
    folder: Path  # runs/<study>-<protocol>
    todo: list[Cell]  # table studies: the cells this invocation is responsible for
    trainer: Trainer
    settings: dict = field(default_factory=dict)  # RunConfig fields every trial gets: data folder, eval sizes, ...
    n_trials: int = 0  # tune studies: the trial budget
    seed: int = 0  # tune studies: the training seed of every trial
    log: Callable[[str], None] = print
    seed_rule: SeedRule | None = None  # --target-ci: `todo` follows the rule's decisions


# ----------------------------------------------------------------------------------------------- bookkeeping

def requeue(sweep: Sweep, stale: FrozenTrial) -> None:
    """Give a crashed trial's cell (or a tune trial's exact params) back to the queue."""
    if sweep.study.kind == "tune":  # same params, same trial folder: the retry resumes from its checkpoint
        folder = Path(str(stale.user_attrs.get("run_dir", f"trial{stale.number:04d}"))).name
        sweep.ostudy.enqueue_trial(dict(stale.params), user_attrs={"retry_of": stale.number, "trial_dir": folder})
    elif (cell := grid.cell_of(stale)) is not None:
        grid.enqueue(sweep.ostudy, cell)


def recover(sweep: Sweep) -> None:
    """Re-queue the cells of dead workers. Call under `grid_lock`.

    Claiming and writing the owner attrs happen under the lock with a `.claiming` file around them, so a leftover
    `.claiming` file means its writer died in between: its ownerless RUNNING trial is stale right away."""
    intent = sweep.folder / ".claiming"
    for t in recovery.recover_stale(sweep.ostudy, lambda t: requeue(sweep, t), claimer_died=intent.exists()):
        sweep.log(f"recovered trial {t.number} ({_label(t)}): its worker is gone; re-queued")
    intent.unlink(missing_ok=True)


def prepare(sweep: Sweep, enqueue: bool) -> None:
    """Start-up step of a sweep: recover crashed trials, then (once per invocation) enqueue missing cells."""
    with grid.grid_lock(sweep.folder):
        recover(sweep)
        if enqueue and sweep.study.kind == "table":
            if sweep.seed_rule is not None:
                sweep.todo = adaptive.extend(sweep.ostudy, sweep.seed_rule, sweep.log)
            added = grid.enqueue_missing(sweep.ostudy, sweep.todo, recovery.is_live)
            if added:
                sweep.log(f"queued {len(added)} cell(s): {', '.join(c.key for c in added)}")


def _label(t: FrozenTrial) -> str:
    cell = grid.cell_of(t)
    return cell.key if cell else f"trial{t.number:04d}"


def tune_budget_used(ostudy: optuna.Study) -> int:
    """Trials that count against --trials: everything except crashed runs (re-queued) and duplicates."""
    return sum(1 for t in ostudy.get_trials(deepcopy=False)
               if t.user_attrs.get("fail_reason") not in ("crashed/stale", "duplicate"))


def next_trial(sweep: Sweep) -> optuna.Trial | None:
    with grid.grid_lock(sweep.folder):
        recover(sweep)
        if sweep.seed_rule is not None:
            sweep.todo = adaptive.extend(sweep.ostudy, sweep.seed_rule, sweep.log)
        intent = sweep.folder / ".claiming"
        intent.write_text(f"{recovery.HOST} {os.getpid()}\n")
        if sweep.study.kind == "table":
            trial = grid.claim(sweep.ostudy, wanted=set(sweep.todo))
        else:
            trial = grid.claim(sweep.ostudy)
            if trial is None and tune_budget_used(sweep.ostudy) < sweep.n_trials:
                trial = sweep.ostudy.ask()
        if trial is not None:  # owned from the first moment, so a crash right after the claim is recoverable
            recovery.mark_owner(trial)
        intent.unlink()
        return trial


def others_running(sweep: Sweep) -> list[FrozenTrial]:
    """Live trials of this sweep held by other workers: wait for them (they may still crash and come back)."""
    wanted = set(sweep.todo)
    return [t for t in sweep.ostudy.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if recovery.is_live(t) and (sweep.study.kind == "tune" or grid.cell_of(t) in wanted)]


# ----------------------------------------------------------------------------------------------- the loop

def work(sweep: Sweep, poll_s: float = POLL_S) -> None:
    """Run trials until nothing is queued and no other worker holds a cell of this sweep."""
    waiting_msg, frozen = "", False
    try:
        while True:
            trial = next_trial(sweep)
            if trial is not None:
                waiting_msg = ""
                run_one(sweep, trial)
                if not frozen:
                    # The first trial imported torch/Lightning (~0.5M long-lived objects); every later full
                    # collection would re-scan them all (~50-80 ms, inside the next trial's setup). Freeze what is
                    # alive after the first trial so collections only look at objects made since.
                    gc.collect()
                    gc.freeze()
                    frozen = True
                continue
            busy = others_running(sweep)
            if not busy:
                return
            msg = f"waiting for {len(busy)} trial(s) running elsewhere: " + ", ".join(
                f"{_label(t)} (pid {recovery.owner(t).get('pid')} on {recovery.owner(t).get('host')})" for t in busy)
            if msg != waiting_msg:
                sweep.log(msg)
                waiting_msg = msg
            time.sleep(poll_s)
    finally:
        if frozen:  # back to normal collection for whoever called us in-process (tests, notebooks)
            gc.unfreeze()


def _describe(sweep: Sweep, trial: optuna.Trial) -> tuple[str, int, dict, Path]:
    """(row, seed, protocol overrides, run folder) of a claimed trial; also records them as params."""
    if sweep.study.kind == "tune":
        hp = tune.suggest_hparams(trial, sweep.study, sweep.protocol.recipe.epochs)
        row = sweep.study.default_row
        trial.set_user_attr("row", row)
        trial.set_user_attr("seed", sweep.seed)
        folder = trial.user_attrs.get("trial_dir") or f"trial{trial.number:04d}"
        return row, sweep.seed, hp, sweep.folder / "trials" / folder
    cell = grid.suggest_cell(trial, sweep.study.labels)
    return cell.row, cell.seed, {}, sweep.folder / "trials" / cell.key


def run_one(sweep: Sweep, trial: optuna.Trial) -> None:
    """Train one claimed trial and close it as COMPLETE, PRUNED or FAIL (with `fail_reason`)."""
    row, seed, hp, run_dir = _describe(sweep, trial)
    name = f"{row} seed {seed}" if sweep.study.kind == "table" else f"trial {trial.number} {_fmt_hp(hp)}"
    if sweep.study.kind == "table":
        dup = grid.duplicate_of(sweep.ostudy, trial, Cell(row, seed), recovery.is_live)
        if dup is not None:
            _close(sweep, trial, TrialState.FAIL, fail_reason="duplicate")
            sweep.log(f"skip  {name}: already {dup.state.name.lower()} as trial {dup.number}")
            return

    try:
        cfg = trial_config(sweep.study, sweep.protocol, row, seed, run_dir, hp, **sweep.settings)
    except ValueError as e:  # e.g. a sampled epoch budget shorter than the warmup
        _close(sweep, trial, TrialState.FAIL, fail_reason=f"config error: {e}"[:300])
        sweep.log(f"fail  {name}: config error: {e}")
        return
    # An earlier attempt of this cell (crashed, killed, failed) may have left its checkpoint here: the trainer
    # resumes from it. Only that attempt's verdict files go.
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in ("trial.json", "result.json"):
        (run_dir / stale).unlink(missing_ok=True)
    attrs = {
        "row": row, "seed": seed, "run_dir": str(run_dir), "code_version": results.code_version(),
        "versions": results.library_versions(), "protocol": sweep.protocol.record(),
        "recipe": cfg.recipe.to_flat(),
        "preset": cfg.preset, "overrides": _jsonable(cfg.model_overrides), "cfg": cfg.model_config(None).spec(),
        "threads": torch.get_num_threads(),  # a slow trial told from an oversubscribed one
    }
    for key, value in attrs.items():
        trial.set_user_attr(key, value)

    from lightning_modules.progress import EpochProgress
    from sweeps.reporting import TrialReport

    # every epoch: val_acc and the metrics row to the storage (pruning only in tune studies), a progress line
    callbacks = [TrialReport(trial, prune=sweep.study.kind == "tune"), EpochProgress(name, sweep.log)]
    sweep.log(f"start {name} (trial {trial.number}) -> {run_dir}")
    t0 = time.time()
    state, reason, result = TrialState.COMPLETE, "", {}
    with recovery.Heartbeat(trial):
        try:
            result = dict(sweep.trainer(cfg, callbacks, row=row))
            val = result.get("val_acc")
            if val is None or not math.isfinite(float(val)):
                state, reason = TrialState.FAIL, f"diverged: val_acc={val}"
        except optuna.TrialPruned as e:
            state, reason = TrialState.PRUNED, str(e)
        except KeyboardInterrupt:
            _close(sweep, trial, TrialState.FAIL, fail_reason="interrupted")
            raise
        except Exception as e:  # noqa: BLE001 - any failure of one trial is recorded, the sweep goes on
            state, reason = TrialState.FAIL, failure_reason(e)
    elapsed = time.time() - t0
    if reason.startswith("out of memory"):
        _free_gpu_memory()  # here, not inside the handler: the exception's frames held the trial's tensors

    for key, value in result.items():
        if key in RESULT_KEYS or key.startswith(("test_acc@", "na@", PREDICTIONS_KEY)):
            trial.set_user_attr(key, _jsonable(value))
    if "wall_s" not in result:
        trial.set_user_attr("wall_s", elapsed)
    value = float(result["val_acc"]) if state == TrialState.COMPLETE else None
    if not _close(sweep, trial, state, value=value, fail_reason=reason or None):
        sweep.log(f"note  {name}: trial {trial.number} was closed by another process while it ran")
    results.write_json(run_dir / "trial.json", {**attrs, "trial": trial.number, "study": sweep.ostudy.study_name,
                                                "state": state.name, "fail_reason": reason, "params": trial.params,
                                                "result": result, "elapsed_s": elapsed})
    results.write_results_csv(sweep.ostudy, sweep.study.name, sweep.protocol.name, sweep.folder / "results.csv")
    results.write_curves_csv(sweep.ostudy, sweep.folder / "curves.csv")
    results.write_predictions_csv(sweep.ostudy, sweep.folder / "predictions.csv")
    if state == TrialState.COMPLETE:
        test = result.get("test_acc")
        test_txt = f", test {float(test):.2f}%" if test is not None else ""
        sweep.log(f"done  {name}: val {value:.2f}%{test_txt} in {elapsed:.1f}s")
    else:
        sweep.log(f"{state.name.lower():5s} {name}: {reason} ({elapsed:.1f}s)")
    table = sweep.study.kind == "table"
    sweep.log(progress.progress_line(sweep.ostudy, sweep.todo if table else None, sweep.n_trials))
    if reason.startswith(BROKEN_DEVICE):
        give_back(sweep, trial, reason)


class BrokenDeviceError(RuntimeError):
    """This process's CUDA context is unusable (a sticky error): the worker stops instead of failing every cell."""


def give_back(sweep: Sweep, trial: optuna.Trial, reason: str) -> None:
    """After a sticky CUDA error: re-queue the cell for a healthy worker (once: a cell that broke a device before is
    left failed, since the fault is then likely its own) and stop this worker with :class:`BrokenDeviceError`."""
    trials = sweep.ostudy.get_trials(deepcopy=False)
    this = next(t for t in trials if t.number == trial.number)
    same = (lambda t: grid.cell_of(t) == grid.cell_of(this)) if sweep.study.kind == "table" else (
        lambda t: t.params == this.params)
    earlier = [t for t in trials if t.number != this.number and t.state == TrialState.FAIL and same(t)
               and str(t.user_attrs.get("fail_reason", "")).startswith(BROKEN_DEVICE)]
    if earlier:
        where = f"not re-queued: it broke a device before (trial {earlier[0].number})"
    else:
        with grid.grid_lock(sweep.folder):
            requeue(sweep, this)
        where = "re-queued for another worker or the next run"
    raise BrokenDeviceError(f"this worker's CUDA context is broken ({reason}); trial {this.number} {where}; "
                            "the worker stops rather than fail every remaining cell")


def _close(sweep: Sweep, trial: optuna.Trial, state: TrialState, value: float | None = None,
           fail_reason: str | None = None) -> bool:
    """Tell the storage; False if someone else (crash recovery) already closed the trial."""
    try:
        if fail_reason:
            trial.set_user_attr("fail_reason", fail_reason)
        sweep.ostudy.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        return True
    except (UpdateFinishedTrialError, RuntimeError, ValueError):
        return False


def _free_gpu_memory() -> None:
    if torch.cuda.is_available():
        gc.collect()  # Lightning's trainer and module hold each other: only a collection frees them
        torch.cuda.empty_cache()


def _fmt_hp(hp: dict) -> str:
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items())


def _jsonable(value):
    """As the storage keeps it: tuples as lists, Paths as strings, numpy and torch scalars as numbers."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))
