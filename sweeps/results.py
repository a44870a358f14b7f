"""What a trial leaves behind: provenance, its run folder files and the study's `results.csv`."""

from __future__ import annotations

import csv
import functools
import importlib.metadata
import json
import os
import platform
import subprocess
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial

from lightning_modules.predictions import KEY as PREDICTIONS_KEY
from sweeps.grid import cell_of

REPO_ROOT = Path(__file__).resolve().parent.parent
#: system attr of a trial per epoch (+ f"{epoch:04d}"): that epoch's metrics.csv row (sweeps.reporting writes it;
#: analysis.load reads the same prefix)
EPOCH_ATTR = "epoch_metrics:"
FIXED_COLUMNS = [
    "study", "protocol", "row", "seed", "trial", "state", "fail_reason", "val_acc", "best_val_acc", "test_acc",
    "params", "macs", "images_per_s", "wall_s", "run_dir", "code_version",
]


@functools.cache
def code_version() -> str:
    """`git describe` of the checkout (with -dirty), plus the package version, so a number can be traced."""
    try:
        git = subprocess.run(["git", "describe", "--always", "--dirty", "--tags"], cwd=REPO_ROOT,
                             capture_output=True, text=True, timeout=10)
        sha = git.stdout.strip() if git.returncode == 0 else "nogit"
    except (OSError, subprocess.SubprocessError):
        sha = "nogit"
    try:
        pkg = importlib.metadata.version("hiremlp-ablations")
    except importlib.metadata.PackageNotFoundError:
        pkg = _pyproject_version()
    return f"{sha} (hiremlp-ablations {pkg})"


def _pyproject_version() -> str:
    try:
        for line in (REPO_ROOT / "pyproject.toml").read_text().splitlines():
            if line.startswith("version"):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return "unknown"


@functools.cache
def library_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("torch", "pytorch_lightning", "optuna"):
        try:
            out[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def write_json(path: Path, data: dict) -> None:
    """Atomic: a reader never sees half a file, even if this process is killed mid-write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def result_row(trial: FrozenTrial, study: str, protocol: str) -> dict:
    """One `results.csv` row (columns per docs/DESIGN.md) from a trial's user attrs."""
    a = trial.user_attrs
    cell = cell_of(trial)
    row = {
        "study": study, "protocol": protocol, "row": cell.row if cell else a.get("row", ""),
        "seed": cell.seed if cell else "", "trial": trial.number, "state": trial.state.name,
        "fail_reason": a.get("fail_reason", ""), "run_dir": a.get("run_dir", ""),
        "code_version": a.get("code_version", ""),
    }
    for key in ("val_acc", "best_val_acc", "test_acc", "params", "macs", "images_per_s", "wall_s"):
        row[key] = a.get(key, "")
    if "threads" in a:  # CPU intra-op threads the trial ran with
        row["threads"] = a["threads"]
    for key, value in a.items():
        if key.startswith(("test_acc@", "na@")):
            row[key] = value
    for key, value in (a.get("cfg") or {}).items():
        row[f"cfg.{key}"] = value
    for key, value in (a.get("protocol") or {}).items():
        if key != "description":
            row[f"protocol.{key}"] = value
    for key, value in (a.get("recipe") or {}).items():
        row[f"recipe.{key}"] = value
    for key, value in trial.params.items():
        if key not in ("row", "seed"):
            row[f"hp.{key}"] = value
    return row


def _size_key(column: str) -> tuple[int, int]:
    name, _, size = column.partition("@")
    return int(size) if size.isdigit() else 0, 0 if name == "test_acc" else 1


def write_results_csv(optuna_study: optuna.Study, study: str, protocol: str, path: Path) -> int:
    """Rewrite `results.csv` from the storage (so it is exact, whoever ran which trial); returns its row count."""
    rows = [result_row(t, study, protocol) for t in optuna_study.get_trials(deepcopy=False)
            if t.state != optuna.trial.TrialState.WAITING]
    extra = sorted({k for r in rows for k in r if k not in FIXED_COLUMNS})
    sizes = sorted((k for k in extra if "@" in k), key=_size_key)
    columns = FIXED_COLUMNS + sizes + [k for k in extra if "@" not in k]
    return _write_csv(path, columns, rows)


def curve_rows(trial: FrozenTrial) -> list[dict]:
    """The trial's per-epoch metrics from the storage: the `epoch_metrics:*` system attrs, or, for trials that have
    only intermediate values (recorded before those attrs existed), `val_acc` per step."""
    rows = [dict(v) for k, v in sorted(trial.system_attrs.items()) if k.startswith(EPOCH_ATTR) and isinstance(v, dict)]
    if not rows:
        rows = [{"epoch": step, "val_acc": value} for step, value in sorted(trial.intermediate_values.items())]
    return rows


def write_curves_csv(optuna_study: optuna.Study, path: Path) -> int:
    """Rewrite `curves.csv` (one row per trial and epoch: `trial`, `row`, `seed`, then the metrics.csv columns)
    from the storage, so a run folder on any machine holds every trial's curve; returns its row count."""
    records = []
    for t in optuna_study.get_trials(deepcopy=False):
        cell = cell_of(t)
        for r in curve_rows(t):
            records.append({"trial": t.number, "row": cell.row if cell else t.user_attrs.get("row", ""),
                            "seed": cell.seed if cell else "", **r})
    columns = list(dict.fromkeys(k for r in records for k in r)) or ["trial", "row", "seed", "epoch"]
    return _write_csv(path, columns, records)


def prediction_codes(trial: FrozenTrial) -> dict[str, str]:
    """The trial's stored per-image predictions: {result key (`predictions`, `predictions@<size>`): code}."""
    return {k: v for k, v in trial.user_attrs.items()
            if (k == PREDICTIONS_KEY or k.startswith(PREDICTIONS_KEY + "@")) and isinstance(v, str)}


def write_predictions_csv(optuna_study: optuna.Study, path: Path) -> int:
    """Rewrite `predictions.csv` (one row per trial and evaluation: `trial`, `row`, `seed`, `key`, `code`, the code
    being `lightning_modules.predictions`' string) from the storage, like `curves.csv`; returns its row count."""
    records = []
    for t in optuna_study.get_trials(deepcopy=False):
        cell = cell_of(t)
        for key, code in sorted(prediction_codes(t).items()):
            records.append({"trial": t.number, "row": cell.row if cell else t.user_attrs.get("row", ""),
                            "seed": cell.seed if cell else "", "key": key, "code": code})
    return _write_csv(path, ["trial", "row", "seed", "key", "code"], records)


def _write_csv(path: Path, columns: list[str], rows: list[dict]) -> int:
    """Write rows atomically (tmp + rename): a reader never sees half a file, whichever worker writes it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)
    return len(rows)
