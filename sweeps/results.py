"""What a trial leaves behind: provenance, its run folder files and the study's `results.csv`, `curves.csv` and
`predictions.csv` (their rows are `analysis.trial_rows`', the one reading of a stored trial)."""

from __future__ import annotations

import csv
import functools
import importlib.metadata
import json
import os
import platform
import subprocess
import tomllib
from pathlib import Path

import optuna

from analysis.trial_rows import FIXED_COLUMNS, curve_rows, prediction_codes, result_row, size_key
from sweeps.grid import cell_of

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    except importlib.metadata.PackageNotFoundError:  # a checkout on the path, not installed
        pkg = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    return f"{sha} (hiremlp-ablations {pkg})"


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


def write_results_csv(optuna_study: optuna.Study, study: str, protocol: str, path: Path) -> int:
    """Rewrite `results.csv` from the storage (so it is exact, whoever ran which trial); returns its row count."""
    rows = [result_row(t, study, protocol) for t in optuna_study.get_trials(deepcopy=False)
            if t.state != optuna.trial.TrialState.WAITING]
    extra = sorted({k for r in rows for k in r if k not in FIXED_COLUMNS})
    sizes = sorted((k for k in extra if "@" in k), key=size_key)
    columns = FIXED_COLUMNS + sizes + [k for k in extra if "@" not in k]
    return _write_csv(path, columns, rows)


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
