"""CPU thread budget for local workers: N workers on a machine without GPUs share its cores instead of each using
all of them.

torch starts one intra-op thread per core in every process, so two workers on two cores run four busy threads
that preempt each other inside every OpenMP barrier (on the 2-core CI machine a two-row smoke sweep took 161 s
with two such workers against 37 s with one). Each worker gets `cores // N` threads (at least 1) through the
environment its process starts with (OMP_NUM_THREADS, MKL_NUM_THREADS: also seen by any process it starts) and
`torch.set_num_threads`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

ENV_VAR = "SWEEP_THREADS"  # set by the command for the workers it starts; read by `apply_from_env`


def cpu_cores() -> int:
    """CPUs this process may run on (its affinity mask: a container's or taskset's limit, not the host's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


@dataclass(frozen=True)
class ThreadBudget:
    workers: int
    cores: int
    threads: int  # per worker
    user_limit: int | None  # an OMP_NUM_THREADS the user set, kept when it is smaller than the share

    def env(self) -> dict[str, str]:
        """Environment for each worker process."""
        k = str(self.threads)
        return {ENV_VAR: k, "OMP_NUM_THREADS": k, "MKL_NUM_THREADS": k}

    def describe(self) -> str:
        line = (f"no GPU: {self.workers} workers x {self.threads} CPU thread(s) on {self.cores} core(s) "
                f"(torch.set_num_threads, OMP_NUM_THREADS, MKL_NUM_THREADS per worker)")
        if self.user_limit is not None and self.threads == self.user_limit < self.cores // self.workers:
            line += f"; your OMP_NUM_THREADS={self.user_limit} is kept"
        if self.workers * self.threads > self.cores:
            line += f"; more workers than cores: they will slow each other down (try --workers {self.cores})"
        return line


def plan(workers: int, cores: int | None = None, environ: dict[str, str] | None = None) -> ThreadBudget:
    """Threads per worker: cores // workers (at least 1), or a smaller OMP_NUM_THREADS the user already set."""
    cores = cpu_cores() if cores is None else cores
    environ = os.environ if environ is None else environ
    threads = max(1, cores // workers)
    user = environ.get("OMP_NUM_THREADS", "").strip()
    user_limit = int(user) if user.isdigit() and int(user) >= 1 else None
    if user_limit is not None:
        threads = min(threads, user_limit)
    return ThreadBudget(workers, cores, threads, user_limit)


def apply_from_env() -> int | None:
    """In a worker started with a budget: set torch's intra-op threads to it; returns it (None: no budget)."""
    value = os.environ.get(ENV_VAR, "")
    if not value.isdigit() or int(value) < 1:
        return None
    import torch

    torch.set_num_threads(int(value))
    return int(value)
