"""Open an Optuna storage: a journal file in the run folder by default, any RDB URL on request."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend


class StorageError(RuntimeError):
    """The storage cannot be opened; the message is one line meant for the user."""


def open_storage(url: str | None, run_root: Path) -> optuna.storages.BaseStorage:
    """`None` gives `<run_root>/optuna.journal`, safe for several processes on one machine (no server needed).

    `postgresql://...` (or MySQL) is for several machines; `sqlite:///...` is for one process only (no row locks).
    """
    if url is None or url.startswith("journal:"):
        path = Path(url[len("journal:"):]) if url else run_root / "optuna.journal"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return JournalStorage(JournalFileBackend(str(path)))
        except OSError as e:
            raise StorageError(f"cannot open journal storage {path}: {e.strerror or e}") from None
    if "://" not in url:
        raise StorageError(
            f"cannot open storage {url!r}: expected a URL such as postgresql://user@host/db or sqlite:///file.db"
        )
    try:
        return optuna.storages.RDBStorage(_with_driver(url), engine_kwargs=_engine_kwargs(url))
    except Exception as e:  # noqa: BLE001 - driver errors vary (ImportError, OperationalError, ArgumentError)
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise StorageError(f"cannot open storage {_redact(url)}: {reason}") from None


def _with_driver(url: str) -> str:
    """SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3; use psycopg2 when that is what is installed."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg") is None \
            and importlib.util.find_spec("psycopg2") is not None:
        return "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def _engine_kwargs(url: str) -> dict:
    """Fail fast on an unreachable server instead of hanging the CLI."""
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    return {}


def _redact(url: str) -> str:
    """Hide a password in a URL before printing it."""
    scheme, _, rest = url.partition("://")
    creds, at, host = rest.rpartition("@")
    if at and ":" in creds:
        creds = creds.split(":", 1)[0] + ":***"
    return f"{scheme}://{creds}{at}{host}"
