"""What kind of failure ended a training run: the one line a sweep records for it, whether the process can run
another (a sticky CUDA error leaves its CUDA context unusable: every later kernel fails at once), and whether
running it again can fix it."""

from __future__ import annotations

BROKEN_DEVICE = "cuda error"
#: CUDA errors that leave the context unusable: every later kernel of this process fails at once
STICKY_CUDA_ERRORS = ("device-side assert", "illegal memory access", "unspecified launch failure",
                      "misaligned address", "illegal instruction", "launch timed out", "cudaerrorlaunchfailure",
                      "cublas_status_execution_failed", "uncorrectable ecc", "hardware stack error")


def is_sticky_cuda_error(e: BaseException) -> bool:
    """Whether ``e`` is a CUDA error after which this process can run no more kernels."""
    text = f"{type(e).__name__}: {e}".lower()
    return any(lib in text for lib in ("cuda", "cublas", "cudnn")) and any(m in text for m in STICKY_CUDA_ERRORS)


def failure_reason(e: BaseException) -> str:
    """One line that says what kind of failure it was."""
    msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
    name = type(e).__name__
    if "OutOfMemory" in name or "out of memory" in msg.lower():
        return f"out of memory: {msg}"[:300]
    if is_sticky_cuda_error(e):
        return f"{BROKEN_DEVICE} ({name}): {msg}"[:300]
    if "Diverged" in name:
        return f"diverged: {msg}"[:300]
    if isinstance(e, (ValueError, TypeError)):
        return f"config error: {msg}"[:300]
    return f"{name}: {msg}"[:300]


RETRY_FIXES = ("never ran", "crashed/stale", "interrupted", "out of memory", "duplicate", "cuda error")
RETRY_REPEATS = ("config error", "diverged")  # the same recipe and seed fail the same way


def retry_advice(reasons: list[str]) -> str:
    """What to do about cells without a result: a rerun only for failures a rerun can fix."""
    fixes = sum(r.startswith(RETRY_FIXES) for r in reasons)
    repeats = sum(r.startswith(RETRY_REPEATS) for r in reasons)
    other = len(reasons) - fixes - repeats
    parts = []
    if fixes:
        parts.append(f"{fixes} crashed, were interrupted, ran out of memory or never ran: run the same command "
                     "again to retry them")
    if repeats:
        parts.append(f"{repeats} failed on their configuration or diverged: a rerun fails them the same way, so "
                     "change the recipe or the row first")
    if other:
        parts.append(f"{other} raised an error (fail_reason above): fix its cause, then run the same command again")
    return "; ".join(parts)
