"""A trial on several devices of one machine, from inside a sweep worker.

Lightning's DDP launcher starts the extra ranks by re-running the current command; re-running a sweep worker
would start more workers, not more ranks. So the worker writes the trial's ``RunConfig`` into the trial folder
and runs ``python -m lightning_modules.run_file run_config.json`` as a child (Lightning then starts the other
ranks from that command), follows the child's ``metrics.csv`` and hands each new epoch to the worker's callbacks
(the pruning callback, per-epoch values for the storage) the way Lightning would, and reads ``result.json`` back.
A callback that stops the trial (``optuna.TrialPruned``) ends the child's whole process group.
"""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

POLL_S = 2.0
REPO_ROOT = Path(__file__).resolve().parent.parent


def _epoch_rows(path: Path) -> list[dict[str, str]]:
    try:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    except OSError:
        return []


def _float(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def run_in_child(cfg: Any, callbacks: Sequence[Any] = (), poll_s: float = POLL_S) -> dict:
    """Run ``cfg`` (a RunConfig with devices > 1) in a child process group; returns its result dict.

    Raises ValueError with the child's one-line message for bad configs or data (exit status 2), RuntimeError
    for any other failure, and whatever a callback raises (after stopping the child).
    """
    from lightning_modules.run_file import save_run_config

    run_dir = Path(cfg.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / "run_config.json"
    save_run_config(cfg, config)
    log = run_dir / "ranks.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH"))
                                                        if p)}
    with open(log, "wb") as out:
        child = subprocess.Popen([sys.executable, "-m", "lightning_modules.run_file", str(config)], stdout=out,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
    seen = 0
    try:
        while True:
            done = child.poll() is not None
            rows = _epoch_rows(run_dir / "metrics.csv")
            for row in rows[seen:]:
                metrics = {k: _float(row.get(k)) for k in ("val_acc", "val_loss", "train_loss", "train_acc")}
                state = SimpleNamespace(sanity_checking=False, current_epoch=int(row["epoch"]),
                                        callback_metrics={k: v for k, v in metrics.items() if math.isfinite(v)})
                for cb in callbacks:
                    cb.on_validation_end(state, None)
            seen = len(rows)
            if done:
                break
            time.sleep(poll_s)
    except BaseException:
        _stop(child)
        raise
    if child.returncode != 0:
        lines = log.read_text(errors="replace").strip().splitlines() if log.exists() else []
        last = next((ln for ln in reversed(lines) if "error:" in ln), lines[-1] if lines else "")
        msg = last.split("error:", 1)[1].strip() if "error:" in last else last
        if child.returncode == 2:
            raise ValueError(msg)
        raise RuntimeError(f"multi-device run exited with status {child.returncode}: {msg} (log: {log})")
    return json.loads((run_dir / "result.json").read_text())


def _stop(child: subprocess.Popen) -> None:
    """End the child and the ranks it started (its own process group)."""
    if child.poll() is not None:
        return
    try:
        os.killpg(child.pid, signal.SIGTERM)
        child.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        child.wait()
