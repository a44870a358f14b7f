"""Load what `sweeps` stored into one tidy DataFrame: one row per trial, flat config, seed, metrics.

Two sources hold the same facts: `runs/<study>-<protocol>/results.csv` (rewritten after every trial)
and the Optuna storage (trial user attrs). The CSV is the default; the storage is the fallback and the
way to read a study that lives in a shared database.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.trial_rows import curve_rows, trial_record

NUMERIC_COLUMNS = (
    "seed", "trial", "val_acc", "best_val_acc", "test_acc", "test_loss", "params", "macs",
    "images_per_s", "wall_s", "epochs_run",
)
SIZE_COLUMN = re.compile(r"^(test_acc|na)@(\d+)$")
FINISHED = "COMPLETE"


class LoadError(ValueError):
    """Input the loader cannot use (missing folder, empty storage, malformed CSV)."""


def study_dir(run_root: str | Path, study: str, protocol: str) -> Path:
    """The study's run folder. `run_root` is the runs directory, or already the study folder itself."""
    root = Path(run_root)
    name = f"{study}-{protocol}"
    return root if root.name == name else root / name


def eval_sizes(df: pd.DataFrame) -> list[int]:
    """Input sizes the results were evaluated at, from `test_acc@{size}` / `na@{size}` columns."""
    sizes = {int(m.group(2)) for c in df.columns if (m := SIZE_COLUMN.match(str(c)))}
    return sorted(sizes)


def tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Normalise types so the stats never see strings: numeric metrics, upper-case states, str rows."""
    out = df.copy()
    if "row" not in out.columns:
        raise LoadError("results have no 'row' column")
    out["row"] = out["row"].fillna("(no row)").astype(str)
    if "state" not in out.columns:
        out["state"] = FINISHED
    out["state"] = out["state"].fillna("UNKNOWN").astype(str).str.upper().str.replace("TRIALSTATE.", "")
    if "seed" not in out.columns:
        out["seed"] = pd.NA
    for col in out.columns:
        if col in NUMERIC_COLUMNS or str(col).startswith("test_acc@"):
            out[col] = pd.to_numeric(out[col], errors="coerce")
    for col in [c for c in out.columns if str(c).startswith("na@")]:
        out[col] = out[col].where(out[col].notna() & (out[col].astype(str).str.strip() != ""), None)
    return out.reset_index(drop=True)


def load_results_csv(path: str | Path) -> pd.DataFrame:
    """Read a results.csv written by sweeps (see DESIGN.md for the columns)."""
    path = Path(path)
    if not path.is_file():
        raise LoadError(f"no results file at {path}")
    try:
        df = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise LoadError(f"cannot parse {path}: {exc}") from exc
    return tidy(df)


def _open_storage(storage: str | Path) -> Any:
    """A URL goes to Optuna as is; anything else is taken as a journal file path."""
    import optuna
    from optuna.storages.journal import JournalFileBackend

    text = str(storage)
    if "://" in text:
        return text
    path = Path(text)
    if not path.is_file():
        raise LoadError(f"no Optuna journal file at {path}")
    return optuna.storages.JournalStorage(JournalFileBackend(str(path)))


def load_optuna(
    storage: str | Path, study: str, protocol: str, all_studies: bool = False
) -> pd.DataFrame:
    """Trials of the Optuna study named `<study>-<protocol>*`, from their user attrs.

    sweeps names studies `<study>-<protocol>-<hash of the recipe>`, so a changed recipe is a second study.
    By default the one with the latest trial is read (its siblings are listed in `attrs["other_studies"]`,
    since mixing recipes would mix protocols); `all_studies=True` concatenates them all.
    """
    import optuna

    opened = _open_storage(storage)
    prefix = f"{study}-{protocol}"
    try:
        names = [n for n in optuna.get_all_study_names(storage=opened) if n.startswith(prefix)]
    except Exception as exc:  # optuna raises several storage-specific errors
        raise LoadError(f"cannot read Optuna storage {storage}: {exc}") from exc
    if not names:
        raise LoadError(f"no Optuna study named {prefix}* in {storage}")
    trials = {n: optuna.load_study(study_name=n, storage=opened).get_trials(deepcopy=False) for n in names}
    if not all_studies:
        latest = max(names, key=lambda n: max((t.datetime_start.timestamp() for t in trials[n]
                                              if t.datetime_start is not None), default=0.0))
        trials = {latest: trials[latest]}
    records = []
    for name in sorted(trials):
        for t in trials[name]:
            rec: dict[str, Any] = {"study": study, "protocol": protocol, "optuna_study": name}
            rec.update({k: ",".join(map(str, v)) if isinstance(v, (list, tuple)) else v
                        for k, v in trial_record(t).items()})
            if t.values is not None and len(t.values) == 1 and "test_acc" not in rec:
                rec["value"] = t.values[0]
            records.append(rec)
    if not records:
        raise LoadError(f"Optuna studies {sorted(trials)} in {storage} have no trials")
    df = pd.DataFrame.from_records(records)
    df = df.rename(columns={c: f"cfg.{c[len('config.'):]}" for c in df.columns if c.startswith("config.")})
    df = tidy(df)
    df.attrs["other_studies"] = sorted(set(names) - set(trials))
    return df


def load_study(
    study: str, protocol: str, run_root: str | Path = "runs", storage: str | Path | None = None
) -> pd.DataFrame:
    """One row per trial of `<study>-<protocol>`: from `storage` if given, else results.csv, else the journal."""
    if storage is not None:
        return load_optuna(storage, study, protocol)
    folder = study_dir(run_root, study, protocol)
    csv = folder / "results.csv"
    if csv.is_file():
        return load_results_csv(csv)
    journal = folder / "optuna.journal"
    if journal.is_file():
        return load_optuna(journal, study, protocol)
    raise LoadError(f"no results.csv or optuna.journal in {folder}")


def _metrics_path(trial: pd.Series, folder: Path) -> Path | None:
    """Where a trial's metrics.csv lives: its run_dir (absolute, cwd- or run-root-relative) or trials/."""
    candidates = []
    run_dir = trial.get("run_dir")
    if isinstance(run_dir, str) and run_dir.strip():
        p = Path(run_dir)
        candidates += [p, folder / p, folder.parent / p, folder / "trials" / p.name]
    seed = trial.get("seed")
    if seed is not None and not (isinstance(seed, float) and math.isnan(seed)):
        candidates.append(folder / "trials" / f"{trial['row']}__seed{int(seed)}")
    for c in candidates:
        if (c / "metrics.csv").is_file():
            return c / "metrics.csv"
    return None


def _stored_curves(df: pd.DataFrame, folder: Path, storage: str | Path | None) -> dict[tuple, pd.DataFrame]:
    """Per-epoch rows the sweep put in the Optuna storage, keyed by (optuna study, trial number): read from
    `storage` when given, else from the run folder's `curves.csv` (the sweep's export of them; study key None)."""
    if storage is not None and "optuna_study" in df.columns:
        import optuna

        opened = _open_storage(storage)
        out = {}
        for name in df["optuna_study"].dropna().unique():
            for t in optuna.load_study(study_name=name, storage=opened).get_trials(deepcopy=False):
                if rows := curve_rows(t):
                    out[(name, t.number)] = pd.DataFrame(rows)
        return out
    path = folder / "curves.csv"
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
        raise LoadError(f"cannot parse {path}: {exc}") from exc
    if "trial" not in table.columns:
        return {}
    return {(None, int(n)): g.drop(columns=[c for c in ("trial", "row", "seed") if c in g.columns])
            for n, g in table.groupby("trial")}


def load_curves(df: pd.DataFrame, folder: str | Path, storage: str | Path | None = None) -> pd.DataFrame:
    """Per-epoch metrics of every finished trial, long format with `row`, `seed`, `trial` added.

    Taken from the Optuna storage (`storage`, or the run folder's `curves.csv` exported from it), so trials run
    on other machines have curves too; a trial not found there falls back to its run folder's metrics.csv.
    Trials with neither are skipped; the returned frame's `attrs["missing"]` counts them so a report can say so.
    """
    folder = Path(folder)
    stored = _stored_curves(df, folder, storage)
    frames, missing = [], 0
    for _, trial in df[df["state"] == FINISHED].iterrows():
        number = trial.get("trial")
        key = (trial.get("optuna_study") if storage is not None else None,
               int(number) if pd.notna(number) else None)
        if key in stored:
            m = stored[key]
        elif (path := _metrics_path(trial, folder)) is not None:
            m = pd.read_csv(path)
        else:
            missing += 1
            continue
        if "epoch" not in m.columns:
            missing += 1
            continue
        m = m.groupby("epoch", as_index=False).mean(numeric_only=True)  # Lightning may log split rows
        m.insert(0, "trial", trial.get("trial"))
        m.insert(0, "seed", trial.get("seed"))
        m.insert(0, "row", trial["row"])
        frames.append(m)
    out = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["row", "seed", "trial", "epoch"])
    out.attrs["missing"] = missing
    return out


def attach_predictions(df: pd.DataFrame, folder: str | Path) -> pd.DataFrame:
    """`df` with a `predictions` column (each finished trial's code, or None), for `analysis.per_image`.

    Read from the storage's user attrs when `df` came from there (it then has the column already), else from the
    run folder's `predictions.csv` (the sweep's export), else from the trial's own `result.json`. A study run
    before predictions were kept has none anywhere; its column is all None.
    """
    from lightning_modules.predictions import KEY

    out = df.copy()
    codes = out[KEY] if KEY in out.columns else pd.Series(None, index=out.index, dtype=object)
    folder = Path(folder)
    exported: dict[int, str] = {}
    path = folder / "predictions.csv"
    if path.is_file():
        try:
            table = pd.read_csv(path)
        except (pd.errors.EmptyDataError, pd.errors.ParserError) as exc:
            raise LoadError(f"cannot parse {path}: {exc}") from exc
        if {"trial", "key", "code"} <= set(table.columns):
            exported = {int(t): c for t, k, c in zip(table["trial"], table["key"], table["code"], strict=True)
                        if k == KEY and isinstance(c, str)}
    filled = []
    for i, trial in out.iterrows():
        code = codes.get(i)
        if not isinstance(code, str) and trial["state"] == FINISHED:
            number = trial.get("trial")
            code = exported.get(int(number)) if pd.notna(number) else None
            if code is None and (metrics := _metrics_path(trial, folder)) is not None:
                result = metrics.parent / "result.json"
                code = json.loads(result.read_text()).get(KEY) if result.is_file() else None
        filled.append(code if isinstance(code, str) else None)
    out[KEY] = pd.Series(filled, index=out.index, dtype=object)
    return out


def get_study_spec(name: Any) -> Any | None:
    """The `ablations.Study` for `name` (a built-in name, a study file `*.toml`, `module:NAME`, or a `Study`), or
    None when ablations is unavailable or has no such built-in study; a bad study file is a ValueError."""
    try:
        import ablations
    except ImportError:
        return None
    if isinstance(name, ablations.Study):
        return name
    if str(name).endswith(".toml") or ":" in str(name):
        from ablations.study_file import resolve_study

        return resolve_study(str(name))
    try:
        return ablations.get_study(name)
    except (KeyError, ValueError, LookupError):
        return None
