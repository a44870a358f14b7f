"""Checks that run once, before the first trial of a sweep: whatever would fail every trial the same way.

A bad recipe value, a row that does not build, an eval size that is not a size, or a corrupt archive used to fail
inside each trial (the same message once per cell, exit 1, and advice to retry). Here they are found once, before
the storage is touched, and `sweeps/run.py` turns them into one line and exit status 2.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from ablations import Study
from sweeps import tune
from sweeps.protocols import Protocol
from sweeps.trainers import check_trial, trial_config


class PreflightError(ValueError):
    """Something every trial of the sweep would fail on; one line naming the value and what is allowed."""


def _tune_corners(study: Study, epochs: int) -> list[dict]:
    """The search space's lowest and highest values (first and last choices): both ends of every range."""
    import optuna

    ends = []
    for end in (0, -1):
        fixed = {name: (p.choices[end] if p.kind == "categorical" else (p.low, p.high)[end])
                 for name, p in study.search_space.items()}
        ends.append(tune.suggest_hparams(optuna.trial.FixedTrial(fixed), study, epochs))
    return ends


def check_recipe(study: Study, protocol: Protocol, rows: list[str], settings: dict | None = None) -> None:
    """Build every row's run config (with the sweep's ``settings``: eval sizes, checkpointing, loggers) and model
    config (for tune studies at both ends of the search space), and plan every eval size, exactly as a trial would;
    PreflightError on the first that fails."""
    variants = _tune_corners(study, protocol.recipe.epochs) if study.kind == "tune" else [{}]
    for hp in variants:
        for row in rows:
            try:  # a study file's row may change the recipe: trial_config applies it to the protocol's
                check_trial(trial_config(study, protocol, row, 0, Path("preflight"), hp, **(settings or {})))
            except (ValueError, TypeError, KeyError) as e:
                where = f"row {row!r}" + (f" with {hp}" if hp else "")
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise PreflightError(f"{study.source or study.name} on {protocol.name}, {where}: {msg}") from None


def verify_data(dataset: str, data_dir: Path | None, download: bool) -> str | None:
    """Open and check the archive once (download it first with `download`): structure, labels, class counts, md5.

    Returns the archive's warning (an unofficial copy: it passed the structural checks) for the caller to print
    once; trials of this sweep should then ignore `UnofficialArchiveWarning`. PreflightError on anything else.
    An ImageFolder tree has no archive: `sweeps.run.image_folder_dir` checked it when it was found."""
    if dataset == "imagefolder":
        return None
    from lightning_modules.cifar import DatasetError, UnofficialArchiveWarning, load_cifar

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UnofficialArchiveWarning)
        try:
            load_cifar(dataset, data_dir, download_ok=download)
        except (DatasetError, OSError) as e:
            raise PreflightError(str(e).strip().splitlines()[0]) from None
    notes = []
    for w in caught:
        if issubclass(w.category, UnofficialArchiveWarning):
            notes.append(str(w.message))
        else:  # anything else (an unwritable cache, ...) is passed on as it came
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return notes[0] if notes else None


def check_budget(protocol: Protocol, data_dir: Path | None) -> None:
    """The protocol's data budget (``val_size``, ``train_subset``) against the data's real size, through the data
    modules' own split function, so a budget the data cannot give stops the sweep once instead of every trial."""
    from lightning_modules.data_base import split_indices

    if protocol.dataset == "imagefolder":
        from lightning_modules.imagefolder import scan_image_folder

        index = scan_image_folder(data_dir, protocol.classes)
        train_y, test_y, where = index.train_labels, index.test_labels, f"{Path(data_dir) / 'train'}"
    else:
        from lightning_modules.cifar import UnofficialArchiveWarning, load_cifar

        with warnings.catch_warnings():  # verify_data has said it
            warnings.simplefilter("ignore", UnofficialArchiveWarning)
            arrays = load_cifar(protocol.dataset, data_dir)
        train_y, test_y, where = arrays.train_y, arrays.test_y, f"{protocol.dataset}'s training set"
    try:
        split_indices(train_y, len(test_y), test_y, **protocol.config.budget(), seed=0, where=where)
    except ValueError as e:
        raise PreflightError(f"protocol {protocol.name}: {e}") from None


def ignore_archive_warning() -> None:
    """For the rest of this process (or the enclosing `warnings.catch_warnings`): the sweep has said it once."""
    from lightning_modules.cifar import UnofficialArchiveWarning

    warnings.filterwarnings("ignore", category=UnofficialArchiveWarning)
