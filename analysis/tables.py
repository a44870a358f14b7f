"""The study's table in the paper's row order: our mean ± std over seeds beside the paper's top-1.

`summarize_study` gives the numbers (written as table.csv); `display_table` turns them into strings with
footnotes (table.md, table.tex). Failed and not-run rows stay in the table with their status, every difference
the seeds cannot tell from noise carries a dagger, and every row says which interval was used and the smallest
difference its seeds could detect, so a dagger reads "no difference larger than X points".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from analysis.load import FINISHED, eval_sizes
from analysis.multiplicity import decide
from analysis.per_image import pair_status, row_outcomes
from analysis.stats import (
    ALPHA,
    POWER,
    diff_ci,
    rank_agreement,
    sign_agreement,
    spearman_seed_interval,
    summarize,
)
from analysis.two_level import TwoLevelCI, p_value, two_level_diff_ci

PAPER_COLUMN = "paper top-1 (ImageNet, Hire-MLP-Small, arXiv v1)"
PAPER_CSV_COLUMN = "paper_top1_imagenet_hiremlp_small_arxiv_v1"
NOISE_MARK = "†"
NOISE_NOTE = (
    f"{NOISE_MARK} not resolved: Holm's adjusted p for this row is at or above {ALPHA:.0%} over the family of the "
    "table's rows against the default (so the chance of any false 'resolved' in the table is at most 5%), or there "
    "is no test because a side has n < 2. 'No difference larger than X' states what these seeds (and images) could "
    f"have seen: X is the difference the row's test (two-sided, {ALPHA:.0%}, unadjusted) finds with {POWER:.0%} "
    "power, from the observed spread (Welch rows: of both rows)."
)
CI_NOTE = (
    "CI: 'paired' is a paired t interval over the seeds both rows ran (a seed fixes data order, augmentation and "
    "initialisation for every row, so its shared part cancels), and Δ is then the mean of the per-seed differences "
    "over those seeds (with unequal seed counts it need not equal the difference of the two means shown); 'Welch' "
    "is an unpaired interval with unequal variances, used when fewer than 2 seeds match. Both treat the test images "
    "as fixed."
)
IMAGE_NOTE = (
    "CI with test images: the difference's interval when the test images are a sample too (every trial's "
    "per-image predictions, paired across the two rows by seed and by image; a crossed seeds x images variance "
    "decomposition with Satterthwaite's degrees of freedom, analysis/two_level.py). The percentage is the share of "
    "its variance that comes from the images: above 50% the test set, not the seeds, limits what the table can "
    "resolve. Rows whose trials kept no predictions (studies run before they were kept) say so and are decided by "
    "the seeds-only interval."
)
PAPER_RUN_NOISE = 0.16  # v1 Table 3 (4,3,3,2) with s=(1,1,1,1): 81.69; Table 4's identical row: 81.53
METRIC_FALLBACKS = ("test_acc", "best_val_acc", "val_acc", "value")


@dataclass
class DisplayTable:
    """String cells ready for Markdown/LaTeX, plus numbered footnotes and general notes."""

    frame: pd.DataFrame
    footnotes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def footnote(self, text: str) -> str:
        """Register a footnote (deduplicated by text) and return its marker, e.g. "[2]"."""
        if text not in self.footnotes:
            self.footnotes.append(text)
        return f"[{self.footnotes.index(text) + 1}]"


def _text(value: Any) -> str | None:
    """A non-empty string, or None for missing cells (pandas turns None into NaN in mixed columns)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    text = str(value).strip()
    return text or None


def _label(row: Any) -> str:
    return str(getattr(row, "label", row))


def pick_metric(df: pd.DataFrame, metric: str | None = None) -> str:
    """The accuracy column to report: `metric` if given, else the first of test/best-val/val that has data."""
    if metric is not None:
        if metric not in df.columns:
            raise ValueError(f"results have no column {metric!r}")
        return metric
    for name in METRIC_FALLBACKS:
        if name in df.columns and df.loc[df["state"] == FINISHED, name].notna().any():
            return name
    return "test_acc"


def _finished(trials: pd.DataFrame) -> pd.DataFrame:
    """Finished trials, one per seed (a seed rerun after a crash keeps its last finished trial)."""
    ok = trials[trials["state"] == FINISHED]
    if ok["seed"].notna().all():
        ok = ok.drop_duplicates(subset="seed", keep="last")
    return ok


IGNORED_FAILURES = ("duplicate",)  # sweeps marks a second claim of the same grid cell this way


def _unresolved_failures(trials: pd.DataFrame, ok: pd.DataFrame) -> pd.DataFrame:
    """Failed trials whose seed never finished: a crash that a retry later fixed is not a failed row."""
    failed = trials[trials["state"] == "FAIL"]
    failed = failed[~_col(failed, "fail_reason").isin(IGNORED_FAILURES)]
    return failed[~failed["seed"].isin(ok["seed"].dropna())]


def _status(n_ok: int, n_failed: int, n_other: int, in_paper: bool) -> str:
    if n_ok + n_failed + n_other == 0:
        return "not run"
    if n_ok == 0:
        return "failed" if n_failed else "running"
    parts = [f"{n_ok} ok"] if (n_failed or n_other) else ["ok"]
    if n_failed:
        parts.append(f"{n_failed} failed")
    if n_other:
        parts.append(f"{n_other} running")
    status = ", ".join(parts)
    return status if in_paper else f"{status} (not in paper table)"


def _col(frame: pd.DataFrame, name: str) -> pd.Series:
    return frame[name] if name in frame.columns else pd.Series(np.nan, index=frame.index)


def _per_seed(ok: pd.DataFrame, metric: str, label: str) -> dict[Any, float]:
    """{seed: value} of a row's finished trials; a trial without a seed gets a key no other row can pair with."""
    out: dict[Any, float] = {}
    for i, (seed, value) in enumerate(zip(_col(ok, "seed"), _col(ok, metric), strict=True)):
        out[("no seed", label, i) if pd.isna(seed) else int(seed)] = value
    return out


def expressed_mask(frame: pd.DataFrame) -> pd.Series:
    """False for rows marked as the same network as another row at the protocol's size (an `expressed` column
    set to False, or a non-empty `same_as`); True where the table carries no such mark."""
    keep = pd.Series(True, index=frame.index)
    if "expressed" in frame.columns:  # bools, or strings read back from a CSV; NaN (no mark) counts as expressed
        keep &= ~frame["expressed"].map(lambda v: str(v).strip().lower() in ("false", "0", "0.0"))
    if "same_as" in frame.columns:
        keep &= frame["same_as"].map(lambda v: _text(v) is None)
    return keep


def summarize_study(
    df: pd.DataFrame, spec: Any | None = None, metric: str | None = None, default_row: str | None = None
) -> pd.DataFrame:
    """Numbers per row in the paper's order (then any extra rows found in the results).

    `spec` is an `ablations.Study` (or None: rows in the order they appear, no paper numbers).
    The reference for differences is `default_row`, else the study's default row, else the first row.
    """
    metric = pick_metric(df, metric)
    paper_rows = list(spec.rows) if spec is not None else []
    paper = {_label(r): getattr(r, "paper_top1", None) for r in paper_rows}
    labels = list(paper) + [r for r in dict.fromkeys(df["row"]) if r not in paper]
    if not labels:
        raise ValueError("no rows: the study spec and the results are both empty")
    if default_row is None:
        default_row = _label(spec.default_row) if spec is not None and spec.default_row is not None else labels[0]
    sizes = sorted(set(eval_sizes(df)) | set(getattr(spec, "eval_sizes", None) or ()))

    ok_by_row = {label: _finished(df[df["row"] == label]) for label in labels}
    outcomes = {label: row_outcomes(ok, metric) for label, ok in ok_by_row.items()}
    ref_values = _col(ok_by_row.get(default_row, df.iloc[0:0]), metric)
    ref_seeds = _per_seed(ok_by_row.get(default_row, df.iloc[0:0]), metric, default_row)
    paper_ref = paper.get(default_row)
    seeds_by_row = {}
    records = []
    for label in labels:
        trials = df[df["row"] == label]
        ok = ok_by_row[label]
        failed = _unresolved_failures(trials, ok)
        n_failed = int(failed["seed"].nunique() + failed["seed"].isna().sum())
        n_other = int(trials["state"].isin(["RUNNING", "WAITING"]).sum())
        reasons = sorted({t for r in _col(failed, "fail_reason") if (t := _text(r))})
        values = _col(ok, metric)
        s = summarize(values)
        seeds_by_row[label] = _per_seed(ok, metric, label)
        ci = diff_ci(seeds_by_row[label], ref_seeds)
        is_ref = label == default_row
        common = sorted(k for k in seeds_by_row[label].keys() & ref_seeds.keys() if isinstance(k, int))
        image_status = "" if is_ref or s.n == 0 else pair_status(outcomes[label], outcomes[default_row], common)
        if not image_status and ci.method != "paired":
            image_status = "no paired seeds"
        two = None if is_ref or image_status else two_level_diff_ci(outcomes[label].correct(common),
                                                                    outcomes[default_row].correct(common))
        p = paper.get(label)
        rec: dict[str, Any] = {
            "row": label,
            "in_paper": label in paper,
            "is_default": is_ref,
            "status": _status(len(ok), n_failed, n_other, label in paper),
            "n": s.n,
            "n_failed": n_failed,
            "paper_top1": float(p) if p is not None else math.nan,
            "mean": s.mean,
            "std": s.std,
            "diff": 0.0 if is_ref and s.n else ci.diff,
            "ci_low": math.nan if is_ref else ci.low,
            "ci_high": math.nan if is_ref else ci.high,
            "ci_df": math.nan if is_ref else ci.df,
            "ci_method": "" if is_ref else ci.method,
            "ci_n_row": 0 if is_ref else ci.n_row,
            "ci_n_ref": 0 if is_ref else ci.n_ref,
            "ci_half_width": math.nan if is_ref else ci.half_width,
            "detectable": math.nan if is_ref else ci.detectable(),
            "paper_diff": float(p) - float(paper_ref) if p is not None and paper_ref is not None else math.nan,
            **_image_columns(two, image_status, is_ref),
            "p_seeds": math.nan if is_ref else p_value(ci),
            "decided_by": "" if is_ref or not ci.has_ci else "seeds+images" if two is not None else "seeds only",
            "indistinguishable": None if is_ref or s.n == 0 or ref_values.notna().sum() == 0
            else ci.indistinguishable,  # replaced below by the family's decision
            "params_M": _col(ok, "params").mean() / 1e6,
            "macs_G": _col(ok, "macs").mean() / 1e9,
            "images_per_s": _col(ok, "images_per_s").mean(),
            "epochs_run": _col(ok, "epochs_run").mean(),
            "fail_reason": "; ".join(reasons) if reasons else None,
        }
        for size in sizes:
            ss = summarize(_col(ok, f"test_acc@{size}"))
            na = sorted({t for r in _col(ok, f"na@{size}") if (t := _text(r))})
            rec[f"mean@{size}"], rec[f"std@{size}"], rec[f"n@{size}"] = ss.mean, ss.std, ss.n
            rec[f"na@{size}"] = "; ".join(na) if na else None
        records.append(rec)
    out = pd.DataFrame.from_records(records)
    family = decide_family(out)
    out.attrs.update(metric=metric, default_row=default_row, sizes=sizes, seeds_by_row=seeds_by_row,
                     study=getattr(spec, "name", None), paper_table=getattr(spec, "paper_table", None),
                     family_size=family, outcomes=outcomes)
    add_agreement(out)
    return out


def _image_columns(two: TwoLevelCI | None, status: str, is_ref: bool) -> dict[str, Any]:
    """The two-level interval's columns (seeds and test images), or NaNs and the reason in `per_image`."""
    if two is None:
        return {"ci_img_low": math.nan, "ci_img_high": math.nan, "ci_img_df": math.nan,
                "ci_img_half_width": math.nan, "image_share": math.nan, "dominant": "", "n_images": 0,
                "detectable_img": math.nan, "p_images": math.nan, "per_image": "" if is_ref else status}
    both = two.both
    return {"ci_img_low": both.low, "ci_img_high": both.high, "ci_img_df": both.df,
            "ci_img_half_width": both.half_width, "image_share": two.image_share, "dominant": two.dominant,
            "n_images": two.n_images, "detectable_img": both.detectable() if both.se else 0.0,
            "p_images": p_value(both),
            "per_image": f"paired over {two.n_seeds} seeds x {two.n_images} test images"}


def decide_family(summary: pd.DataFrame, alpha: float = ALPHA) -> int:
    """Holm's decisions for the family of rows against the default, into `p`, `p_holm`, `p_bh`, `resolved`;
    `indistinguishable` becomes "not resolved after the adjustment". Each row's test is the two-level one where
    its predictions allow it, else the seeds-only one. Returns the family size."""
    p = summary["p_images"].where(summary["p_images"].notna(), summary["p_seeds"])
    decisions = decide(dict(zip(summary.index, p, strict=True)), alpha)
    summary["p"] = p
    summary["p_holm"] = [decisions[i].p_holm for i in summary.index]
    summary["p_bh"] = [decisions[i].p_bh for i in summary.index]
    summary["resolved"] = [None if summary.at[i, "is_default"] or math.isnan(decisions[i].p) else
                           decisions[i].resolved for i in summary.index]
    summary["indistinguishable"] = [None if pd.isna(v) else not resolved for v, resolved in
                                    zip(summary["indistinguishable"], summary["resolved"], strict=True)]
    return next(iter(decisions.values())).family_size if decisions else 0


def add_agreement(summary: pd.DataFrame) -> None:
    """Rank agreement (with its seed-resampling interval) and sign agreement with the paper, into `attrs`.

    Rows marked as the same network as another row are left out: they measure nothing of their own. Call again
    after adding such marks to a summary."""
    both = summary[summary["in_paper"] & expressed_mask(summary)]
    seeds = summary.attrs.get("seeds_by_row", {})
    summary.attrs["rank"] = rank_agreement(both["paper_top1"], both["mean"])
    summary.attrs["rank_interval"] = spearman_seed_interval(both["paper_top1"], [seeds.get(r, {}) for r in both["row"]])
    others = both[~both["is_default"]]
    resolved = list(others["resolved"]) if "resolved" in others.columns else None
    summary.attrs["signs"] = sign_agreement(list(others["row"]), list(others["ci_low"]), list(others["ci_high"]),
                                            list(others["paper_diff"]), PAPER_RUN_NOISE, resolved)


def _num(x: float, digits: int = 2) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _signed(x: float) -> str:
    return f"{x:+.2f}".replace("-", "−")


def _magnitude(x: float) -> str:
    """Params/MACs/throughput span 1e-3..1e3 between smoke and ImageNet models; keep 3 significant digits."""
    if x is None or math.isnan(x):
        return "—"
    if abs(x) >= 100:
        return f"{x:.0f}"
    if abs(x) >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _mean_std(mean: float, std: float, n: int) -> str:
    if n == 0:
        return ""
    return f"{mean:.2f}" if n < 2 else f"{mean:.2f} ± {std:.2f}"


def decision_detectable(rec: pd.Series) -> float:
    """The detectable difference of the test that decides the row (two-level where there are predictions)."""
    two = rec.get("detectable_img", math.nan)
    return rec["detectable"] if two is None or math.isnan(two) else two


def _diff_cell(rec: pd.Series) -> str:
    if rec["is_default"]:
        return "reference" if rec["n"] else "reference (no results)"
    if rec["n"] == 0 or math.isnan(rec["diff"]):
        return "—"
    text = _signed(rec["diff"])
    text += f" [{_signed(rec['ci_low'])}, {_signed(rec['ci_high'])}]" if not math.isnan(rec["ci_low"]) else \
        " (no CI: n < 2)"
    if not rec["indistinguishable"]:
        return text
    text += f" {NOISE_MARK}"
    detect = decision_detectable(rec)
    return text + (f" no difference larger than {detect:.2f} points" if not math.isnan(detect) else "")


def _image_cell(rec: pd.Series) -> str:
    if rec["is_default"] or rec["n"] == 0:
        return "—"
    if math.isnan(rec.get("ci_img_low", math.nan)):
        return _text(rec.get("per_image")) or "—"
    share = rec["image_share"]
    return (f"[{_signed(rec['ci_img_low'])}, {_signed(rec['ci_img_high'])}]"
            + ("" if math.isnan(share) else f", images {share:.0%}"))


def _decision_cell(rec: pd.Series) -> str:
    if rec["is_default"] or math.isnan(rec.get("p_holm", math.nan)):
        return "—"
    verdict = "resolved" if rec["resolved"] else f"not resolved {NOISE_MARK}"
    return f"{rec['p_holm']:.2g} ({'seeds+images' if rec['decided_by'] == 'seeds+images' else 'seeds'}), {verdict}"


def _ci_cell(rec: pd.Series) -> str:
    if rec["is_default"] or rec["ci_method"] in ("", "none"):
        return "—"
    if rec["ci_method"] == "paired":
        return f"paired, {rec['ci_n_row']} seeds"
    return f"Welch, {rec['ci_n_row']} vs {rec['ci_n_ref']} seeds"


def display_table(summary: pd.DataFrame) -> DisplayTable:
    """String cells with the column headers a reader needs (provenance of the paper column, n shown)."""
    metric = summary.attrs.get("metric", "test_acc")
    sizes = summary.attrs.get("sizes", [])
    default = summary.attrs.get("default_row")
    family = summary.attrs.get("family_size", 0)
    table = DisplayTable(pd.DataFrame())
    rows = []
    for _, rec in summary.iterrows():
        status = rec["status"]
        if _text(rec["fail_reason"]):
            status += " " + table.footnote(f"failure reason ({rec['row']}): {rec['fail_reason']}")
        ours = _mean_std(rec["mean"], rec["std"], rec["n"]) or status
        cells = {
            "row": rec["row"] + (" (default)" if rec["is_default"] else ""),
            PAPER_COLUMN: _num(rec["paper_top1"]),
            f"ours: {metric} (%), mean ± std": ours,
            "n seeds": str(rec["n"]),
            f"Δ vs default '{default}' (95% CI, seeds)": _diff_cell(rec),
            "CI": _ci_cell(rec),
            "95% CI with test images (share of variance)": _image_cell(rec),
            f"Holm p (family of {family})": _decision_cell(rec),
            f"detectable Δ ({POWER:.0%} power)": "—" if rec["is_default"] else _num(decision_detectable(rec)),
            "params (M)": _magnitude(rec["params_M"]),
            "MACs (G)": _magnitude(rec["macs_G"]),
            "images/s": _magnitude(rec["images_per_s"]),
        }
        for size in sizes:
            cell = _mean_std(rec[f"mean@{size}"], rec[f"std@{size}"], rec[f"n@{size}"])
            if _text(rec[f"na@{size}"]):
                marker = table.footnote(f"n/a at {size} px: {rec[f'na@{size}']}")
                cell = f"{cell} (some n/a {marker})" if cell else f"n/a {marker}"
            cells[f"top-1 @ {size} px, mean ± std"] = cell or "—"
        cells["status"] = status
        rows.append(cells)
    table.frame = pd.DataFrame(rows)
    if summary["paper_top1"].isna().all():  # a study of ours (fidelity, branches, resolution): no paper column
        table.frame = table.frame.drop(columns=PAPER_COLUMN)
        table.notes.append("This study has no counterpart in the paper's tables, so there is no paper column.")
    table.notes.append(NOISE_NOTE)
    table.notes.append(CI_NOTE)
    table.notes.append(IMAGE_NOTE)
    table.notes.append(f"Family: {family} row(s) tested against the default '{default}'; Holm's step-down "
                       f"adjustment at {ALPHA:.0%} family-wise (Benjamini-Hochberg adjusted p in table.csv, p_bh).")
    if (summary["n"] == 1).any():
        table.notes.append("Rows with n < 2 seeds show no std and no CI.")
    return table


def rank_sentence(summary: pd.DataFrame, protocol_note: str | None = None) -> str:
    """One paragraph: how well our row ordering matches the paper's, with the caveat that protocols differ."""
    ra = summary.attrs.get("rank") or rank_agreement(summary["paper_top1"], summary["mean"])
    caveat = protocol_note or (
        "our runs are CIFAR at 32 px with a short schedule, the paper's are ImageNet-1k at 224 px, 300 epochs"
    )
    if math.isnan(ra.spearman):
        return (f"Rank agreement with the paper not computed: {ra.n} row(s) have both a paper number and our "
                f"mean (need at least 3 with distinct values). Protocols differ ({caveat})." + sign_sentence(summary))
    ri = summary.attrs.get("rank_interval")
    interval = ("" if ri is None or math.isnan(ri.low) else
                f"; {ri.level:.0%} interval from resampling our seeds ({ri.n_boot} resamples): "
                f"[{_signed(ri.low)}, {_signed(ri.high)}]")
    return (f"Agreement of our row ordering with the paper's over n = {ra.n} rows: Spearman ρ = {ra.spearman:.2f} "
            f"(p = {ra.spearman_p:.2g}{interval}), Kendall τ = {ra.kendall:.2f} (p = {ra.kendall_p:.2g}). "
            f"Protocols differ ({caveat}), so this compares orderings only, and with {ra.n} rows and the "
            f"paper's own run-to-run noise (about {PAPER_RUN_NOISE} points, v1 Tables 3 vs 4, which the interval "
            "does not include) it is weak evidence either way." + sign_sentence(summary))


def sign_sentence(summary: pd.DataFrame) -> str:
    """How many rows that both tables resolve point the same way as the paper's (leading space; '' without it)."""
    sa = summary.attrs.get("signs")
    if sa is None:
        return ""
    rule = (f"a row resolves when it is resolved after Holm's adjustment over our table and the paper's difference "
            "to its default exceeds "
            f"{PAPER_RUN_NOISE} points (the paper's own disagreement on one setting)")
    if sa.both_resolve == 0:
        return f" Signs: no row resolves in both tables ({rule})."
    wrong = f"; disagreeing: {', '.join(sa.disagreeing)}" if sa.disagreeing else ""
    return (f" Signs: {sa.agree} of {sa.both_resolve} rows that both tables resolve agree with the paper "
            f"({', '.join(sa.rows)}{wrong}; {rule}).")


def to_csv_frame(summary: pd.DataFrame) -> pd.DataFrame:
    """The numeric summary as written to table.csv (the paper column renamed to say where it comes from)."""
    return summary.rename(columns={"paper_top1": PAPER_CSV_COLUMN})


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def to_markdown(table: DisplayTable) -> str:
    """GitHub Markdown table followed by footnotes and notes (no `tabulate` dependency)."""
    cols = list(table.frame.columns)
    lines = ["| " + " | ".join(_md_cell(c) for c in cols) + " |",
             "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(cols))) + "|"]
    for _, rec in table.frame.iterrows():
        lines.append("| " + " | ".join(_md_cell(rec[c]) for c in cols) + " |")
    extra = [f"{i}. {_md_cell(t)}" for i, t in enumerate(table.footnotes, 1)] + table.notes
    return "\n".join(lines) + ("\n\n" + "\n\n".join(extra) if extra else "") + "\n"


_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
    "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "−": r"$-$",
    "Δ": r"$\Delta$", "†": r"$^\dagger$", "ρ": r"$\rho$", "τ": r"$\tau$", "—": "---", "≈": r"$\approx$",
    "<": r"$<$", ">": r"$>$", "≤": r"$\leq$", "≥": r"$\geq$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials and map the few non-ASCII symbols the tables use to math-mode macros."""
    return "".join(_LATEX.get(ch, ch) for ch in str(text))


def to_latex(table: DisplayTable, caption: str = "", label: str = "") -> str:
    """A booktabs table written by hand (pandas' Styler.to_latex would pull in jinja2)."""
    cols = list(table.frame.columns)
    spec = "l" + "r" * (len(cols) - 2) + "l"
    out = [r"\begin{table}[t]", r"\centering", r"\small", rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
           " & ".join(latex_escape(c) for c in cols) + r" \\", r"\midrule"]
    for _, rec in table.frame.iterrows():
        out.append(" & ".join(latex_escape(rec[c]) for c in cols) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        out.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        out.append(rf"\label{{{label}}}")
    notes = [f"[{i}] {t}" for i, t in enumerate(table.footnotes, 1)] + table.notes
    if notes:
        out.append(r"\par\footnotesize")
        out += [latex_escape(n) + r"\\" for n in notes]
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"
