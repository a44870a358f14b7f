"""Crash recovery. JournalStorage has no heartbeat, so each running trial keeps its own.

A worker writes `host`, `pid` and a `heartbeat` timestamp into the trial's system attr `sweeps:owner` (internal
bookkeeping, kept out of the user attrs that optuna-dashboard shows as columns) and refreshes the timestamp from a
background thread. A RUNNING trial is stale when its process is gone (same host, pid dead) or, from any
host, when its heartbeat is older than the grace period. Stale trials are closed as FAIL ('crashed/stale') and
their cell is enqueued again, so the next worker re-runs it.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

HOST = socket.gethostname()
HEARTBEAT_S = float(os.environ.get("SWEEP_HEARTBEAT_S", 30))
GRACE_S = float(os.environ.get("SWEEP_GRACE_S", 300))  # several heartbeats: a busy journal may delay one
CLAIM_GRACE_S = float(os.environ.get("SWEEP_CLAIM_GRACE_S", 60))  # claim -> owner attrs takes milliseconds


def pid_alive(pid: int) -> bool:
    """True if `pid` is a running process on this host (a zombie counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True  # no /proc (macOS): trust kill(0)


OWNER_ATTR = "sweeps:owner"  # system attr: {"host", "pid", "heartbeat"}


def owner(trial: FrozenTrial) -> dict:
    """`{"host", "pid", "heartbeat"}` of the worker holding a trial, or {} if none has written it yet.

    Trials recorded before the owner moved to a system attr kept it in user attrs; those are still read."""
    found = trial.system_attrs.get(OWNER_ATTR)
    if found:
        return dict(found)
    return {k: trial.user_attrs[k] for k in ("host", "pid", "heartbeat") if k in trial.user_attrs}


def is_live(trial: FrozenTrial, grace_s: float = GRACE_S, now: float | None = None,
            claimer_died: bool = False) -> bool:
    """Whether a RUNNING trial still has a worker behind it.

    A trial without owner attrs was claimed by a process that died before writing them: `claimer_died` says we
    know that (a local claim intent was left behind); otherwise it gets `CLAIM_GRACE_S` from its claim time."""
    now = time.time() if now is None else now
    attrs = owner(trial)
    if "pid" not in attrs:
        start = trial.datetime_start.timestamp() if trial.datetime_start is not None else now
        return not claimer_died and now - start < CLAIM_GRACE_S
    if attrs.get("host") == HOST and not pid_alive(int(attrs["pid"])):
        return False
    return now - float(attrs.get("heartbeat", 0)) < grace_s


def recover_stale(study: optuna.Study, requeue: Callable[[FrozenTrial], None], grace_s: float = GRACE_S,
                  claimer_died: bool = False) -> list[FrozenTrial]:
    """Close stale RUNNING trials as FAIL and hand each to `requeue`. Call under `grid.grid_lock`."""
    recovered = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if is_live(t, grace_s, claimer_died=claimer_died):
            continue
        try:
            study._storage.set_trial_user_attr(t._trial_id, "fail_reason", "crashed/stale")  # noqa: SLF001
            study.tell(t.number, state=TrialState.FAIL)
        except (RuntimeError, ValueError):  # another process closed it first
            continue
        requeue(t)
        recovered.append(t)
    return recovered


def mark_owner(trial: optuna.Trial, host: str = HOST, pid: int | None = None, heartbeat: float | None = None) -> None:
    """Record this process (or the given owner, for tests) as the one running `trial`, beating now."""
    value = {"host": host, "pid": os.getpid() if pid is None else pid,
             "heartbeat": time.time() if heartbeat is None else heartbeat}
    trial.storage.set_trial_system_attr(trial._trial_id, OWNER_ATTR, value)  # noqa: SLF001


class Heartbeat:
    """Marks a trial as owned by this process and refreshes its timestamp until stopped."""

    def __init__(self, trial: optuna.Trial, interval_s: float = HEARTBEAT_S) -> None:
        self.trial, self.interval_s = trial, interval_s
        self._pid = os.getpid()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{trial.number}", daemon=True)

    def __enter__(self) -> Heartbeat:
        mark_owner(self.trial)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                mark_owner(self.trial, pid=self._pid)
            except Exception:  # noqa: BLE001 - a missed beat only makes the trial look older
                pass
