"""Seeds until the answer is clear (`sweeps/run.py --target-ci H`): the rule, as a function of finished results.

Every row runs `min_seeds` seeds. A row whose 95% CI for the difference to the default row has a half-width above H
gets its next seed, one at a time, until the half-width is at or below H or the row has `max_seeds`. The default
row runs as many seeds as the row with the most, so that every difference stays paired. The rule reads the
interval's width only, never its sign or whether it excludes 0, so stopping does not select for a direction or for
significance.

`decide` is a pure function of the finished (row, seed) -> value results, and a row's next seed is decided only once
all of its earlier seeds (and the default row's) have finished; so the seed counts do not depend on the order in
which cells finished, on how many workers ran them, or on a crash and restart in between. The sweep (`sweeps/
adaptive.py`) turns the decision into grid cells; the report uses the same function to say why each row stopped.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import scipy.stats as sps

from analysis.stats import diff_ci
from analysis.two_level import two_level_diff_ci

RULE_FILE = "seed_rule.json"


@dataclass(frozen=True)
class SeedRule:
    """What `--target-ci` asked for: half-width target (points), first and last seed counts, over which rows."""

    target_ci: float
    min_seeds: int
    max_seeds: int
    default_row: str
    rows: tuple[str, ...]
    metric: str = "test_acc"
    level: float = 0.95
    design: Mapping | None = None  # a factorial study's `analysis.factorial.Design` (JSON): the rule is on contrasts
    # decide on the interval that also counts the test images where both rows kept per-image predictions (the one
    # the table decides with); rules recorded before it existed read False, as they ran
    images: bool = False

    def __post_init__(self) -> None:
        if not (self.target_ci > 0 and math.isfinite(self.target_ci)):
            raise ValueError(f"target half-width must be a positive number of points, got {self.target_ci}")
        if self.min_seeds < 2:
            raise ValueError(f"an interval needs at least 2 seeds per row, got {self.min_seeds}")
        if self.max_seeds < self.min_seeds:
            raise ValueError(f"max seeds ({self.max_seeds}) is below the first seeds ({self.min_seeds})")
        if self.default_row not in self.rows:
            raise ValueError(f"the default row {self.default_row!r} must be among the rows {list(self.rows)}")

    def describe(self) -> str:
        """The rule in one sentence, for the report and the logs."""
        if self.design is not None:
            return (f"every row ran {self.min_seeds} seeds; while the widest {self.level:.0%} CI of the main effects "
                    f"and interactions had a half-width above {self.target_ci:g} points, every row got one more "
                    f"seed, up to {self.max_seeds} (the rows keep the same seeds, so each contrast stays paired); "
                    "the rule looks at the intervals' widths only, never at their signs or significance")
        which = " (counting the test images, where both rows kept predictions)" if self.images else ""
        return (f"every row ran {self.min_seeds} seeds; a row whose {self.level:.0%} CI{which} for the difference to "
                f"'{self.default_row}' had a half-width above {self.target_ci:g} points got one more seed at a time, "
                f"up to {self.max_seeds} (the default row runs as many seeds as the row with the most); the rule "
                "looks at the interval's width only, never at its sign or significance")

    def to_json(self) -> dict:
        out = {**asdict(self), "rows": list(self.rows)}
        if self.design is None:
            del out["design"]  # a rule of row differences is recorded as before factorial studies
        if not self.images:
            del out["images"]
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> SeedRule:
        return cls(**{**data, "rows": tuple(data["rows"])})


@dataclass(frozen=True)
class RowDecision:
    """Where a row stands under the rule: the seeds it gets (so far) and why.

    `state`: "reference" (the default row), "clear" (half-width <= target), "max seeds" (stopped at the cap),
    "test images" (stopped: the test images' part of the interval alone is wider than the target, so no number of
    seeds reaches it), "more seeds" (its last decision asked for another seed, which has not finished). `half_width`
    is the one of that last decision (NaN before any); `floor` the test images' part (NaN without predictions).
    """

    row: str
    seeds: int
    state: str
    half_width: float
    floor: float = math.nan

    def describe(self, rule: SeedRule) -> str:
        hw = "no interval yet" if math.isnan(self.half_width) else f"half-width {self.half_width:.2f}"
        if self.state == "reference":
            return f"{self.seeds} seeds (reference)"
        if self.state == "clear":
            return f"{self.seeds} seeds ({hw} <= {rule.target_ci:g})"
        if self.state == "max seeds":
            return f"{self.seeds} seeds (stopped at --max-seeds; {hw})"
        if self.state == "test images":
            return (f"{self.seeds} seeds (stopped: {hw}, of which the test images alone give ±{self.floor:.2f} > "
                    f"{rule.target_ci:g}, which no number of seeds can shrink; --test-subset scores more images)")
        return f"{self.seeds} seeds so far (waiting for seed {self.seeds - 1}; {hw} > {rule.target_ci:g})"


def decide(values: Mapping[str, Mapping[int, float]], rule: SeedRule,
           correct: Mapping[str, Mapping[int, np.ndarray]] | None = None) -> dict[str, RowDecision]:
    """The seed count of every row of `rule.rows` given the finished results `values[row][seed]` and, for a rule
    with `images`, each finished trial's per-image outcomes `correct[row][seed]` (1 where that image was right)."""
    if rule.design is not None:
        return _decide_contrasts(values, rule)
    ref = values.get(rule.default_row, {})
    seeds = {r: rule.min_seeds for r in rule.rows}
    last: dict[str, tuple[str, float]] = {}
    for row in rule.rows:
        if row == rule.default_row:
            continue
        mine = values.get(row, {})
        state, hw, floor = "more seeds", math.nan, math.nan
        while True:
            k = seeds[row]
            if any(s not in mine or s not in ref for s in range(k)):
                break  # the next decision waits for these seeds
            hw, floor = _half_width(row, k, mine, ref, correct if rule.images else None, rule)
            if hw <= rule.target_ci:
                state = "clear"
                break
            if floor > rule.target_ci:
                state = "test images"
                break
            if k >= rule.max_seeds:
                state = "max seeds"
                break
            seeds[row] = k + 1
        last[row] = (state, hw, floor)
    seeds[rule.default_row] = max(seeds.values())
    out = {}
    for row in rule.rows:
        state, hw, floor = last.get(row, ("reference", math.nan, math.nan))
        out[row] = RowDecision(row, seeds[row], state, hw, floor)
    return out


def _half_width(row: str, k: int, mine: Mapping[int, float], ref: Mapping[int, float],
                correct: Mapping[str, Mapping[int, np.ndarray]] | None, rule: SeedRule) -> tuple[float, float]:
    """(half-width, its test images' part) of the row's difference over seeds 0..k-1: the interval that counts the
    test images when both rows have every seed's outcomes on the same images, else the seeds-only one (NaN part)."""
    first = range(k)
    a, b = (correct or {}).get(row, {}), (correct or {}).get(rule.default_row, {})
    if all(s in a and s in b for s in first) and len({x.shape for s in first for x in (a[s], b[s])}) == 1:
        tl = two_level_diff_ci(np.stack([a[s] for s in first]), np.stack([b[s] for s in first]), rule.level)
        z = float(sps.norm.ppf(0.5 + rule.level / 2))
        return tl.both.half_width, z * math.sqrt(tl.var_image)
    return diff_ci({s: mine[s] for s in first}, {s: ref[s] for s in first}, rule.level).half_width, math.nan


def _decide_contrasts(values: Mapping[str, Mapping[int, float]], rule: SeedRule) -> dict[str, RowDecision]:
    """A factorial study: all rows move together, one seed at a time, until the widest contrast interval is at or
    below the target (or the cap); each decision waits for every row's earlier seeds."""
    from analysis.factorial import Design, contrasts

    design = Design.from_json(rule.design)
    k, state, hw = rule.min_seeds, "more seeds", math.nan
    while all(s in values.get(r, {}) for r in rule.rows for s in range(k)):
        first = {r: {s: values[r][s] for s in range(k)} for r in rule.rows}
        hw = max(c.ci.half_width for c in contrasts(design, first))
        if hw <= rule.target_ci:
            state = "clear"
            break
        if k >= rule.max_seeds:
            state = "max seeds"
            break
        k += 1
    return {r: RowDecision(r, k, "reference" if r == rule.default_row else state, hw) for r in rule.rows}


def finished(decisions: Mapping[str, RowDecision]) -> bool:
    """True when no row waits for a decision (every seed asked for may still be running)."""
    return all(d.state != "more seeds" for d in decisions.values())


def write_rule(folder: Path, rule: SeedRule) -> None:
    """Record the rule beside the results (atomic), so the report can state it."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{RULE_FILE}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(rule.to_json(), indent=2, sort_keys=True) + "\n")
    os.replace(tmp, folder / RULE_FILE)


def read_rule(folder: Path) -> SeedRule | None:
    """The rule the last `--target-ci` invocation recorded in `folder`, or None (a fixed seed count)."""
    path = Path(folder) / RULE_FILE
    if not path.is_file():
        return None
    try:
        return SeedRule.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError):
        return None


def seeds_sentence(rule: SeedRule | None, values: Mapping[str, Mapping[int, float]], rows: Sequence[str],
                   counts: Mapping[str, int], correct: Mapping[str, Mapping[int, np.ndarray]] | None = None) -> str:
    """What the report says about seeds: a fixed count, or the rule and what it gave each row."""
    if rule is None:
        distinct = sorted({int(counts[r]) for r in rows if counts.get(r)})
        if not distinct:
            return "Seeds: no finished trials yet."
        if len(distinct) == 1:
            return f"Seeds: a fixed {distinct[0]} per row (no --target-ci rule was used)."
        return ("Seeds: a fixed count chosen on the command line, not a stopping rule; per row: "
                + ", ".join(f"{r} {counts.get(r, 0)}" for r in rows) + ".")
    decisions = decide(values, rule, correct)
    parts = [f"{r}: {decisions[r].describe(rule)}" + (f", {counts[r]} in the table" if counts.get(r, 0) !=
                                                       decisions[r].seeds else "")
             for r in rule.rows if r in decisions]
    return (f"Seeds were chosen by `--target-ci {rule.target_ci:g} --max-seeds {rule.max_seeds}`: {rule.describe()}. "
            "Per row: " + "; ".join(parts) + ".")
