"""Before a sweep: the difference its seeds will be able to detect, from an earlier run of the same protocol.

The spread that matters is that of the per-seed differences between a row and its default row (the paired
comparison the table makes). An earlier run of the same study on the same protocol is the best estimate; failing
that, the other studies run on the same named protocol are pooled. Without either, nothing is claimed in advance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.load import FINISHED, LoadError, get_study_spec, load_results_csv
from analysis.stats import ALPHA, POWER, paired_detectable_difference, seeds_for_half_width
from analysis.tables import pick_metric


@dataclass(frozen=True)
class SeedSpread:
    """The pooled standard deviation of per-seed differences to the default row, and where it comes from."""

    sd: float
    df: int  # sum over rows of (pairs - 1)
    pairs: int
    sources: tuple[str, ...]


def paired_spread(df: pd.DataFrame, default_row: str) -> tuple[float, int, int]:
    """(sum of squared deviations, degrees of freedom, pairs) of the per-seed differences of each row to
    `default_row`, over the seeds both finished."""
    metric = pick_metric(df)
    ok = df[(df["state"] == FINISHED) & df["seed"].notna() & df[metric].notna()]
    wide = ok.drop_duplicates(["row", "seed"], keep="last").pivot(index="seed", columns="row", values=metric)
    if default_row not in wide.columns:
        return 0.0, 0, 0
    ss, dof, pairs = 0.0, 0, 0
    for row in wide.columns:
        if row == default_row:
            continue
        d = (wide[row] - wide[default_row]).dropna().to_numpy(dtype=float)
        if d.size >= 2:
            ss += float(((d - d.mean()) ** 2).sum())
            dof += d.size - 1
            pairs += d.size
    return ss, dof, pairs


def _same_recipe(df: pd.DataFrame, recipe: Mapping[str, object]) -> bool:
    """True unless the results record a column (`protocol.<field>`, `recipe.<field>`) that differs from `recipe`."""
    for col, want in recipe.items():
        if col not in df.columns:
            continue
        for got in df[col].dropna().unique():
            try:
                same = float(got) == float(want)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                same = str(got) == str(want)
            if not same:
                return False
    return True


def earlier_spread(runs_dir: Path, study: str, label: str, recipe: Mapping[str, object]) -> SeedSpread | None:
    """The seed spread of earlier runs of this protocol in `runs_dir`: `<study>-<label>` if it has one, else every
    `<other study>-<label>` (a named protocol only: a `+hash` label belongs to one study's recipe variant)."""
    runs_dir = Path(runs_dir)
    own = runs_dir / f"{study}-{label}" / "results.csv"
    candidates = [own] if own.is_file() else []
    if not candidates and "+" not in label and runs_dir.is_dir():
        candidates = sorted(p for p in runs_dir.glob(f"*-{label}/results.csv") if p != own)
    ss, dof, pairs, sources = 0.0, 0, 0, []
    for path in candidates:
        try:
            df = load_results_csv(path)
        except LoadError:
            continue
        name = path.parent.name[: -len(label) - 1]
        spec = get_study_spec(name)
        if spec is None or getattr(spec, "kind", "table") != "table" or not _same_recipe(df, recipe):
            continue
        s, d, p = paired_spread(df, spec.default_row)
        if d:
            ss, dof, pairs = ss + s, dof + d, pairs + p
            sources.append(str(path.parent))
    if not dof:
        return None
    return SeedSpread(math.sqrt(ss / dof), dof, pairs, tuple(sources))


def plan_text(runs_dir: Path, study: str, label: str, recipe: Mapping[str, object], seeds: int,
              target_ci: float | None = None, max_seeds: int | None = None) -> str:
    """Lines for `--dry-run`: the detectable difference with `seeds` seeds (and, with a target half-width, about how
    many seeds a row will need), or why it cannot be said in advance."""
    spread = earlier_spread(runs_dir, study, label, recipe)
    if spread is None:
        return (f"detectable difference: not known in advance (no earlier run of protocol '{label}' with 2+ paired "
                f"seeds in {runs_dir}); the report states it per row")
    src = spread.sources[0] if len(spread.sources) == 1 else f"{len(spread.sources)} studies in {runs_dir}"
    where = (f"sd of per-seed differences to the default row {spread.sd:.2f} points over {spread.pairs} pairs "
             f"in an earlier run of this protocol ({src})")
    power = f"{POWER:.0%} power, {ALPHA:.0%} two-sided, paired"
    lines = []
    if seeds >= 2:
        lines.append(f"detectable difference ({power}): ~{paired_detectable_difference(spread.sd, seeds):.2f} points "
                     f"with {seeds} seeds per row; {where}")
    else:
        lines.append(f"detectable difference: none with 1 seed per row (no interval); {where}")
    if target_ci is not None and max_seeds is not None:
        need = seeds_for_half_width(spread.sd, target_ci, max_n=max_seeds)
        needed = (f"about {max(need, seeds)} seeds per row" if need is not None
                  else f"more than --max-seeds {max_seeds} (rows will stop there)")
        at_max = paired_detectable_difference(spread.sd, max_seeds)
        lines.append(f"--target-ci {target_ci:g}: with that spread a row needs {needed} for a 95% half-width <= "
                     f"{target_ci:g}; at {max_seeds} seeds the detectable difference is ~{at_max:.2f} points")
    return "\n".join(lines)
