"""Evidence per image: kept predictions, the seeds x images interval (coverage on simulated per-image outcomes
with a known population difference), Holm decisions for a table, per-class effects, agreement, effect per epoch."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis.epochs import difference_per_epoch, trend, trend_sentence
from analysis.load import attach_predictions, load_optuna, load_study, tidy
from analysis.multiplicity import decide, holm
from analysis.per_class import agreement, per_class_differences
from analysis.per_image import NO_PREDICTIONS, row_outcomes
from analysis.report import report_study
from analysis.stats import paired_diff_ci
from analysis.tables import display_table, summarize_study
from analysis.two_level import p_value, two_level_diff_ci
from lightning_modules import predictions
from tests.sweep_fakes import FAKE

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- the stored form
def test_predictions_round_trip_compactly() -> None:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 10, 5000)
    pred = np.where(rng.random(5000) < 0.6, label, rng.integers(0, 10, 5000))  # a 60% model
    code = predictions.encode(pred, label)
    back_pred, back_label = predictions.decode(code)
    assert (back_pred == pred).all() and (back_label == label).all()
    assert code.isascii() and "," not in code and len(code) < 6500  # about 6 kB for the 5,000 test images
    wide = np.array([0, 999, 65535])
    assert (predictions.decode(predictions.encode(wide, wide))[0] == wide).all()  # ImageNet's 1,000 classes
    for bad in ("p1:3:1:xx", "p2:0:1:", code[:-8], "nonsense"):
        with pytest.raises(ValueError, match="not a predictions string"):
            predictions.decode(bad)
    with pytest.raises(ValueError, match="differ in length"):
        predictions.encode(pred[:3], label[:4])


# ---------------------------------------------------------------- the two-level interval
def _simulate(rng: np.random.Generator, types: list[tuple[float, float]], probs: list[float], seed_sd: float,
              n_seeds: int, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-image outcomes of the default and a row: each test image is drawn from a population of image types
    (probability of being right for the default and for the row), each seed shifts the row's probability by a
    normal seed effect, and one uniform draw per (seed, image) decides both rows (a seed's shared randomness).
    The population difference is sum(probs * (p_row - p_default)): the seed effect has mean 0 and the
    probabilities stay far from 0 and 1, so clipping never binds."""
    t = np.asarray(types)[rng.choice(len(probs), size=n_images, p=probs)]
    u = np.clip(rng.normal(0.0, seed_sd, (n_seeds, 1)), -0.14, 0.14)
    v = rng.random((n_seeds, n_images))
    return (v < t[:, 1] + u).astype(float), (v < t[:, 0]).astype(float)


def _coverage(types, probs, seed_sd, n_seeds, n_images, n_tables=2000, seed=0) -> tuple[float, float]:
    truth = 100.0 * sum(p * (b - a) for p, (a, b) in zip(probs, types, strict=True))
    rng = np.random.default_rng(seed)
    hits = np.zeros(2)
    for _ in range(n_tables):
        ci = two_level_diff_ci(*_simulate(rng, types, probs, seed_sd, n_seeds, n_images))
        hits += [ci.seeds.low <= truth <= ci.seeds.high, ci.both.low <= truth <= ci.both.high]
    return tuple(hits / n_tables)


N_TABLES = 2000
TOLERANCE = 3 * math.sqrt(0.95 * 0.05 / N_TABLES)  # 3 binomial standard deviations: 1.5 points
#: images the row gets right and the default wrong (and back) systematically: a large image component
IMAGE_HEAVY = ([(0.85, 0.85), (0.85, 0.15), (0.15, 0.85), (0.3, 0.3)], [0.5, 0.12, 0.1, 0.28])
#: the rows differ little per image; the seeds carry the noise
SEED_HEAVY = ([(0.5, 0.5), (0.85, 0.75), (0.15, 0.25)], [0.6, 0.2, 0.2])
BALANCED = ([(0.85, 0.85), (0.85, 0.15), (0.15, 0.85), (0.3, 0.3)], [0.7, 0.03, 0.02, 0.25])


@pytest.mark.parametrize("population, seed_sd, n_seeds", [(IMAGE_HEAVY, 0.005, 5), (SEED_HEAVY, 0.03, 5),
                                                           (BALANCED, 0.02, 8)], ids=["images", "seeds", "both"])
def test_two_level_interval_covers_the_population_difference(population, seed_sd, n_seeds) -> None:
    _, both = _coverage(*population, seed_sd, n_seeds, 400, N_TABLES)
    assert abs(both - 0.95) <= TOLERANCE, both


def test_seeds_only_interval_under_covers_when_the_images_dominate() -> None:
    seeds, both = _coverage(*IMAGE_HEAVY, 0.005, 5, 400, N_TABLES, seed=1)
    assert seeds < 0.95 - 10 * TOLERANCE and abs(both - 0.95) <= TOLERANCE, (seeds, both)
    row, ref = _simulate(np.random.default_rng(2), *IMAGE_HEAVY, 0.005, 5, 400)
    ci = two_level_diff_ci(row, ref)
    assert ci.dominant == "images" and ci.image_share > 0.8
    seeds, _ = _coverage(*SEED_HEAVY, 0.03, 5, 400, 500, seed=3)  # where the seeds dominate it is right
    assert abs(seeds - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / 500)


def test_the_seeds_only_part_is_the_paired_t_interval_of_the_accuracies() -> None:
    row, ref = _simulate(np.random.default_rng(4), *BALANCED, 0.02, 5, 300)
    ci = two_level_diff_ci(row, ref)
    paired = paired_diff_ci(100 * row.mean(axis=1), 100 * ref.mean(axis=1))
    assert (ci.seeds.low, ci.seeds.high) == pytest.approx((paired.low, paired.high), abs=1e-9)
    assert ci.both.diff == pytest.approx(paired.diff) and ci.both.half_width > ci.seeds.half_width
    # the three parts add up to the two-level variance, the seeds-only one lacks the image part
    assert ci.var_seed + ci.var_resid == pytest.approx(ci.seeds.se**2)
    assert ci.var_seed + ci.var_image + ci.var_resid == pytest.approx(ci.both.se**2)
    assert sps.ttest_rel(100 * row.mean(axis=1), 100 * ref.mean(axis=1)).pvalue == pytest.approx(p_value(ci.seeds))
    assert (p_value(ci.both) < 0.05) == (not ci.both.low <= 0 <= ci.both.high)
    one = two_level_diff_ci(row[:1], ref[:1])
    assert not one.both.has_ci and math.isnan(p_value(one.both))  # one seed: the seed part is unknown


# ---------------------------------------------------------------- decisions for the table
def test_holm_adjusts_step_down_and_ignores_rows_without_a_test() -> None:
    p = {"a": 0.012, "b": 0.024, "c": 0.03, "default": math.nan}
    d = decide(p)
    assert [d[k].p_holm for k in "abc"] == pytest.approx([0.036, 0.048, 0.048])
    assert all(d[k].resolved for k in "abc") and d["a"].family_size == 3  # Bonferroni would keep only 'a'
    assert not d["default"].resolved and math.isnan(d["default"].p_holm)
    assert [d[k].p_bh for k in "abc"] == pytest.approx(sps.false_discovery_control([0.012, 0.024, 0.03]))
    d = decide({"a": 0.01, "b": 0.04, "c": 0.03})
    assert [d[k].resolved for k in "abc"] == [True, False, False]  # each < 5% alone, not as a family
    assert holm(np.array([0.5, 0.9])) == pytest.approx([1.0, 1.0])


def _codes(accs: dict[str, list[float]], n: int = 1000, shift: dict[str, int] | None = None, seed: int = 0):
    """Trials whose predictions give exactly `accs` (row -> per-seed accuracy in %); `shift[row] = k` makes the
    row's errors fall on class k."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % 10
    recs = []
    for row, values in accs.items():
        for s, acc in enumerate(values):
            wrong = rng.permutation(n)[round(acc * n / 100):]
            pred = label.copy()
            pred[wrong] = (label[wrong] + 1) % 10
            recs.append({"row": row, "seed": s, "state": "COMPLETE", "test_acc": 100.0 * (pred == label).mean(),
                         "predictions": predictions.encode(pred, label)})
    return tidy(pd.DataFrame(recs))


def test_the_table_shows_both_intervals_and_the_family_decision() -> None:
    df = _codes({"circular": [60.0, 62.0, 61.0, 63.0], "zero": [50.0, 51.5, 50.5, 52.0],
                 "reflect": [60.5, 61.0, 61.5, 62.5]})
    s = summarize_study(df, default_row="circular").set_index("row")
    assert s.attrs["family_size"] == 2
    zero = s.loc["zero"]
    assert zero["ci_img_low"] < zero["ci_low"] < zero["diff"] < zero["ci_high"] < zero["ci_img_high"]
    assert zero["decided_by"] == "seeds+images" and zero["resolved"] and zero["per_image"].startswith("paired")
    assert zero["p"] == zero["p_images"] and zero["p_holm"] == pytest.approx(min(1.0, 2 * zero["p"]))
    assert not s.loc["reflect", "resolved"] and s.loc["reflect", "indistinguishable"]
    table = display_table(summarize_study(df, default_row="circular")).frame.set_index("row")
    assert "(seeds+images), resolved" in table.loc["zero", "Holm p (family of 2)"]
    assert table.loc["zero", "95% CI with test images (share of variance)"].startswith("[−")

    old = df.drop(columns="predictions")  # a study run before predictions were kept
    s = summarize_study(old, default_row="circular").set_index("row")
    assert s.loc["zero", "per_image"] == NO_PREDICTIONS and math.isnan(s.loc["zero", "ci_img_low"])
    assert s.loc["zero", "decided_by"] == "seeds only" and s.loc["zero", "p"] == s.loc["zero", "p_seeds"]
    cell = display_table(summarize_study(old, default_row="circular")).frame.set_index("row")
    assert cell.loc["zero", "95% CI with test images (share of variance)"] == NO_PREDICTIONS


def test_predictions_that_do_not_match_are_not_paired() -> None:
    df = _codes({"circular": [60.0, 62.0], "zero": [50.0, 51.0]})
    bad = df.copy()
    bad.loc[bad["row"] == "zero", "test_acc"] += 1.0  # not the evaluation the table reports
    out = row_outcomes(bad[bad["row"] == "zero"], "test_acc")
    assert "do not reproduce" in out.status
    other = _codes({"zero": [50.0, 51.0]}, n=999)  # scored on other images
    mixed = pd.concat([df[df["row"] == "circular"], other], ignore_index=True)
    s = summarize_study(mixed, default_row="circular").set_index("row")
    assert "other test images" in s.loc["zero", "per_image"] and s.loc["zero", "decided_by"] == "seeds only"
    assert "metric is val_acc" in row_outcomes(df.assign(val_acc=1.0), "val_acc").status


# ---------------------------------------------------------------- where the effect is
def test_per_class_cells_find_the_hurt_class_and_agreement_sees_changed_predictions() -> None:
    rng = np.random.default_rng(5)
    n, seeds = 2000, 4
    label = np.arange(n) % 10
    hard = rng.random(n) < 0.3  # images every trial of the default gets wrong, whatever the seed
    by_seed = rng.random((seeds, n)) < 0.15  # a seed's own mistakes, shared by every row it trains

    def trial(extra_wrong: np.ndarray, seed: int) -> np.ndarray:
        pred = label.copy()
        wrong = hard | extra_wrong | by_seed[seed] | (rng.random(n) < 0.05)
        pred[wrong] = (label[wrong] + 1 + (np.arange(n)[wrong] + seed) % 9) % 10
        return pred

    rows = {"full": [trial(np.zeros(n, bool), s) for s in range(seeds)],
            "no-x": [trial(label == 3, s) for s in range(seeds)],  # always wrong on class 3
            "same": [trial(np.zeros(n, bool), s) for s in range(seeds)]}
    recs = [{"row": r, "seed": s, "state": "COMPLETE", "test_acc": 100.0 * (p == label).mean(),
             "predictions": predictions.encode(p, label)} for r, ps in rows.items() for s, p in enumerate(ps)]
    summary = summarize_study(tidy(pd.DataFrame(recs)), default_row="full")
    outcomes = summary.attrs["outcomes"]
    common = {r: list(range(seeds)) for r in rows}
    cells = per_class_differences(outcomes, common, "full")
    resolved = cells[cells["resolved"]]
    assert list(zip(resolved["row"], resolved["class"], strict=True)) == [("no-x", 3)]
    assert cells["family_size"].iloc[0] == 20 and resolved["diff"].iloc[0] < -50
    changed = agreement(outcomes["no-x"], outcomes["full"], common["no-x"], "no-x")
    alike = agreement(outcomes["same"], outcomes["full"], common["same"], "same")
    assert changed.beyond_seed_noise and changed.cross < changed.within_default
    assert not alike.beyond_seed_noise and alike.gap_low <= 0 <= alike.gap_high
    assert alike.same_seed > alike.cross + 10  # same-seed pairs share mistakes: counting them would flatter


# ---------------------------------------------------------------- effect versus training
def test_difference_per_epoch_and_whether_it_still_moves() -> None:
    recs, rng = [], np.random.default_rng(6)
    for seed, noise in enumerate((0.1, -0.2, 0.15, 0.0)):
        for epoch in range(6):
            base = 40 + 3 * epoch + 2 * seed
            recs += [{"row": "full", "seed": seed, "epoch": epoch, "val_acc": base},
                     {"row": "grows", "seed": seed, "epoch": epoch, "val_acc": base - 0.5 * epoch + noise},
                     {"row": "flat", "seed": seed, "epoch": epoch,
                      "val_acc": base - 1 + rng.normal(0.0, 0.3)}]
    curves = pd.DataFrame(recs)
    per_epoch = difference_per_epoch(curves, ["full", "grows", "flat"], "full")
    last = per_epoch[(per_epoch["row"] == "grows") & (per_epoch["epoch"] == 5)].iloc[0]
    assert last["diff"] == pytest.approx(-2.5 + np.mean([0.1, -0.2, 0.15, 0.0])) and last["n"] == 4
    assert last["low"] < last["diff"] < last["high"]
    g = trend(curves, "grows", "full")
    assert g.epochs == (3, 4, 5) and g.slope == pytest.approx(-0.5) and g.moving == "growing"
    assert "still growing" in trend_sentence(g)
    f = trend(curves, "flat", "full")
    assert f.moving == "steady" and "not resolved as moving" in trend_sentence(f)


# ---------------------------------------------------------------- end to end
def test_a_report_of_a_study_run_before_predictions_were_kept_still_builds(tmp_path: Path) -> None:
    """The first cpu run of Table 6 (AMD EPYC, before trials kept predictions; `results/` at 45f581b), kept as
    test data since `results/components-cpu/` was re-made with predictions."""
    folder = tmp_path / "components-cpu"
    folder.mkdir()
    for name in ("results.csv", "curves.csv", "seed_rule.json"):
        shutil.copy(ROOT / "tests" / "data" / "components-cpu-no-predictions" / name, folder / name)
    report_study("components", "cpu", tmp_path)
    table = pd.read_csv(folder / "report" / "table.csv").set_index("row")
    assert (table.loc[["no-cross", "no-inner", "no-channel"], "per_image"] == NO_PREDICTIONS).all()
    assert table.loc["no-inner", "resolved"] and table.loc["no-inner", "decided_by"] == "seeds only"
    assert table.loc["no-inner", "p_holm"] == pytest.approx(3 * table.loc["no-inner", "p_seeds"])
    report = (folder / "report" / "report.md").read_text()
    assert "family of 3 row(s)" in report and "resolved after it: no-inner" in report
    assert "No per-image statistics: no predictions." in report
    assert "no-inner: −2.41 points at epoch 5" in report  # its validation difference over the last epochs
    assert (folder / "report" / "difference_per_epoch.png").is_file()


def test_a_sweep_keeps_predictions_where_a_report_elsewhere_finds_them(tmp_path: Path, monkeypatch) -> None:
    from sweeps.run import main

    monkeypatch.setenv("SWEEP_FAKE_PREDICTIONS", "400")
    monkeypatch.setenv("SWEEP_FAKE_EFFECTS", "zero=-3,circular=0")
    for var in ("SWEEP_FAKE_FAIL", "SWEEP_FAKE_NAN", "SWEEP_FAKE_SLEEP", "SWEEP_FAKE_LOG"):
        monkeypatch.delenv(var, raising=False)
    assert main(["--study", "padding", "--protocol", "smoke", "--trainer", FAKE, "--runs-dir", str(tmp_path),
                 "--rows", "zero,circular", "--seeds", "3"]) == 0
    folder = tmp_path / "padding-smoke"
    from_storage = load_optuna(folder / "optuna.journal", "padding", "smoke")
    assert from_storage["predictions"].str.startswith("p1:400:1:").all()  # in the trials' user attrs
    exported = pd.read_csv(folder / "predictions.csv")
    assert len(exported) == 6 and set(exported["key"]) == {"predictions"}
    elsewhere = tmp_path / "elsewhere" / folder.name  # a machine with only the exported files
    elsewhere.mkdir(parents=True)
    for name in ("results.csv", "curves.csv", "predictions.csv"):
        shutil.copy(folder / name, elsewhere / name)
    df = attach_predictions(load_study("padding", "smoke", elsewhere.parent), elsewhere)
    s = summarize_study(df, default_row="circular").set_index("row")
    assert s.loc["zero", "decided_by"] == "seeds+images" and s.loc["zero", "n_images"] == 400
    without = attach_predictions(load_study("padding", "smoke", folder.parent), tmp_path / "nowhere")
    assert without["predictions"].isna().all()
