"""A user's own study: declared in a TOML file (or a `Study` object in a module), validated before any trial.

    name = "smoothing"
    default_row = "base"
    [[rows]]
    label = "base"
    [[rows]]
    label = "ls"
    label_smoothing = 0.1      # a `Recipe` field
    [[rows]]
    label = "zero-pad"
    padding = "zero"           # a `HireMLPConfig` field

A factorial study has `[factors]` (field = [levels]) instead of rows: its rows are the product of the levels, and
the first level of each factor makes the default row unless `default_row` names another. Every value is
normalised to the form the config or recipe holds (`"4,3,3,2"` and `[4, 3, 3, 2]` are one region size), so the
study's identity (`sweeps.grid.spec`) is what its rows train, not how the file is written. Every problem is one
`StudyFileError` line naming the file, the row and the field.
"""

from __future__ import annotations

import dataclasses
import importlib
import itertools
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ablations.studies import STUDIES, Row, Study

TOP_KEYS = ("name", "description", "default_row", "base_preset", "eval_sizes", "rows", "factors")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LABEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")  # a folder name, no comma (--rows splits on commas)
NOT_ROW_FIELDS = {"num_classes": "the dataset sets it"}
FILE_FOLDER = Path("studies")  # `--list` shows the *.toml files in this folder of the working directory


class StudyFileError(ValueError):
    """A bad study file: one line naming the file, the row and the field."""


def model_fields() -> tuple[str, ...]:
    from hiremlp.config import field_names

    return tuple(f for f in field_names() if f not in NOT_ROW_FIELDS)


def recipe_field_names() -> tuple[str, ...]:
    from lightning_modules.recipe import recipe_fields

    return recipe_fields()


def _canonical_model(where: str, preset: str, name: str, value: Any) -> Any:
    """`value` as `HireMLPConfig` holds it (tuples, not the string forms), checked on `preset`."""
    from hiremlp import row_config

    try:
        return getattr(row_config(preset, {name: value}), name)
    except (ValueError, TypeError) as e:
        raise StudyFileError(f"{where}: {_first_line(e)}") from None


def _canonical_recipe(where: str, name: str, value: Any) -> Any:
    from lightning_modules.recipe import Recipe

    default = getattr(Recipe(), name)
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # `label_smoothing = 0` and `= 0.0` are one recipe
    try:
        return getattr(Recipe().replace(**{name: value}), name)
    except (ValueError, TypeError) as e:
        raise StudyFileError(f"{where}: {_first_line(e)}") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _split(where: str, preset: str, fields: Mapping[str, Any]) -> tuple[dict, dict]:
    """A row's fields as (model overrides, recipe changes), each value normalised; unknown fields raise."""
    model, recipe = {}, {}
    for name, value in fields.items():
        at = f"{where}, field {name!r}"
        if name in NOT_ROW_FIELDS:
            raise StudyFileError(f"{at}: not a row field ({NOT_ROW_FIELDS[name]})")
        if name in model_fields():
            model[name] = _canonical_model(at, preset, name, value)
        elif name in recipe_field_names():
            recipe[name] = _canonical_recipe(at, name, value)
        else:
            raise StudyFileError(f"{at}: unknown field; allowed: a HireMLPConfig field ({', '.join(model_fields())}) "
                                 f"or a Recipe field ({', '.join(recipe_field_names())})")
    return model, recipe


def _value(where: str, preset: str, name: str, value: Any) -> Any:
    """One field's normalised value, model or recipe."""
    model, recipe = _split(where, preset, {name: value})
    return {**model, **recipe}[name]


def level_name(preset: str, name: str, value: Any) -> str:
    """A level's part of a generated row label, from its normalised value (so every spelling of a level gives one
    label): a string level itself, a per-stage level as "4-3-3-2" (square regions as one number), else name=value."""
    if name in model_fields() and not isinstance(value, str):
        from hiremlp import row_config

        flat = row_config(preset, {name: value}).to_flat()[name]
        if isinstance(value, tuple):
            return re.sub(r"\b(\d+)x\1\b", r"\1", str(flat)).replace(",", "-")
        value = flat
    if isinstance(value, str):
        return value.replace(",", "-").replace(" ", "")
    return f"{name}={str(value).lower()}"


def _factor_rows(where: str, preset: str, factors: Any) -> tuple[list[dict], tuple]:
    if not isinstance(factors, Mapping) or not factors:
        raise StudyFileError(f"{where}: [factors] must map a field to a list of levels, e.g. padding = [\"circular\", "
                             f"\"zero\"]")
    canonical = []
    for name, levels in factors.items():
        at = f"{where}, factor {name!r}"
        if not isinstance(levels, list) or len(levels) < 2:
            raise StudyFileError(f"{at}: needs a list of at least 2 levels, got {levels!r}")
        values = [_value(at, preset, name, level) for level in levels]
        twice = next((levels[i] for i, v in enumerate(values) if v in values[:i]), None)
        if twice is not None:
            raise StudyFileError(f"{at}: level {twice!r} is given twice (after normalisation)")
        canonical.append((name, tuple(values)))
    rows = []
    for combo in itertools.product(*(range(len(levels)) for _, levels in canonical)):
        fields = {name: levels[i] for (name, levels), i in zip(canonical, combo, strict=True)}
        label = "+".join(level_name(preset, name, value) for name, value in fields.items())
        rows.append({"label": label, **fields})
    return rows, tuple(canonical)


def study_from_dict(data: Mapping[str, Any], source: str) -> Study:
    """The `Study` a parsed study file declares; StudyFileError naming `source`, the row and the field."""
    from hiremlp import PRESETS, row_config

    unknown = [k for k in data if k not in TOP_KEYS]
    if unknown:
        raise StudyFileError(f"{source}: unknown key {unknown[0]!r}; allowed: {', '.join(TOP_KEYS)}")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise StudyFileError(f"{source}: name = {name!r} must be a string of letters, digits, '_', '.', '-'")
    if name in STUDIES:
        raise StudyFileError(f"{source}: name {name!r} is a built-in study; choose another name")
    preset = data.get("base_preset")
    if preset is not None and preset not in PRESETS:
        raise StudyFileError(f"{source}: base_preset = {preset!r} is not a preset; allowed: {', '.join(PRESETS)}")
    check_preset = preset or "smoke"  # the protocol's preset is checked again before the first trial
    if ("rows" in data) == ("factors" in data):
        both = "both" if "rows" in data else "neither"
        raise StudyFileError(f"{source}: give either [[rows]] or [factors], not {both}")
    factors: tuple = ()
    if "factors" in data:
        raw_rows, factors = _factor_rows(source, check_preset, data["factors"])
    else:
        raw_rows = data["rows"]
        if not isinstance(raw_rows, list) or not raw_rows or not all(isinstance(r, Mapping) for r in raw_rows):
            raise StudyFileError(f"{source}: rows must be [[rows]] tables, at least one")
    rows: list[Row] = []
    for i, raw in enumerate(raw_rows):
        label = raw.get("label")
        if not isinstance(label, str) or not LABEL_RE.match(label):
            raise StudyFileError(f"{source}: row {i + 1}: label = {label!r} must be a string of letters, digits, "
                                 f"'_', '.', '=', '+', '-' (no comma)")
        where = f"{source}, row {label!r}"
        if label in (r.label for r in rows):
            raise StudyFileError(f"{where}: duplicate label; each row needs its own")
        model, recipe = _split(where, check_preset, {k: v for k, v in raw.items() if k != "label"})
        rows.append(Row(label, model, recipe=recipe))
    labels = [r.label for r in rows]
    default = data.get("default_row", labels[0])
    if default not in labels:
        raise StudyFileError(f"{source}: default_row = {default!r} is not a row; rows: {', '.join(labels)}")
    base = next(r for r in rows if r.label == default)
    base_cfg = row_config(check_preset, base.overrides)
    for r in rows:
        if r.label != default and row_config(check_preset, r.overrides) == base_cfg and r.recipe == base.recipe:
            raise StudyFileError(f"{source}, row {r.label!r}: trains exactly what the default row {default!r} "
                                 f"trains (same model and recipe); change a field or drop the row")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise StudyFileError(f"{source}: description must be a string, got {description!r}")
    sizes = data.get("eval_sizes", [])
    if not isinstance(sizes, list) or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0
                                              for s in sizes):
        raise StudyFileError(f"{source}: eval_sizes = {sizes!r} must be a list of positive integers, e.g. [24, 28]")
    return Study(name=name, description=description or f"a study file ({source})", paper_table=None,
                 rows=tuple(rows), default_row=default, base_preset=preset, eval_sizes=tuple(sizes),
                 factors=factors, source=source)


def load_study_file(path: str | Path) -> Study:
    """The study in the TOML file at `path`; StudyFileError (one line) on a missing, unparsable or bad file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise StudyFileError(f"{path}: cannot read the study file ({e.strerror or e})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise StudyFileError(f"{path}: not valid TOML: {_first_line(e)}") from None
    return study_from_dict(data, str(path))


def load_entry_point(text: str) -> Study:
    """`package.module:NAME`, a `Study` object for programmatic users."""
    module, _, attr = text.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise StudyFileError(f"--study {text}: cannot import it ({_first_line(e)})") from None
    if not isinstance(obj, Study):
        raise StudyFileError(f"--study {text}: {type(obj).__name__} is not an ablations.Study")
    return obj if obj.source else dataclasses.replace(obj, source=text)


def resolve_study(text: str) -> Study:
    """A built-in study's name, a `.toml` file, or `module:NAME`; ValueError (one line) otherwise."""
    if text in STUDIES:
        return STUDIES[text]
    if text.endswith(".toml"):
        return load_study_file(text)
    if ":" in text:
        return load_entry_point(text)
    raise StudyFileError(f"unknown study {text!r}; allowed: {', '.join(STUDIES)}, a path/to/study.toml, or "
                         f"package.module:STUDY")


def file_studies(folder: Path = FILE_FOLDER) -> list[tuple[Path, Study | str]]:
    """Each `*.toml` in `folder` with its study, or the line saying why it is not one."""
    found: list[tuple[Path, Study | str]] = []
    for path in sorted(folder.glob("*.toml")) if folder.is_dir() else []:
        try:
            found.append((path, load_study_file(path)))
        except StudyFileError as e:
            found.append((path, str(e)))
    return found
