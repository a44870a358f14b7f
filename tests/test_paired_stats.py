"""Paired and Welch intervals, the smallest detectable difference and agreement with the paper, checked on simulated
tables whose truth is known: the fake trainer's `SeedNoiseModel` (row effects, a per-seed component shared by all
rows, per-cell noise), drawn directly in numpy so hundreds of tables take a second."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from analysis import figures
from analysis.load import tidy
from analysis.stats import (
    detectable_difference,
    diff_ci,
    paired_detectable_difference,
    paired_diff_ci,
    sign_agreement,
    spearman_seed_interval,
    t_test_power,
    welch_diff_ci,
)
from analysis.tables import display_table, rank_sentence, summarize_study
from tests.sweep_fakes import SeedNoiseModel

ROWS = ("ref", "a", "b", "c")
MODEL = SeedNoiseModel({"ref": 0.0, "a": 0.4, "b": -0.3, "c": 0.0}, seed_sd=1.0, noise_sd=0.3)
N_TABLES = 600


def _within_binomial(hits: int, n: int, p: float = 0.95) -> bool:
    """|observed - p| within 3.3 binomial standard errors (a two-sided 0.1% band)."""
    return abs(hits / n - p) <= 3.3 * math.sqrt(p * (1 - p) / n)


def _tables(model: SeedNoiseModel, n_seeds: int, seed: int) -> np.ndarray:
    return model.sample(np.random.default_rng(seed), ROWS, n_seeds, N_TABLES)


def _true(model: SeedNoiseModel, row: str) -> float:
    return model.effects[row] - model.effects["ref"]


@pytest.mark.parametrize("row", ["a", "b", "c"])
def test_paired_intervals_cover_the_true_difference_95_percent(row):
    acc = _tables(MODEL, 3, seed=1)
    i = ROWS.index(row)
    cis = [diff_ci(dict(enumerate(t[i])), dict(enumerate(t[0]))) for t in acc]  # same seeds: paired
    assert {c.method for c in cis} == {"paired"}
    hits = sum(c.low <= _true(MODEL, row) <= c.high for c in cis)
    assert _within_binomial(hits, N_TABLES), hits / N_TABLES


def test_welch_intervals_cover_when_rows_share_no_seeds():
    """Different seeds per row (no pairing possible), unequal spreads and seed counts: Welch is chosen and covers."""
    model = SeedNoiseModel({"ref": 0.0, "a": 0.5}, seed_sd=0.0, noise_sd={"ref": 0.3, "a": 0.9})
    rng = np.random.default_rng(2)
    hits = 0
    for _ in range(N_TABLES):
        row = model.sample(rng, ("a",), 3, 1)[0, 0]
        ref = model.sample(rng, ("ref",), 5, 1)[0, 0]
        ci = diff_ci({10 + k: v for k, v in enumerate(row)}, dict(enumerate(ref)))
        assert ci.method == "Welch" and (ci.n_row, ci.n_ref) == (3, 5)
        hits += ci.low <= 0.5 <= ci.high
    assert _within_binomial(hits, N_TABLES), hits / N_TABLES


def test_paired_is_narrower_than_welch_when_the_seed_component_is_shared():
    acc = _tables(MODEL, 3, seed=3)
    paired = [paired_diff_ci(t[1], t[0]) for t in acc]
    welch = [welch_diff_ci(t[1], t[0]) for t in acc]
    # shared sd 1, own sd 0.3: the paired se is sqrt(2 * 0.09 / 3), Welch's sqrt(2 * 1.09 / 3)
    assert np.mean([c.half_width for c in paired]) < 0.5 * np.mean([c.half_width for c in welch])
    assert sum(c.low <= 0.4 <= c.high for c in welch) / N_TABLES > 0.98  # valid, but wastes the pairing


@pytest.mark.parametrize("n_seeds", [3, 5])
def test_detectable_difference_has_the_stated_power_in_simulation(n_seeds):
    """Plant the detectable difference as the true effect: a paired t test finds it in ~80% of tables."""
    sd_diff = math.sqrt(2) * 0.3  # the shared seed component cancels in the per-seed differences
    effect = paired_detectable_difference(sd_diff, n_seeds)
    model = SeedNoiseModel({"ref": 0.0, "a": effect}, seed_sd=1.0, noise_sd=0.3)
    acc = model.sample(np.random.default_rng(4), ("ref", "a"), n_seeds, 4000)
    p = sps.ttest_rel(acc[:, 1], acc[:, 0], axis=1).pvalue
    assert _within_binomial(int((p < 0.05).sum()), 4000, 0.80)


def test_welch_detectable_difference_has_about_the_stated_power():
    sd, n = 0.5, 5
    se = math.sqrt(2 * sd**2 / n)
    df = 2 * (n - 1)  # Welch-Satterthwaite df for equal spreads and counts
    effect = detectable_difference(se, df)
    rng = np.random.default_rng(5)
    a, b = rng.normal(effect, sd, (4000, n)), rng.normal(0.0, sd, (4000, n))
    p = sps.ttest_ind(a, b, axis=1, equal_var=False).pvalue
    assert abs((p < 0.05).mean() - 0.80) < 0.03  # the Welch power formula is itself an approximation


def test_detectable_difference_known_properties():
    assert t_test_power(paired_detectable_difference(1.0, 4) / 0.5, 1.0, 3) == pytest.approx(0.8, abs=1e-6)
    big = paired_detectable_difference(1.0, 10_000)
    assert big * 100 == pytest.approx(sps.norm.ppf(0.975) + sps.norm.ppf(0.8), rel=2e-3)  # normal limit
    ds = [paired_detectable_difference(1.0, n) for n in (2, 3, 5, 10)]
    assert ds == sorted(ds, reverse=True) and ds[-1] > 2.8 / math.sqrt(10)  # t is wider than the normal
    assert paired_detectable_difference(0.0, 3) == 0.0 and math.isnan(paired_detectable_difference(1.0, 1))


def test_table_states_method_n_and_detectable_per_row():
    recs = []
    for row, accs, seeds in (("circular", (82.0, 84.0, 83.0, 82.5, 83.5), range(5)),
                             ("zero", (80.0, 81.5, 82.0), range(3)),
                             ("outside", (79.0, 80.0, 81.0), range(100, 103))):
        for seed, acc in zip(seeds, accs, strict=True):
            recs.append({"row": row, "seed": seed, "state": "COMPLETE", "test_acc": acc})
    s = summarize_study(tidy(pd.DataFrame(recs)), None, default_row="circular").set_index("row")
    assert s.loc["zero", "ci_method"] == "paired" and s.loc["zero", "ci_n_row"] == 3  # over its 3 shared seeds
    d = np.array([80.0, 81.5, 82.0]) - np.array([82.0, 84.0, 83.0])
    assert s.loc["zero", "diff"] == pytest.approx(d.mean())
    assert s.loc["zero", "detectable"] == pytest.approx(paired_detectable_difference(d.std(ddof=1), 3))
    assert s.loc["outside", "ci_method"] == "Welch" and s.loc["outside", "ci_n_ref"] == 5
    f = display_table(s.reset_index()).frame.set_index("row")
    assert f.loc["outside", "CI"] == "Welch, 3 vs 5 seeds" and f.loc["zero", "CI"] == "paired, 3 seeds"
    assert f.loc["zero", "Δ vs default 'circular' (95% CI, seeds)"].endswith(
        f"no difference larger than {s.loc['zero', 'detectable']:.2f} points")


def test_rank_interval_resamples_seeds_jointly():
    """A huge seed component shared by all rows moves every row together, so it cannot change the ranks: the
    joint resampling keeps rho fixed; the same data resampled row by row would not."""
    effects = {"r0": 0.0, "r1": 0.5, "r2": 1.0, "r3": 1.5, "r4": 2.0}
    model = SeedNoiseModel(effects, seed_sd=5.0, noise_sd=0.01)
    acc = model.sample(np.random.default_rng(6), list(effects), 4, 1)[0]
    seeds = [dict(enumerate(r)) for r in acc]
    ri = spearman_seed_interval(list(effects.values()), seeds)
    assert (ri.low, ri.high, ri.n_rows) == (pytest.approx(1.0), pytest.approx(1.0), 5)
    noisy = SeedNoiseModel(effects, seed_sd=0.0, noise_sd=2.0).sample(np.random.default_rng(7), list(effects), 4, 1)
    wide = spearman_seed_interval(list(effects.values()), [dict(enumerate(r)) for r in noisy[0]])
    assert wide.high - wide.low > 0.5
    assert math.isnan(spearman_seed_interval([1.0, 2.0], seeds[:2]).low)  # fewer than 3 rows


def test_sign_agreement_counts_rows_both_tables_resolve():
    sa = sign_agreement(["a", "b", "c", "d", "e"], [0.2, -1.0, -0.1, 0.5, math.nan], [0.8, -0.4, 0.3, 0.9, math.nan],
                        [0.5, 0.3, -0.9, 0.1, 0.4], paper_noise=0.16)
    # a: both positive; b: ours negative, paper positive; c: ours unresolved; d: paper within its noise; e: no CI
    assert (sa.agree, sa.both_resolve, sa.rows, sa.disagreeing) == (1, 2, ("a", "b"), ("b",))


def _padding_spec():
    from types import SimpleNamespace

    rows = [SimpleNamespace(label=lab, overrides={}, paper_top1=p)
            for lab, p in (("zero", 81.59), ("circular", 81.78), ("reflect", 81.36), ("replicate", 81.42))]
    return SimpleNamespace(name="padding", paper_table="Table 5", rows=tuple(rows), default_row="circular")


def _padding_trials() -> pd.DataFrame:
    model = SeedNoiseModel({"zero": -0.5, "circular": 0.0, "reflect": -1.0, "replicate": -0.05}, 1.0, 0.1)
    return tidy(pd.DataFrame([{"row": r, "seed": k, "state": "COMPLETE", "test_acc": model.accuracy(r, k)}
                              for k in range(4) for r in ("zero", "circular", "reflect", "replicate")]))


def test_rank_sentence_states_interval_and_signs():
    summary = summarize_study(_padding_trials(), _padding_spec())
    text = rank_sentence(summary)
    ri, sa = summary.attrs["rank_interval"], summary.attrs["signs"]
    assert not math.isnan(ri.low) and ri.low - 1e-9 <= summary.attrs["rank"].spearman <= ri.high + 1e-9
    assert "interval from resampling our seeds" in text and "Signs:" in text
    # paper: zero -0.19, reflect -0.42 resolve (beyond 0.16); replicate -0.36 too; all ours are negative
    assert sa.both_resolve >= 2 and sa.agree == sa.both_resolve


def test_difference_figure_marks_rows_the_protocol_cannot_express():
    summary = summarize_study(_padding_trials(), _padding_spec())
    summary["same_as"] = [None, None, None, "zero"]  # e.g. replicate is the same network as zero at this size
    fig = figures.difference_vs_paper(summary, "padding")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert "same network as zero at this size: not measurable" in texts and "reference" in texts
    assert len(ax.containers) == 2  # error bars for zero and reflect only: not the default, not replicate
    ours = ax.containers[0].lines[0].get_xdata()
    assert ours[0] == pytest.approx(summary.loc[0, "diff"])
    paper_x = sorted(round(float(line.get_xdata()[0]), 2) for line in ax.lines if line.get_marker() == "s")
    assert paper_x == [-0.42, -0.19]  # the paper's differences on the same axis; replicate left out
    unmarked = summarize_study(_padding_trials(), _padding_spec())  # no mark column: every row is expressed
    assert len(figures.difference_vs_paper(unmarked).axes[0].containers) == 3


def test_fake_trainer_draws_follow_the_model_it_declares():
    """What the sweep's fake trainer returns per (row, seed) has the declared effects, the shared seed component and
    the row noise: the numpy simulations above test the statistics on the same truth the sweep tests run on."""
    model = SeedNoiseModel({"a": 0.0, "b": 0.7}, seed_sd=1.0, noise_sd={"a": 0.2, "b": 0.4})
    a = np.array([model.accuracy("a", s) for s in range(3000)])
    b = np.array([model.accuracy("b", s) for s in range(3000)])
    assert (b - a).mean() == pytest.approx(0.7, abs=4 * math.sqrt(0.2) / math.sqrt(3000))
    assert (b - a).std() == pytest.approx(math.sqrt(0.2**2 + 0.4**2), rel=0.06)  # the shared part cancels
    assert a.std() == pytest.approx(math.sqrt(1 + 0.2**2), rel=0.06)
    assert model.accuracy("b", 7) == model.accuracy("b", 7)  # deterministic, as a resumed sweep needs
