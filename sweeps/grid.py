"""The grid of a table study (rows x seeds) as enqueued Optuna trials, and the claim that hands each to one worker.

Every cell is enqueued once with params {row, seed}. A worker claims a WAITING trial by moving it to RUNNING through
the storage (the journal log or an RDB `SELECT ... FOR UPDATE` arbitrates, so exactly one claimer wins), then checks
that no other trial already holds the same cell (a COMPLETE one, or a live RUNNING one with a smaller number); if
one does, the claim is closed as FAIL 'duplicate'. Which cells are done is always read back from the storage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from ablations import Study
from hiremlp import PRESETS
from sweeps.protocols import Protocol


@dataclass(frozen=True)
class Cell:
    """One table entry to fill: a row of the study trained with one seed."""

    row: str
    seed: int

    @property
    def key(self) -> str:
        """Also the trial's folder name under `trials/`."""
        return f"{self.row}__seed{self.seed}"


def cells(rows: Sequence[str], seeds: int) -> list[Cell]:
    """Seed-major order, so an interrupted sweep has a whole table at one seed before starting the next."""
    return [Cell(row, seed) for seed in range(seeds) for row in rows]


def spec(study: Study, protocol: Protocol) -> dict:
    """What a cell *means*: the base model, the row definitions and the recipe. Which rows or how many seeds run is
    not in it, so `--rows` and `--seeds` extend one study, while an edited preset, row or recipe starts a new one."""
    out = {
        "study": study.name,
        "kind": study.kind,
        "base_preset": study.base_preset or protocol.preset,
        # the preset's fields, so a preset changed in place (smoke's 32 px stem) is a new study, never mixed with runs
        # of the old model
        "base_config": PRESETS[study.base_preset or protocol.preset].spec(),
        "rows": {r.label: dict(r.overrides) for r in study.rows},
        "eval_sizes": list(study.eval_sizes),
        "protocol": protocol.spec(),
    }
    if any(r.recipe for r in study.rows):  # only then: the built-in studies keep their names
        out["row_recipes"] = {r.label: dict(r.recipe) for r in study.rows if r.recipe}
    if study.kind == "tune":
        out["search_space"] = {k: dataclasses.asdict(p) for k, p in study.search_space.items()}
        out["sampler"], out["pruner"] = dict(study.sampler), dict(study.pruner)
    return json.loads(json.dumps(out, sort_keys=True, default=list))  # tuples -> lists, as stored


def study_name(spec_: dict) -> str:
    """`<study>-<protocol>-<hash8>`: stable across runs, different as soon as the spec changes."""
    digest = hashlib.sha256(json.dumps(spec_, sort_keys=True).encode()).hexdigest()[:8]
    return f"{spec_['study']}-{spec_['protocol']['name']}-{digest}"


@contextlib.contextmanager
def grid_lock(run_root: Path) -> Iterator[None]:
    """Serialise enqueue/recovery between processes on this machine (an RDB shared by several machines relies
    on the duplicate check at claim time instead)."""
    run_root.mkdir(parents=True, exist_ok=True)
    with open(run_root / ".grid.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def cell_of(trial: FrozenTrial) -> Cell | None:
    """The cell a trial belongs to (WAITING trials included), or None for a trial that is no grid cell."""
    attrs = trial.user_attrs
    if "row" not in attrs or "seed" not in attrs:
        return None
    return Cell(str(attrs["row"]), int(attrs["seed"]))


def enqueue_missing(study: optuna.Study, todo: Sequence[Cell], is_live) -> list[Cell]:
    """Enqueue each cell that has no COMPLETE trial and no pending (WAITING or live RUNNING) one; return them.

    Cells that FAILed in an earlier invocation are therefore retried once per invocation. Call under `grid_lock`.
    """
    held: set[Cell] = set()
    for t in study.get_trials(deepcopy=False):
        cell = cell_of(t)
        if cell is not None and (
            t.state in (TrialState.COMPLETE, TrialState.WAITING) or (t.state == TrialState.RUNNING and is_live(t))
        ):
            held.add(cell)
    missing = [c for c in todo if c not in held]
    for c in missing:
        enqueue(study, c)
    return missing


def enqueue(study: optuna.Study, cell: Cell) -> None:
    study.enqueue_trial({"row": cell.row, "seed": cell.seed}, user_attrs={"row": cell.row, "seed": cell.seed})


def claim(study: optuna.Study, wanted: set[Cell] | None = None) -> optuna.Trial | None:
    """Move one WAITING trial to RUNNING for this process (atomic in the storage) and return it, or None."""
    storage = study._storage  # noqa: SLF001 - the public Study API has no "pop one enqueued trial" without sampling
    for t in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        if wanted is not None and cell_of(t) not in wanted:
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, state=TrialState.RUNNING):  # noqa: SLF001
                continue
        except UpdateFinishedTrialError:
            continue
        return optuna.Trial(study, t._trial_id)  # noqa: SLF001
    return None


def suggest_cell(trial: optuna.Trial, labels: Sequence[str]) -> Cell:
    """Record the enqueued row and seed as the trial's params (fixed values; nothing is sampled)."""
    row = trial.suggest_categorical("row", list(labels))
    seed = trial.suggest_int("seed", 0, 1_000_000)
    return Cell(str(row), int(seed))


def duplicate_of(study: optuna.Study, trial: optuna.Trial, cell: Cell, is_live) -> FrozenTrial | None:
    """Another trial that already holds `cell`: a COMPLETE one, or a live RUNNING one claimed with a lower number.

    The lower number wins, so of two workers that claimed copies of one cell exactly one goes on."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING)):
        if t.number == trial.number or cell_of(t) != cell:
            continue
        if t.state == TrialState.COMPLETE or (t.number < trial.number and is_live(t)):
            return t
    return None


def status(study: optuna.Study, todo: Sequence[Cell]) -> dict[Cell, FrozenTrial | None]:
    """For each cell: its COMPLETE trial if any, else its latest trial (or None if it never ran)."""
    wanted, best = set(todo), {}
    for t in study.get_trials(deepcopy=False):
        cell = cell_of(t)
        if cell not in wanted or t.user_attrs.get("fail_reason") == "duplicate":
            continue
        old = best.get(cell)
        if old is None or (old.state != TrialState.COMPLETE and
                           (t.state == TrialState.COMPLETE or t.number > old.number)):
            best[cell] = t
    return {c: best.get(c) for c in todo}
