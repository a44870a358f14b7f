"""Factorial studies (`analysis.factorial`): main effects and interactions with known truths from the fake trainer's
`SeedNoiseModel`, the coverage of their 95% intervals over simulated tables, and the report of a 2x2 sweep."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps

from ablations.study_file import load_study_file, study_from_dict
from analysis.factorial import contrasts
from sweeps.run import main
from tests.sweep_fakes import FAKE, SeedNoiseModel

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "ablations" / "examples" / "padding_x_region.toml"

# cells (padding, region): y11 = 0, y12 = +0.3, y21 = -0.5, y22 = +0.2 (row effects, points)
EFFECTS = {"circular+3-3-3-3": 0.3, "zero+4-3-3-2": -0.5, "zero+3-3-3-3": 0.2}
TRUE_MAIN_PADDING = ((-0.5 - 0.0) + (0.2 - 0.3)) / 2  # -0.3
TRUE_MAIN_REGION = ((0.3 - 0.0) + (0.2 - -0.5)) / 2  # +0.5
TRUE_INTERACTION = (0.0 - 0.3) - (-0.5 - 0.2)  # ((a1b1 - a1b2) - (a2b1 - a2b2)) = +0.4


def _by_name(found) -> dict[str, float]:
    return {c.name: c for c in found}


def _values(table: np.ndarray, rows: list[str]) -> dict[str, dict[int, float]]:
    return {r: dict(enumerate(table[i])) for i, r in enumerate(rows)}


def test_contrasts_recover_known_main_and_interaction_effects_without_noise():
    study = load_study_file(EXAMPLE)
    model = SeedNoiseModel(EFFECTS, seed_sd=2.0, noise_sd=0.0)  # seed noise alone: it cancels in every contrast
    values = {r: {s: model.accuracy(r, s) for s in range(4)} for r in study.labels}
    found = _by_name(contrasts(study, values))
    assert found["padding zero − circular"].ci.diff == pytest.approx(TRUE_MAIN_PADDING, abs=1e-9)
    assert found["region_sizes 3-3-3-3 − 4-3-3-2"].ci.diff == pytest.approx(TRUE_MAIN_REGION, abs=1e-9)
    inter = found["(padding zero − circular) × (region_sizes 3-3-3-3 − 4-3-3-2)"]
    assert inter.kind == "interaction" and inter.ci.diff == pytest.approx(TRUE_INTERACTION, abs=1e-9)
    assert inter.ci.method == "paired" and inter.ci.n_row == 4


def test_95_percent_intervals_cover_the_truth_within_binomial_tolerance():
    """Over simulated tables (seed noise shared by the rows, each row's own noise), each contrast's 95% interval
    covers its true value in 95% of tables, within 3.5 binomial standard errors. Unpaired intervals would
    over-cover (the seed part does not cancel) and a wrong sign or a missing average would miss the truth."""
    study = load_study_file(EXAMPLE)
    rows = study.labels
    model = SeedNoiseModel(EFFECTS, seed_sd=1.0, noise_sd=0.4)
    n_tables = 600
    tables = model.sample(np.random.default_rng(19), rows, n_seeds=4, n_tables=n_tables)
    truth = {"padding zero − circular": TRUE_MAIN_PADDING, "region_sizes 3-3-3-3 − 4-3-3-2": TRUE_MAIN_REGION,
             "(padding zero − circular) × (region_sizes 3-3-3-3 − 4-3-3-2)": TRUE_INTERACTION}
    covered = dict.fromkeys(truth, 0)
    for table in tables:
        for name, c in _by_name(contrasts(study, _values(table, rows))).items():
            covered[name] += c.ci.low <= truth[name] <= c.ci.high
    tol = 3.5 * math.sqrt(0.95 * 0.05 / n_tables)
    for name, k in covered.items():
        assert abs(k / n_tables - 0.95) <= tol, (name, k / n_tables)


def test_detectable_size_is_the_80_percent_power_size_of_the_contrast():
    study = load_study_file(EXAMPLE)
    model = SeedNoiseModel(EFFECTS, seed_sd=1.0, noise_sd=0.4)
    table = model.sample(np.random.default_rng(3), study.labels, n_seeds=6, n_tables=1)[0]
    inter = [c for c in contrasts(study, _values(table, study.labels)) if c.kind == "interaction"][0]
    # the two-sided 5% t test of an effect of exactly the detectable size rejects with probability 0.8
    crit, df, nc = sps.t.ppf(0.975, inter.ci.df), inter.ci.df, inter.detectable / inter.ci.se
    assert sps.nct.sf(crit, df, nc) + sps.nct.cdf(-crit, df, nc) == pytest.approx(0.8, abs=1e-3)
    # the interaction's variance is that of four cells, a main effect's of two averaged pairs: wider
    main = [c for c in contrasts(study, _values(table, study.labels)) if c.kind == "main"][0]
    assert inter.ci.half_width > main.ci.half_width


def test_three_levels_and_three_factors_give_every_contrast():
    study = study_from_dict({"name": "f3", "factors": {"padding": ["circular", "zero", "reflect"],
                                                        "fusion": ["reweight", "sum"], "norm": ["batch", "layer"]}},
                            "inline")
    assert len(study.rows) == 12
    effects = {r: (1.0 if "zero" in r else 0.0) + (0.5 if ("zero" in r and "sum" in r) else 0.0)
               for r in study.labels}
    model = SeedNoiseModel(effects, seed_sd=1.0, noise_sd=0.0)
    found = _by_name(contrasts(study, {r: {s: model.accuracy(r, s) for s in range(3)} for r in study.labels}))
    assert set(found) == {"padding zero − circular", "padding reflect − circular", "fusion sum − reweight",
                          "norm layer − batch", "(padding zero − circular) × (fusion sum − reweight)",
                          "(padding reflect − circular) × (fusion sum − reweight)",
                          "(padding zero − circular) × (norm layer − batch)",
                          "(padding reflect − circular) × (norm layer − batch)",
                          "(fusion sum − reweight) × (norm layer − batch)"}
    assert found["padding zero − circular"].ci.diff == pytest.approx(1.25)  # 1 + 0.5 averaged over fusion
    assert found["(padding zero − circular) × (fusion sum − reweight)"].ci.diff == pytest.approx(0.5)
    assert found["(padding reflect − circular) × (fusion sum − reweight)"].ci.diff == pytest.approx(0.0)
    assert found["fusion sum − reweight"].ci.diff == pytest.approx(0.5 / 3)


def test_a_2x2_factorial_sweep_prints_main_effects_and_the_interaction(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SWEEP_FAKE_EFFECTS", ",".join(f"{k}={v}" for k, v in EFFECTS.items()))
    monkeypatch.setenv("SWEEP_FAKE_SEED_SD", "1.0")
    monkeypatch.setenv("SWEEP_FAKE_NOISE_SD", "0.0")  # exact: every contrast equals its truth
    runs = tmp_path / "runs"
    assert main(["--study", str(EXAMPLE), "--protocol", "smoke", "--trainer", FAKE, "--seeds", "3",
                 "--runs-dir", str(runs)]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("| (padding zero − circular) × (region_sizes"))
    assert "+0.40" in line and "| 3 |" in line
    assert next(x for x in out.splitlines() if x.startswith("| padding zero − circular")).count("−0.30") >= 1
    report = runs / "padding_x_region-smoke" / "report"
    assert "## Factorial design" in (report / "report.md").read_text() and (report / "interaction.png").is_file()


def test_target_ci_on_a_factorial_adds_seeds_to_every_row_until_the_widest_contrast_is_narrow(tmp_path, monkeypatch,
                                                                                             capsys):
    from analysis.factorial import design_of
    from analysis.seed_rule import SeedRule, decide, read_rule

    study = load_study_file(EXAMPLE)
    monkeypatch.setenv("SWEEP_FAKE_EFFECTS", ",".join(f"{k}={v}" for k, v in EFFECTS.items()))
    monkeypatch.setenv("SWEEP_FAKE_SEED_SD", "1.0")
    monkeypatch.setenv("SWEEP_FAKE_NOISE_SD", "0.3")
    runs = tmp_path / "runs"
    target = 0.6
    assert main(["--study", str(EXAMPLE), "--protocol", "smoke", "--trainer", FAKE, "--seeds", "2",
                 "--target-ci", str(target), "--max-seeds", "9", "--runs-dir", str(runs)]) == 0
    model = SeedNoiseModel.from_env()
    folder = runs / "padding_x_region-smoke"
    rule = read_rule(folder)
    assert rule is not None and rule.design == design_of(study).to_json()
    with open(folder / "results.csv") as fh:
        trials = list(csv.DictReader(fh))
    seeds = {r: sorted(int(x["seed"]) for x in trials if x["row"] == r and x["state"] == "COMPLETE")
             for r in study.labels}
    k = len(seeds[study.default_row])
    assert all(s == list(range(k)) for s in seeds.values())  # every row the same seeds: contrasts stay paired

    def widest(n: int) -> float:
        values = {r: {s: model.accuracy(r, s) for s in range(n)} for r in study.labels}
        return max(c.ci.half_width for c in contrasts(study, values))

    assert k > 2  # 2 seeds leave the 0.3-point noise's contrasts far wider than 0.6 (t quantile 12.7)
    assert widest(k) <= target or k == 9
    assert all(widest(n) > target for n in range(2, k))  # it stopped at the first seed count that was narrow enough
    values = {r: {s: model.accuracy(r, s) for s in range(12)} for r in study.labels}
    rule_now = SeedRule(target, 2, 9, study.default_row, tuple(study.labels), design=design_of(study).to_json())
    assert {d.seeds for d in decide(values, rule_now).values()} == {k}  # the same pure rule the sweep used
    assert "main effects and interactions" in (folder / "report" / "report.md").read_text()


def test_a_factorial_run_on_some_rows_reports_no_contrast_and_refuses_target_ci(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SWEEP_FAKE_EFFECTS", raising=False)
    args = ["--study", str(EXAMPLE), "--protocol", "smoke", "--trainer", FAKE, "--seeds", "2",
            "--rows", "circular+4-3-3-2,zero+4-3-3-2", "--runs-dir", str(tmp_path / "runs")]
    assert main([*args, "--target-ci", "0.5"]) == 2
    assert "need every row; drop --rows" in capsys.readouterr().err
    assert main(args) == 0
    report = (tmp_path / "runs" / "padding_x_region-smoke" / "report" / "report.md").read_text()
    assert "No contrasts: they need every row" in report


def test_default_row_names_the_reference_levels():
    study = study_from_dict({"name": "f", "default_row": "zero+3-3-3-3",
                             "factors": {"padding": ["circular", "zero"], "region_sizes": ["4,3,3,2", "3,3,3,3"]}},
                            "inline")
    model = SeedNoiseModel(EFFECTS, seed_sd=1.0, noise_sd=0.0)
    found = _by_name(contrasts(study, {r: {s: model.accuracy(r, s) for s in range(3)} for r in study.labels}))
    assert found["padding circular − zero"].ci.diff == pytest.approx(-TRUE_MAIN_PADDING)
    assert found["region_sizes 4-3-3-2 − 3-3-3-3"].ci.diff == pytest.approx(-TRUE_MAIN_REGION)
    # the 2x2 interaction is symmetric: both references flipped leave it unchanged
    assert found["(padding circular − zero) × (region_sizes 4-3-3-2 − 3-3-3-3)"].ci.diff == pytest.approx(
        TRUE_INTERACTION)
