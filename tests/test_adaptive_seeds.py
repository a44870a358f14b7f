"""`--target-ci`: seeds until each row's interval is narrow enough, as ordinary resumable grid cells.

The rule itself is checked as a pure function; the sweep runs with the fake trainer whose test accuracy has known
row effects, a shared per-seed component and per-row noise (`tests.sweep_fakes.SeedNoiseModel`), in milliseconds per
trial; the kill/resume test runs the real CLI in subprocesses."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis.seed_rule import SeedRule, decide
from analysis.stats import diff_ci, paired_detectable_difference
from analysis.two_level import two_level_diff_ci
from sweeps.run import main
from tests.sweep_fakes import FAKE

REPO = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(REPO / "sweeps" / "run.py")]
ROWS = ("zero", "circular", "reflect", "replicate")
# quiet zero stops at 3 seeds, noisy reflect runs to the cap, replicate stops in between (fixed per-cell draws)
MODEL_ENV = {"SWEEP_FAKE_EFFECTS": "zero=-0.5,circular=0,reflect=-1,replicate=0", "SWEEP_FAKE_SEED_SD": "1",
             "SWEEP_FAKE_NOISE_SD": "zero=0.05,circular=0.05,reflect=0.8,replicate=0.25"}
TARGET, FIRST, CAP = 0.3, 3, 8


def adaptive_args(runs: Path, *extra: str) -> list[str]:
    return ["--study", "padding", "--protocol", "smoke", "--trainer", FAKE, "--runs-dir", str(runs),
            "--target-ci", str(TARGET), "--max-seeds", str(CAP), *extra]


@pytest.fixture
def model_env(tmp_path, monkeypatch):
    for key, value in MODEL_ENV.items():
        monkeypatch.setenv(key, value)
    for var in ("SWEEP_FAKE_FAIL", "SWEEP_FAKE_NAN", "SWEEP_FAKE_SLEEP"):
        monkeypatch.delenv(var, raising=False)
    log = tmp_path / "fake.log"
    monkeypatch.setenv("SWEEP_FAKE_LOG", str(log))
    return log


def completed(runs: Path) -> pd.DataFrame:
    df = pd.read_csv(runs / "padding-smoke" / "results.csv")
    return df[df["state"] == "COMPLETE"]


def seeds_per_row(runs: Path) -> dict[str, list[int]]:
    done = completed(runs)
    return {r: sorted(int(s) for s in done.loc[done["row"] == r, "seed"]) for r in ROWS}


def half_width(done: pd.DataFrame, row: str, k: int) -> float:
    by = {r: dict(zip(g["seed"].astype(int), g["test_acc"], strict=True)) for r, g in done.groupby("row")}
    return diff_ci({s: by[row][s] for s in range(k)}, {s: by["circular"][s] for s in range(k)}).half_width


# ----------------------------------------------------------------------------------------------- the rule


def _rule(**kw) -> SeedRule:
    return SeedRule(**{"target_ci": 1.0, "min_seeds": 3, "max_seeds": 5, "default_row": "ref",
                       "rows": ("ref", "steady", "noisy", "waiting"), **kw})


REF = {s: 80.0 + s for s in range(6)}
VALUES = {"ref": REF,
          "steady": {s: REF[s] + 0.5 + 0.01 * (s % 2) for s in range(3)},  # differences 0.50/0.51: tiny half-width
          "noisy": {s: REF[s] + (3.0 if s % 2 else -3.0) for s in range(6)},  # +-3: never within 1.0 by 5 seeds
          "waiting": {s: REF[s] + (2.0 if s % 2 else -2.0) for s in (0, 1, 2, 4)}}  # seed 3 not finished


def test_rule_known_answers():
    d = decide(VALUES, _rule())
    assert (d["steady"].seeds, d["steady"].state) == (3, "clear") and d["steady"].half_width < 0.1
    assert (d["noisy"].seeds, d["noisy"].state) == (5, "max seeds") and d["noisy"].half_width > 1.0
    # 3 seeds were too wide, so seed 3 was asked for; seed 4 exists but is not used before seed 3 finishes
    assert (d["waiting"].seeds, d["waiting"].state) == (4, "more seeds")
    assert (d["ref"].seeds, d["ref"].state) == (5, "reference")  # as many as the row with the most


def test_rule_looks_at_the_width_only():
    """Mirroring a row around the reference (flipping every difference's sign) or shifting it by a constant (making
    it as significant as you like) leaves every decision unchanged."""
    base = decide(VALUES, _rule())
    for transform in (lambda v, s: 2 * REF[s] - v, lambda v, s: v + 7.0):
        moved = {r: ({s: transform(v, s) for s, v in vals.items()} if r != "ref" else vals)
                 for r, vals in VALUES.items()}
        now = decide(moved, _rule())
        assert {r: (d.seeds, d.state) for r, d in now.items()} == {r: (d.seeds, d.state) for r, d in base.items()}
        for r, d in now.items():
            assert d.half_width == pytest.approx(base[r].half_width, nan_ok=True)


def test_rule_does_not_depend_on_result_order():
    reordered = {r: dict(reversed(list(v.items()))) for r, v in reversed(list(VALUES.items()))}
    assert decide(reordered, _rule()) == decide(VALUES, _rule())


@pytest.mark.parametrize("kw, needle", [({"target_ci": 0.0}, "positive"), ({"min_seeds": 1}, "at least 2"),
                                        ({"max_seeds": 2}, "below"), ({"default_row": "nope"}, "among the rows")])
def test_rule_rejects_bad_settings(kw, needle):
    with pytest.raises(ValueError, match=needle):
        _rule(**kw)


def _outcomes(rng, seeds: int, images: int, right: float, fixed: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Per-seed 0/1 outcomes: each image right with probability `right`, except `fixed` images (always their
    value, the same for every seed: a per-image effect no seed averages away)."""
    out = {}
    for s in range(seeds):
        o = (rng.random(images) < right).astype(float)
        if fixed is not None:
            o[: len(fixed)] = fixed
        out[s] = o
    return out


def _accuracies(correct: dict[int, np.ndarray]) -> dict[int, float]:
    return {s: 100.0 * float(o.mean()) for s, o in correct.items()}


def test_rule_with_images_decides_on_the_interval_that_counts_the_test_images():
    """Where both rows kept predictions, the half-width is the table's interval with test images
    (`two_level_diff_ci`: its own variance and degrees of freedom, so it can be wider or narrower than the
    seeds-only one); without predictions it is the seeds-only one."""
    rng = np.random.default_rng(0)
    ref, row = _outcomes(rng, 4, 400, 0.6), _outcomes(rng, 4, 400, 0.62)
    values = {"ref": _accuracies(ref), "row": _accuracies(row)}
    rule = SeedRule(100.0, 3, 4, "ref", ("ref", "row"), images=True)
    with_images = decide(values, rule, {"ref": ref, "row": row})["row"]
    want = two_level_diff_ci(np.stack([row[s] for s in range(3)]), np.stack([ref[s] for s in range(3)]))
    assert with_images.half_width == pytest.approx(want.both.half_width)
    assert with_images.half_width != pytest.approx(want.seeds.half_width) and math.isfinite(with_images.floor)
    seeds_only = decide(values, rule)["row"]  # no predictions: as before
    assert seeds_only.half_width == pytest.approx(want.seeds.half_width) and math.isnan(seeds_only.floor)
    assert decide(values, SeedRule(100.0, 3, 4, "ref", ("ref", "row")), {"ref": ref, "row": row})["row"] == \
        seeds_only  # a rule recorded without `images` decides as it ran


def test_rule_stops_when_the_test_images_alone_are_wider_than_the_target():
    """Two rows that disagree on the same images for every seed: the images' part of the interval does not shrink
    with seeds, so the rule stops at the first decision instead of running to the cap, and says why."""
    rng = np.random.default_rng(1)
    ref = _outcomes(rng, 3, 200, 0.6, fixed=np.r_[np.ones(40), np.zeros(40)])
    row = _outcomes(rng, 3, 200, 0.6, fixed=np.r_[np.zeros(40), np.ones(40)])
    rule = SeedRule(1.0, 3, 10, "ref", ("ref", "row"), images=True)
    d = decide({"ref": _accuracies(ref), "row": _accuracies(row)}, rule, {"ref": ref, "row": row})["row"]
    assert (d.seeds, d.state) == (3, "test images") and d.floor > 1.0 and d.half_width > d.floor
    assert "no number of seeds can shrink" in d.describe(rule) and "--test-subset" in d.describe(rule)


def test_rules_recorded_before_images_read_as_they_ran():
    old = {"target_ci": 1.5, "min_seeds": 3, "max_seeds": 5, "default_row": "full", "rows": ["full", "no-inner"],
           "metric": "test_acc", "level": 0.95}
    assert SeedRule.from_json(old).images is False and SeedRule.from_json(old).to_json() == old
    assert SeedRule.from_json({**old, "images": True}).to_json()["images"] is True


def test_a_sweep_rule_counts_the_test_images_of_its_trials(tmp_path, model_env, monkeypatch, capsys):
    monkeypatch.setenv("SWEEP_FAKE_PREDICTIONS", "400")
    assert main(adaptive_args(tmp_path, "--seeds", "3", "--max-seeds", "4", "--rows", "circular,zero")) == 0
    folder = tmp_path / "padding-smoke"
    assert json.loads((folder / "seed_rule.json").read_text())["images"] is True
    report = (folder / "report" / "report.md").read_text()
    assert "counting the test images, where both rows kept predictions" in report


# ----------------------------------------------------------------------------------------------- the sweep


def test_target_ci_stops_each_row_at_its_width_or_the_cap(tmp_path, model_env, capsys):
    assert main(adaptive_args(tmp_path)) == 0
    done, seeds = completed(tmp_path), seeds_per_row(tmp_path)
    counts = {r: len(s) for r, s in seeds.items()}
    for row in ROWS:
        assert seeds[row] == list(range(counts[row]))  # seeds are added in order, no gaps
        if row == "circular":
            continue
        n = counts[row]
        assert FIRST <= n <= CAP
        assert n == CAP or half_width(done, row, n) <= TARGET  # stopped because narrow enough, or at the cap
        assert all(half_width(done, row, k) > TARGET for k in range(FIRST, n))  # and not a seed later
    assert counts["circular"] == max(counts.values())  # every row stays paired with the default
    assert counts["zero"] == FIRST and counts["reflect"] == CAP and FIRST < counts["replicate"] < CAP  # all branches
    assert half_width(done, "reflect", CAP) > TARGET
    out = capsys.readouterr().out
    assert "--target-ci: queued" in out and "seeds per row: zero 3 seeds" in out
    assert sum(Counter(line.split()[1] for line in model_env.read_text().splitlines()
                       if line.startswith("end")).values()) == sum(counts.values())  # no cell ran twice

    report = (tmp_path / "padding-smoke" / "report" / "report.md").read_text()
    assert f"Seeds were chosen by `--target-ci {TARGET:g} --max-seeds {CAP}`" in report
    assert f"reflect: {CAP} seeds (stopped at --max-seeds" in report and "zero: 3 seeds (half-width" in report
    assert "never at its sign or significance" in report

    assert main(adaptive_args(tmp_path)) == 0  # the same command again runs nothing
    assert seeds_per_row(tmp_path) == seeds


def test_killed_adaptive_sweep_resumes_to_the_same_seed_counts(tmp_path, model_env, monkeypatch):
    reference = tmp_path / "uninterrupted"
    assert main(adaptive_args(reference)) == 0
    want = seeds_per_row(reference)
    log = tmp_path / "killed.log"  # the reference run's starts are not the killed run's
    monkeypatch.setenv("SWEEP_FAKE_LOG", str(log))
    monkeypatch.setenv("SWEEP_FAKE_SLEEP", "0.02")
    monkeypatch.setenv("SWEEP_POLL_S", "0.1")  # a worker waiting for the other's seed to decide looks again soon

    runs = tmp_path / "killed"
    first = subprocess.Popen([*RUN, *adaptive_args(runs)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ends() -> int:
        return sum(line.startswith("end") for line in log.read_text().splitlines()) if log.exists() else 0

    deadline = time.time() + 120
    while ends() < 4 * FIRST + 2:  # past the first seeds: inside the adaptive part
        assert first.poll() is None, "the sweep finished before it could be killed"
        assert time.time() < deadline, "timed out waiting for the adaptive part"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert seeds_per_row(runs) != want  # it really was cut short

    assert main(adaptive_args(runs, "--workers", "2")) == 0  # two worker processes finish it
    assert seeds_per_row(runs) == want
    starts = Counter(line.split()[1] for line in log.read_text().splitlines() if line.startswith("start"))
    assert sum(starts.values()) - sum(len(s) for s in want.values()) <= 1  # at most the killed cell ran twice
    assert len({line.split()[2] for line in log.read_text().splitlines()}) >= 2  # the restart used workers


# ----------------------------------------------------------------------------------------------- the CLI


def test_dry_run_states_the_detectable_difference_from_an_earlier_run(tmp_path, model_env, capsys):
    args = ["--study", "padding", "--protocol", "smoke", "--runs-dir", str(tmp_path), "--dry-run"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "grid: 4 rows x 3 seed(s) = 12 trials" in out  # table studies default to 3 seeds
    assert "detectable difference: not known in advance" in out

    assert main(["--study", "padding", "--protocol", "smoke", "--trainer", FAKE, "--runs-dir", str(tmp_path),
                 "--seeds", "3"]) == 0
    capsys.readouterr()
    done = completed(tmp_path)
    wide = done.pivot(index="seed", columns="row", values="test_acc")
    diffs = [(wide[r] - wide["circular"]).to_numpy() for r in ("zero", "reflect", "replicate")]
    pooled = math.sqrt(sum(((d - d.mean()) ** 2).sum() for d in diffs) / sum(d.size - 1 for d in diffs))
    assert main([*args, "--seeds", "4", "--target-ci", "0.5", "--max-seeds", "6"]) == 0
    out = capsys.readouterr().out
    assert f"~{paired_detectable_difference(pooled, 4):.2f} points with 4 seeds per row" in out
    assert f"sd of per-seed differences to the default row {pooled:.2f} points over 9 pairs" in out
    assert "--target-ci 0.5: with that spread a row needs" in out and "then up to 6 seeds per row" in out


@pytest.mark.parametrize("extra, needle", [
    (["--target-ci", "-1"], "--target-ci must be a positive number of points, got -1.0"),
    (["--target-ci", "nan"], "--target-ci must be a positive number"),
    (["--max-seeds", "5"], "--max-seeds only applies with --target-ci"),
    (["--target-ci", "0.5", "--seeds", "1"], "--target-ci needs --seeds >= 2"),
    (["--target-ci", "0.5", "--seeds", "4", "--max-seeds", "3"], "--max-seeds must be >= --seeds (4), got 3"),
    (["--target-ci", "0.5", "--rows", "zero,reflect"], "default row 'circular'; add it to --rows"),
])
def test_bad_adaptive_input_is_one_line_and_exit_2(tmp_path, capsys, extra, needle):
    assert main(["--study", "padding", "--protocol", "smoke", "--trainer", FAKE, "--runs-dir", str(tmp_path),
                 *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and err.startswith("error: ") and len(err.splitlines()) == 1
    assert not (tmp_path / "padding-smoke").exists()  # before any work


def test_target_ci_is_refused_for_tuning_studies(tmp_path, capsys):
    assert main(["--study", "recipe", "--protocol", "smoke", "--trainer", FAKE, "--runs-dir", str(tmp_path),
                 "--target-ci", "0.5"]) == 2
    assert "applies to table studies" in capsys.readouterr().err
