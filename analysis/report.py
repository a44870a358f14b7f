"""Write a study's report: table (md/csv/tex), figures (png/svg) and report.md, into `<run folder>/report/`.

    python analysis/report.py --study padding [--protocol smoke] [--storage URL] [--runs-dir runs]

`sweeps/run.py` calls `report_study` at the end of a study, so a finished sweep always has a report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python analysis/report.py`: make `analysis` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from analysis import figures  # noqa: E402
from analysis.epochs import difference_per_epoch, trend, trend_sentence  # noqa: E402
from analysis.load import (  # noqa: E402
    LoadError,
    attach_predictions,
    get_study_spec,
    load_curves,
    load_study,
    study_dir,
)
from analysis.per_class import agreement, class_names, per_class_differences  # noqa: E402
from analysis.row_marks import mark_rows  # noqa: E402
from analysis.seed_rule import read_rule, seeds_sentence  # noqa: E402
from analysis.tables import (  # noqa: E402
    display_table,
    rank_sentence,
    summarize_study,
    to_csv_frame,
    to_latex,
    to_markdown,
)

TRAIN_SIZE_COLUMNS = ("image_size", "train_size", "train_image_size", "cfg.image_size")
DEFAULT_TRAIN_SIZE = 32  # every protocol trains on CIFAR at its native size


def train_size(df: pd.DataFrame) -> int:
    """The training input size, from the results if recorded there, else CIFAR's 32 px."""
    for col in TRAIN_SIZE_COLUMNS:
        if col in df.columns and pd.to_numeric(df[col], errors="coerce").notna().any():
            return int(pd.to_numeric(df[col], errors="coerce").dropna().iloc[0])
    return DEFAULT_TRAIN_SIZE


def _first(df: pd.DataFrame, *columns: str) -> float | str | None:
    for col in columns:
        if col in df.columns and df[col].notna().any():
            return df[col].dropna().iloc[0]
    return None


def protocol_note(df: pd.DataFrame, protocol: str, size: int, epochs: int | None = None) -> str:
    """What our protocol was, as far as the results say, next to the paper's."""
    dataset = _first(df, "protocol.dataset")
    classes = _first(df, "cfg.num_classes")
    data = (str(dataset).upper().replace("CIFAR", "CIFAR-") if dataset
            else f"CIFAR-{int(float(classes))}" if classes is not None else "CIFAR")
    epochs = _first(df, "recipe.epochs", "protocol.epochs", "epochs_run") or epochs
    sched = f"{float(epochs):.0f} epochs" if epochs else "a short schedule"
    return (f"ours: {data} at {size} px, {sched}, protocol '{protocol}'; paper: ImageNet-1k at 224 px, "
            "300 epochs, Hire-MLP-Small")


def report_study(study: Any, protocol: str, run_root: Path, storage: str | None = None) -> str:
    """Write the full report for `<study>-<protocol>` and return the Markdown table.

    `study` is a study's name, a study file `*.toml`, `module:NAME` or an `ablations.Study`. `run_root` is the runs
    directory (the report goes to `run_root/<study>-<protocol>/report/`); passing the study folder itself also works.
    """
    spec = get_study_spec(study)
    study = spec.name if spec is not None else str(study)
    folder = study_dir(run_root, study, protocol)
    out = folder / "report"
    df = attach_predictions(load_study(study, protocol, run_root, storage), folder)
    summary = summarize_study(df, spec)
    size = train_size(df)
    curves = load_curves(df, folder, storage)
    epochs = int(curves.groupby(["row", "seed"])["epoch"].nunique().max()) if len(curves) else None
    note = protocol_note(df, protocol, size, epochs)
    table = display_table(summary)
    mark_rows(summary, table, df, spec, size)
    markdown = to_markdown(table)
    caption = f"Hire-MLP ablation '{study}' ({getattr(spec, 'paper_table', None) or 'no paper table'}), {note}."

    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(markdown)
    to_csv_frame(summary).to_csv(out / "table.csv", index=False)
    (out / "table.tex").write_text(to_latex(table, caption=caption, label=f"tab:{study}-{protocol}"))

    title = f"{study} ({protocol})"
    figs = {
        "difference_vs_paper": figures.difference_vs_paper(summary, title),
        "accuracy_vs_paper": figures.accuracy_vs_paper(summary, title),
        "ours_vs_paper": figures.ours_vs_paper(summary, title),
    }
    figs["val_curves"] = figures.validation_curves(curves, list(summary["row"]), title=title)
    default, rows = summary.attrs["default_row"], list(summary["row"])
    per_epoch = difference_per_epoch(curves, rows, default)
    figs["difference_per_epoch"] = figures.difference_per_epoch(per_epoch, rows, default, title=title)
    per_image = per_image_sections(summary, df)
    if len(per_image.cells):  # a study run before predictions were kept has none: its report says so instead
        per_image.cells.to_csv(out / "per_class.csv", index=False)
        figs["per_class"] = figures.per_class_differences(per_image.cells, rows, per_image.names, default, title)
    factorial: list[str] = []
    if getattr(spec, "factors", ()):
        from analysis.factorial import contrasts, factorial_section, interaction_figure

        found = contrasts(spec, summary.attrs["seeds_by_row"])
        factorial = factorial_section(found, len(spec.factors))
        if len(spec.factors) >= 2 and found:
            figs["interaction"] = interaction_figure(spec, summary.attrs["seeds_by_row"], title)
    if summary.attrs["sizes"]:
        figs["accuracy_vs_resolution"] = figures.accuracy_vs_resolution(summary, size, title)
    for stem in getattr(spec, "figures", ()):  # the study's own, e.g. accuracy against MACs
        figs[stem] = getattr(figures, stem)(summary, title)
    for stem, fig in figs.items():
        figures.save(fig, out, stem)

    correct = {r: {s: (o.pred[s] == o.label).astype(float) for s in o.pred}
               for r, o in summary.attrs["outcomes"].items() if o.ok}
    seeds = seeds_sentence(read_rule(folder), summary.attrs["seeds_by_row"], list(summary["row"]),
                           dict(zip(summary["row"], summary["n"], strict=True)), correct)
    ran = summary.loc[summary["n"] > 0, "row"]
    trends = [trend_sentence(trend(curves, r, default)) for r in ran if r != default]
    (out / "report.md").write_text(_report_markdown(study, protocol, spec, summary, markdown, note, curves, figs, df,
                                                    seeds, factorial + per_image.text + _epochs_text(trends)))
    return markdown + ("\n" + factorial[-2] if factorial else "")  # a factorial's contrasts are printed too


class _PerImage:
    """The per-class grid (`cells`), its class names and the report's per-image section."""

    def __init__(self, cells: pd.DataFrame, names: list[str], text: list[str]) -> None:
        self.cells, self.names, self.text = cells, names, text


def per_image_sections(summary: pd.DataFrame, df: pd.DataFrame) -> _PerImage:
    """Per-class differences and prediction agreement of every row with the default, from the kept predictions."""
    outcomes = summary.attrs["outcomes"]
    default = summary.attrs["default_row"]
    seeds = summary.attrs["seeds_by_row"]
    common = {r: sorted(k for k in seeds[r].keys() & seeds.get(default, {}).keys() if isinstance(k, int))
              for r in summary["row"]}
    cells = per_class_differences(outcomes, common, default)
    ref = outcomes.get(default)
    n_classes = int(ref.label.max()) + 1 if ref is not None and ref.label is not None and ref.label.size else 0
    names = class_names(n_classes, str(_first(df, "protocol.dataset") or ""))
    lines = ["## Per class and per image", ""]
    if cells.empty:
        status = "; ".join(sorted({str(s) for s in summary["per_image"] if isinstance(s, str) and s}))
        lines += [f"No per-image statistics: {status or 'no row can be paired with the default image by image'}.",
                  ""]
        return _PerImage(cells, names, lines)
    resolved = cells[cells["resolved"]]
    listed = ", ".join(f"{r['row']} on {names[int(r['class'])]} (" + f"{r['diff']:+.1f})".replace("-", "−")
                       for _, r in resolved.iterrows())
    lines += [f"Per-class differences to `{default}` with the interval that counts seeds and test images "
              f"(`per_class.png`, `per_class.csv`); Holm over all {int(cells['family_size'].iloc[0])} cells: "
              + (f"resolved: {listed}." if listed else "no cell is resolved."), "",
              "Agreement of predictions (% of test images with the same predicted class; different seeds "
              "only). A gap above 0 means the row's trials agree with the default's less than trials of one row "
              "agree with each other: the ablation changes which images are right beyond seed noise "
              "(95% t interval over the test images).", "",
              "| row | seeds | with default | within row | within default | same seed, with default | gap |",
              "|:---|---:|---:|---:|---:|---:|---:|"]
    for r in summary["row"]:
        if r == default or (a := agreement(outcomes[r], outcomes[default], common[r], r)) is None:
            continue
        gap = f"{a.gap:+.2f} [{a.gap_low:+.2f}, {a.gap_high:+.2f}]".replace("-", "−")
        gap += ", beyond seed noise" if a.beyond_seed_noise else ""
        lines.append(f"| {r} | {a.n_seeds} | {a.cross:.2f} | {a.within_row:.2f} | {a.within_default:.2f} | "
                     f"{a.same_seed:.2f} | {gap} |")
    return _PerImage(cells, names, lines + [""])


def _epochs_text(trends: list[str]) -> list[str]:
    return (["## Difference over training", "",
             "Validation accuracy difference to the default per epoch (`difference_per_epoch.png`); the trend is "
             "the paired per-seed slope over the last epochs, with a t interval over the seeds.", ""]
            + [f"- {t}" for t in trends] + [""])


def _report_markdown(study, protocol, spec, summary, markdown, note, curves, figs, df, seeds: str = "",
                     sections: list[str] | None = None) -> str:
    lines = [f"# Ablation report: {study} ({protocol})", ""]
    if spec is not None:
        paper = (f"Paper: {spec.paper_table} (Hire-MLP arXiv v1, Hire-MLP-Small, ImageNet-1k top-1)."
                 if spec.paper_table else "Paper: no counterpart in the paper's tables.")
        source = f" Declared in `{spec.source}`." if getattr(spec, "source", None) else ""
        lines += [f"{spec.description}", "", paper + source, ""]
    else:
        lines += ["No `ablations` study of this name was found: no paper numbers, rows in results order.", ""]
    n_trials = int(summary["n"].sum() + summary["n_failed"].sum())
    resolved = list(summary.loc[summary["resolved"].fillna(False).astype(bool), "row"])
    lines += [f"Metric: `{summary.attrs['metric']}`; {n_trials} trials; differences are against "
              f"`{summary.attrs['default_row']}`; family of {summary.attrs['family_size']} row(s) for Holm's "
              f"adjustment; resolved after it: {', '.join(resolved) if resolved else 'none'}.", "", "## Table", "",
              markdown, "## Seeds", "", seeds, "", *(sections or []),
              "## Agreement with the paper",
              "", rank_sentence(summary, note), "", "## Caveats", ""]
    caveats = [
        f"Protocols differ ({note}). Absolute accuracies are not comparable with the paper's; only orderings are, "
        "loosely.",
        "The paper reports one run per row; its own tables disagree by 0.16 points on the same setting "
        "(v1 Table 3 vs Table 4).",
    ]
    missing = summary[summary["n"] == 0]
    if len(missing):
        caveats.append("Rows without results: " + ", ".join(f"{r} ({s})" for r, s in
                                                            zip(missing["row"], missing["status"], strict=True)))
    if df.attrs.get("other_studies"):
        caveats.append("Other recipes of this study in the storage (not shown): "
                       + ", ".join(df.attrs["other_studies"]))
    if curves.attrs.get("missing"):
        caveats.append(f"{curves.attrs['missing']} finished trial(s) had no metrics.csv; curves omit them.")
    lines += [f"- {c}" for c in caveats] + ["", "## Figures", ""]
    for stem in figs:
        lines += [f"![{stem}]({stem}.png)", "", f"[{stem}.svg]({stem}.svg)", ""]
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like the other bad-input paths
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; bad input prints one line and returns 2."""
    import matplotlib

    matplotlib.use("Agg")
    p = _Parser(prog="analysis.report", description=__doc__.splitlines()[0])
    p.add_argument("--study", required=True, help="study name, e.g. padding, or a study file path/to/study.toml")
    p.add_argument("--protocol", default="smoke", help="protocol name (default: smoke)")
    p.add_argument("--storage", default=None, help="Optuna storage URL or journal file (default: results.csv)")
    p.add_argument("--runs-dir", default="runs", type=Path, help="runs directory (default: runs)")
    args = p.parse_args(argv)
    try:
        markdown = report_study(args.study, args.protocol, args.runs_dir, args.storage)
    except (LoadError, ValueError, KeyError, OSError) as exc:
        print(f"analysis.report: error: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
              file=sys.stderr)
        return 2
    print(markdown)
    name = getattr(get_study_spec(args.study), "name", args.study)
    print(f"report written to {study_dir(args.runs_dir, name, args.protocol) / 'report'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
