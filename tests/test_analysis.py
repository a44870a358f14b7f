"""analysis/: statistics, tables and figures on hand-made results whose answers are known."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from analysis import figures
from analysis.load import LoadError, load_curves, load_optuna, load_study, tidy
from analysis.report import report_study
from analysis.stats import paired_detectable_difference, rank_agreement, summarize, welch_diff_ci
from analysis.synthetic import write_synthetic_study
from analysis.tables import (
    NOISE_MARK,
    PAPER_COLUMN,
    PAPER_CSV_COLUMN,
    display_table,
    latex_escape,
    rank_sentence,
    summarize_study,
    to_latex,
    to_markdown,
)
from tests.sweep_fakes import FAKE

ROOT = Path(__file__).resolve().parents[1]
T_975_DF4 = 2.7764451051977987  # Student t 97.5% quantile, 4 degrees of freedom
T_975_DF2 = 4.302652729749464  # ... and 2 degrees of freedom


def _spec() -> SimpleNamespace:
    """A stand-in for ablations.Study with the paper's Table 5 numbers."""
    rows = [SimpleNamespace(label=lab, overrides={"padding": lab}, paper_top1=p)
            for lab, p in (("zero", 81.59), ("circular", 81.78), ("reflect", 81.36), ("replicate", 81.42))]
    return SimpleNamespace(name="padding", description="padding modes", paper_table="Table 5", rows=tuple(rows),
                           default_row="circular", kind="table", base_preset="smoke", eval_sizes=())


def _trials() -> pd.DataFrame:
    """zero: 80/81/82, circular: 82/84/83 (per-seed differences -2, -3, -1), reflect: one seed (79) + one failed
    seed, replicate: not run, extra: a row the paper does not have; circular seed 2 crashed once and was retried."""
    recs = []
    for row, accs in (("zero", (80, 81, 82)), ("circular", (82, 84, 83)), ("reflect", (79,)), ("extra", (70, 72))):
        for seed, acc in enumerate(accs):
            recs.append({"row": row, "seed": seed, "state": "COMPLETE", "test_acc": acc, "params": 2_000_000,
                         "macs": 5e7, "images_per_s": 100.0 * (seed + 1)})
    recs.append({"row": "reflect", "seed": 1, "state": "FAIL", "fail_reason": "NaN loss at epoch 3"})
    recs.insert(3, {"row": "circular", "seed": 2, "state": "FAIL", "fail_reason": "crashed/stale"})
    recs.append({"row": "zero", "seed": 5, "state": "FAIL", "fail_reason": "duplicate"})
    return tidy(pd.DataFrame(recs))


# ---------------------------------------------------------------- statistics


def test_summarize_mean_and_sample_std():
    s = summarize([80.0, 81.0, 82.0, float("nan")])
    assert (s.n, s.mean, s.std) == (3, 81.0, 1.0)
    one = summarize([79.0])
    assert one.n == 1 and one.mean == 79.0 and math.isnan(one.std)


def test_welch_interval_known_answer():
    ci = welch_diff_ci([80, 81, 82], [82, 83, 84])
    half = T_975_DF4 * math.sqrt(1 / 3 + 1 / 3)
    assert ci.diff == pytest.approx(-2.0)
    assert ci.df == pytest.approx(4.0)
    assert (ci.low, ci.high) == pytest.approx((-2.0 - half, -2.0 + half))
    assert ci.indistinguishable  # -4.27 .. +0.27 contains 0
    far = welch_diff_ci([90, 91, 92], [80, 81, 82])
    assert far.has_ci and not far.indistinguishable


def test_welch_without_enough_seeds_has_no_ci_and_counts_as_noise():
    ci = welch_diff_ci([79.0], [82, 83, 84])
    assert ci.diff == pytest.approx(-4.0) and not ci.has_ci and ci.indistinguishable


def test_welch_zero_variance_collapses():
    ci = welch_diff_ci([80, 80], [81, 81])
    assert (ci.low, ci.high) == (-1.0, -1.0) and not ci.indistinguishable


def test_rank_agreement_known_answer():
    ra = rank_agreement([1, 2, 3, 4], [10, 20, 40, 30])  # one adjacent swap
    assert ra.n == 4
    assert ra.spearman == pytest.approx(0.8)
    assert ra.kendall == pytest.approx(4 / 6)
    assert ra.spearman_p == pytest.approx(8 / 24)  # exact: 8 of 24 orderings have |rho| >= 0.8


def test_rank_agreement_needs_three_rows():
    ra = rank_agreement([1, 2, float("nan")], [3, 4, 5])
    assert ra.n == 2 and math.isnan(ra.spearman)


# ---------------------------------------------------------------- table


def test_summary_order_statistics_and_status():
    s = summarize_study(_trials(), _spec()).set_index("row")
    assert list(s.index) == ["zero", "circular", "reflect", "replicate", "extra"]  # paper order, extras last
    assert s.loc["zero", "n"] == 3 and s.loc["zero", "mean"] == 81.0 and s.loc["zero", "std"] == 1.0
    assert s.loc["circular", "n"] == 3 and s.loc["circular", "status"] == "ok"  # retried crash is not a failure
    assert s.loc["zero", "diff"] == pytest.approx(-2.0)
    assert s.loc["zero", "ci_method"] == "paired" and s.loc["zero", "ci_n_row"] == 3  # same seeds: paired
    assert s.loc["zero", "ci_low"] == pytest.approx(-2.0 - T_975_DF2 * 1.0 / math.sqrt(3))  # sd of differences 1
    assert s.loc["zero", "ci_half_width"] == pytest.approx(T_975_DF2 / math.sqrt(3))
    assert s.loc["zero", "detectable"] == pytest.approx(paired_detectable_difference(1.0, 3))
    assert s.loc["zero", "indistinguishable"]
    assert s.loc["zero", "paper_diff"] == pytest.approx(81.59 - 81.78)
    assert s.loc["circular", "is_default"] and s.loc["circular", "diff"] == 0.0
    assert s.loc["reflect", "n"] == 1 and s.loc["reflect", "n_failed"] == 1
    assert s.loc["reflect", "status"] == "1 ok, 1 failed"
    assert s.loc["reflect", "fail_reason"] == "NaN loss at epoch 3"
    assert math.isnan(s.loc["reflect", "ci_low"]) and s.loc["reflect", "indistinguishable"]
    assert s.loc["replicate", "status"] == "not run" and s.loc["replicate", "n"] == 0
    assert s.loc["replicate", "paper_top1"] == 81.42
    assert not s.loc["extra", "in_paper"] and math.isnan(s.loc["extra", "paper_top1"])
    assert s.loc["zero", "params_M"] == 2.0 and s.loc["zero", "images_per_s"] == 200.0
    ra = s.attrs["rank"]
    assert ra.n == 3  # zero, circular, reflect have both numbers; extra is not in the paper


def test_display_table_shows_n_noise_marks_and_missing_rows():
    table = display_table(summarize_study(_trials(), _spec()))
    f = table.frame.set_index("row")
    assert PAPER_COLUMN in f.columns
    ours = next(c for c in f.columns if c.startswith("ours:"))
    delta = next(c for c in f.columns if c.startswith("Δ"))
    assert f.loc["zero", ours] == "81.00 ± 1.00" and f.loc["zero", "n seeds"] == "3"
    assert f.loc["zero", delta] == "−2.00 [−4.48, +0.48] " + NOISE_MARK + " no difference larger than 3.26 points"
    assert f.loc["zero", "CI"] == "paired, 3 seeds" and f.loc["zero", "detectable Δ (80% power)"] == "3.26"
    assert f.loc["reflect", delta] == "−4.00 (no CI: n < 2) " + NOISE_MARK
    assert f.loc["circular (default)", delta] == "reference"
    assert f.loc["replicate", ours] == "not run" and f.loc["replicate", PAPER_COLUMN] == "81.42"
    assert f.loc["reflect", "status"] == "1 ok, 1 failed [1]"
    assert table.footnotes == ["failure reason (reflect): NaN loss at epoch 3"]
    assert f.loc["extra", "status"] == "ok (not in paper table)"


def test_markdown_and_latex_hold_the_values():
    table = display_table(summarize_study(_trials(), _spec()))
    md = to_markdown(table)
    assert md.splitlines()[0].startswith("| row | " + PAPER_COLUMN)
    assert "| zero | 81.59 | 81.00 ± 1.00 | 3 |" in md
    assert "1. failure reason (reflect): NaN loss at epoch 3" in md
    tex = to_latex(table, caption="padding_study 100%", label="tab:padding")
    for needle in (r"\toprule", r"\midrule", r"\bottomrule", r"81.00 $\pm$ 1.00", r"\caption{padding\_study 100\%}",
                   r"$-$2.00 [$-$4.48, +0.48] $^\dagger$", r"ours: test\_acc (\%)"):
        assert needle in tex, needle
    assert "±" not in tex and "−" not in tex


def test_latex_escape():
    assert latex_escape(r"a_b & 50% #1 {x} $ ~ ^ \ ") == (
        r"a\_b \& 50\% \#1 \{x\} \$ \textasciitilde{} \textasciicircum{} \textbackslash{} ")


def test_rank_sentence_states_n_and_caveat():
    text = rank_sentence(summarize_study(_trials(), _spec()))
    assert "n = 3 rows" in text and "Spearman" in text and "Kendall" in text and "ImageNet" in text
    few = summarize_study(_trials()[lambda d: d["row"].isin(["zero", "circular"])], _spec())
    assert "not computed" in rank_sentence(few)


def test_without_a_spec_rows_keep_results_order():
    s = summarize_study(_trials(), None)
    assert list(s["row"]) == ["zero", "circular", "reflect", "extra"]
    assert s.attrs["default_row"] == "zero" and s["paper_top1"].isna().all()
    table = display_table(s)
    assert PAPER_COLUMN not in table.frame.columns and any("no counterpart" in n for n in table.notes)


def test_resolution_columns_and_na_footnote():
    df = tidy(pd.DataFrame([
        {"row": "a", "seed": k, "state": "COMPLETE", "test_acc": 80 + k, "test_acc@32": 80 + k,
         "test_acc@48": 70 + 2 * k, "na@48": None, "test_acc@64": None, "na@64": "stage 4: region 2 > map 1"}
        for k in range(2)
    ] + [{"row": "b", "seed": 0, "state": "COMPLETE", "test_acc": 75, "test_acc@32": 75, "test_acc@48": 60,
          "test_acc@64": 50}]))
    summary = summarize_study(df, None)
    s = summary.set_index("row")
    assert summary.attrs["sizes"] == [32, 48, 64]
    assert (s.loc["a", "mean@48"], s.loc["a", "n@48"]) == (71.0, 2)
    assert s.loc["a", "na@64"] == "stage 4: region 2 > map 1" and s.loc["a", "n@64"] == 0
    table = display_table(summary)
    f = table.frame.set_index("row")
    assert f.loc["a (default)", "top-1 @ 48 px, mean ± std"] == "71.00 ± 1.41"
    assert f.loc["a (default)", "top-1 @ 64 px, mean ± std"] == "n/a [1]"
    assert f.loc["b", "top-1 @ 64 px, mean ± std"] == "50.00"
    assert table.footnotes == ["n/a at 64 px: stage 4: region 2 > map 1"]
    fig = figures.accuracy_vs_resolution(summary, 32)
    assert any(line.get_xdata()[0] == 32 for line in fig.axes[0].lines)  # the training size is marked


# ---------------------------------------------------------------- loading and report files


def test_load_curves_from_run_dirs(tmp_path):
    folder = write_synthetic_study(tmp_path, epochs=4)
    df = load_study("padding", "fixture", tmp_path)
    curves = load_curves(df, folder)
    assert len(curves) == 7 * 4 and curves.attrs["missing"] == 0
    last = curves[(curves["row"] == "circular") & (curves["epoch"] == 3)]
    assert sorted(last["val_acc"]) == [82.0, 83.0, 84.0]


def test_load_optuna_journal(tmp_path):
    optuna = pytest.importorskip("optuna")
    from optuna.distributions import CategoricalDistribution
    from optuna.storages.journal import JournalFileBackend
    from optuna.trial import TrialState, create_trial

    path = tmp_path / "optuna.journal"
    storage = optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    dists = {"row": CategoricalDistribution(["zero", "circular"]), "seed": CategoricalDistribution([0, 1])}
    old = optuna.create_study(study_name="padding-fixture-0ldrecipe", storage=storage)  # an earlier recipe
    old.add_trial(create_trial(value=1.0, user_attrs={"row": "zero", "seed": 0, "test_acc": 1.0}))
    study = optuna.create_study(study_name="padding-fixture-1234abcd", storage=storage, direction="maximize")
    other = optuna.create_study(study_name="shift_step-fixture", storage=storage)
    for k, (row, acc) in enumerate((("zero", 80.0), ("circular", 83.0))):
        study.add_trial(create_trial(params={"row": row, "seed": k % 2}, distributions=dists, value=acc,
                                     user_attrs={"row": row, "seed": k % 2, "test_acc": acc, "params": 1000,
                                                 "cfg": {"padding": row, "depths": "2,2,2,2"}}))
    study.add_trial(create_trial(params={"row": "zero", "seed": 1}, distributions=dists, state=TrialState.FAIL,
                                 user_attrs={"row": "zero", "seed": 1, "fail_reason": "OOM"}))
    other.add_trial(create_trial(value=1.0, user_attrs={"row": "x", "seed": 0}))
    df = load_optuna(path, "padding", "fixture")
    assert len(df) == 3 and set(df["optuna_study"]) == {"padding-fixture-1234abcd"}  # the latest recipe
    assert df.attrs["other_studies"] == ["padding-fixture-0ldrecipe"]
    assert len(load_optuna(path, "padding", "fixture", all_studies=True)) == 4
    assert list(df["state"]) == ["COMPLETE", "COMPLETE", "FAIL"]
    assert df.loc[0, "cfg.padding"] == "zero" and df.loc[1, "test_acc"] == 83.0
    assert df.loc[2, "fail_reason"] == "OOM"
    with pytest.raises(LoadError, match="no Optuna study"):
        load_optuna(path, "padding", "full")
    with pytest.raises(LoadError, match="no Optuna journal"):
        load_optuna(tmp_path / "missing.journal", "padding", "fixture")


def test_report_study_writes_all_files(tmp_path):
    folder = write_synthetic_study(tmp_path, sizes=(24, 32, 48), na_sizes={48: "stage 4 cannot pad"},
                                   failed={"reflect": "NaN loss"})
    md = report_study("padding", "fixture", tmp_path)
    out = folder / "report"
    assert (out / "table.md").read_text() == md
    csv = pd.read_csv(out / "table.csv").set_index("row")
    assert csv.loc["circular", "mean"] == 83.0 and csv.loc["circular", "n"] == 3
    assert csv.loc["zero", "mean@24"] == pytest.approx(80.0) and csv.loc["zero", "na@48"] == "stage 4 cannot pad"
    assert csv.loc["reflect", "n_failed"] == 1
    if PAPER_CSV_COLUMN in csv.columns and csv[PAPER_CSV_COLUMN].notna().any():  # ablations knows Table 5
        assert csv.loc["circular", PAPER_CSV_COLUMN] == 81.78
    tex = (out / "table.tex").read_text()
    assert tex.startswith(r"\begin{table}") and r"\bottomrule" in tex and "83.00 $\\pm$ 1.00" in tex
    assert "n/a [" in md and "stage 4 cannot pad" in md
    for stem in ("accuracy_vs_paper", "ours_vs_paper", "val_curves", "accuracy_vs_resolution"):
        png, svg = out / f"{stem}.png", out / f"{stem}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, stem
        assert b"<svg" in svg.read_bytes()[:2000] and svg.stat().st_size > 5000, stem
        assert f"({stem}.png)" in (out / "report.md").read_text()
    report = (out / "report.md").read_text()
    assert "Spearman" in report and "Protocols differ" in report and "CIFAR-10 at 32 px, 3 epochs" in report


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_cli_script_and_module(tmp_path):
    write_synthetic_study(tmp_path)
    ok = _cli("analysis/report.py", "--study", "padding", "--protocol", "fixture", "--runs-dir", str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert "| circular (default) |" in ok.stdout
    bad = _cli("-m", "analysis.report", "--study", "padding", "--protocol", "nope", "--runs-dir", str(tmp_path))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "error" in bad.stderr
    usage = _cli("-m", "analysis.report")
    assert usage.returncode == 2 and len(usage.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- receptive fields


def _pixels(mask: np.ndarray) -> set[tuple[int, int]]:
    return {(int(i), int(j)) for i, j in np.argwhere(mask)}


@pytest.mark.parametrize(("kwargs", "size", "pixel", "expected"), [
    # regions of 2 rows/cols, no shift: output (1,1) sees its own region's rows (h) / columns (w)
    ({"shift": 0}, (4, 4), (1, 1), {"h": {(0, 1), (1, 1)}, "w": {(1, 0), (1, 1)}, "c": {(1, 1)}}),
    # shift 1 (roll +1, undone after): the region holding row 1 becomes rows 1-2
    ({"shift": 1}, (4, 4), (1, 1), {"h": {(1, 1), (2, 1)}, "w": {(1, 1), (1, 2)}, "c": {(1, 1)}}),
    # shuffle: regions hold rows {0, 2} and {1, 3}
    ({"shift": 1, "cross_region": "shuffle"}, (4, 4), (0, 0), {"h": {(0, 0), (2, 0)}, "w": {(0, 0), (0, 2)}}),
    # 5 rows, region 2: the last region is row 4 plus one padded row
    ({"padding": "zero"}, (5, 5), (4, 4), {"h": {(4, 4)}, "w": {(4, 4)}}),
    ({"padding": "circular"}, (5, 5), (4, 4), {"h": {(4, 4), (0, 4)}, "w": {(4, 4), (4, 0)}}),
    ({"padding": "reflect"}, (5, 5), (4, 4), {"h": {(4, 4), (3, 4)}, "w": {(4, 4), (4, 3)}}),
    ({"padding": "replicate"}, (5, 5), (4, 4), {"h": {(4, 4)}, "w": {(4, 4)}}),
    ({"inner_region": False}, (4, 4), (1, 1), {"h": {(1, 1)}, "w": {(1, 1)}}),
    ({"branches": "h,c"}, (4, 4), (1, 1), {"h": {(0, 1), (1, 1)}, "c": {(1, 1)}}),
])
def test_receptive_field_pixel_sets(kwargs, size, pixel, expected):
    hiremlp = pytest.importorskip("hiremlp")
    if not hasattr(hiremlp.HireModule, "branch_outputs"):
        pytest.skip("hiremlp.HireModule.branch_outputs not available yet")
    from analysis.receptive_field import receptive_fields

    torch.manual_seed(0)  # the masks OR over 32 inputs, so no weights should matter; keep the run reproducible
    module = hiremlp.HireModule(4, region_size=kwargs.pop("region_size", 2), **kwargs)
    module.train()
    masks = receptive_fields(module, size, pixel)
    assert module.training  # mode restored
    if "branches" in kwargs:
        assert set(masks) == set(expected)
    for branch, pixels in expected.items():
        assert _pixels(masks[branch]) == pixels, branch


def test_receptive_field_figure(tmp_path):
    pytest.importorskip("hiremlp")
    from analysis.receptive_field import module_from_config, plot_receptive_fields, switch_panels

    panels = switch_panels(dim=4)
    fig = plot_receptive_fields(panels["padding on a non-divisible map (Table 5)"], (5, 5), (4, 4), branches=("h",))
    assert len(fig.axes) == 4
    paths = figures.save(fig, tmp_path, "rf")
    assert all(p.stat().st_size > 1000 for p in paths)
    import hiremlp

    module = module_from_config(hiremlp.PRESETS["smoke"], stage=1, block=1)
    assert module.shift_step == (2, 2)


# ---------------------------------------------------------------- contract with sweeps


def test_report_on_a_sweep_written_by_sweeps(tmp_path):
    """sweeps' own results.csv, journal and trial folders (fake trainer, milliseconds) feed the report."""
    pytest.importorskip("sweeps")
    proc = _cli("sweeps/run.py", "--study", "padding", "--protocol", "smoke", "--seeds", "2", "--trainer", FAKE,
                "--runs-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = tmp_path / "padding-smoke"
    from_csv = load_study("padding", "smoke", tmp_path)
    from_journal = load_study("padding", "smoke", tmp_path, storage=str(folder / "optuna.journal"))
    keys = ["row", "seed", "state", "test_acc"]
    pd.testing.assert_frame_equal(from_csv[keys], from_journal[keys])
    md = report_study("padding", "smoke", tmp_path)
    csv = pd.read_csv(folder / "report" / "table.csv")
    assert list(csv["row"]) == ["zero", "circular", "reflect", "replicate"] and (csv["n"] == 2).all()
    assert "| circular (default) |" in md
