# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Ablation report
#
# One study of one protocol: our accuracy per row beside the paper's, the differences the seeds can (and cannot)
# resolve, and the training curves. Set the parameters below; `run_root` is relative to the repo root.

# %% tags=["parameters"]
study = "padding"  # or a study file, e.g. "ablations/examples/smoothing.toml"
protocol = "smoke"
run_root = "runs"
storage = None

# %%
import sys
from pathlib import Path

ROOT = Path.cwd() if (Path.cwd() / "analysis").is_dir() else Path.cwd().parent  # repo root
sys.path.insert(0, str(ROOT))
# %matplotlib inline

# %%
from IPython.display import Markdown, display

from analysis import figures, load, row_marks, tables
from analysis.epochs import difference_per_epoch
from analysis.report import protocol_note, train_size

# %%
spec = load.get_study_spec(str(ROOT / study) if study.endswith(".toml") else study)
study = spec.name if spec is not None else study  # a study file's runs are under its name
folder = load.study_dir(ROOT / run_root, study, protocol)
df = load.attach_predictions(load.load_study(study, protocol, ROOT / run_root, storage), folder)  # per-image
df.head()

# %%
summary = tables.summarize_study(df, spec)
table = tables.display_table(summary)
row_marks.mark_rows(summary, table, df, spec, train_size(df))  # rows this protocol cannot measure
Markdown(tables.to_markdown(table))

# %%
note = protocol_note(df, protocol, train_size(df))
Markdown(tables.rank_sentence(summary, note))

# %%
figures.accuracy_vs_paper(summary, study)

# %%
figures.difference_vs_paper(summary, study)

# %%
figures.ours_vs_paper(summary, study)

# %%
curves = load.load_curves(df, folder)
figures.validation_curves(curves, list(summary['row']), title=study)

# %%
rows, default = list(summary['row']), summary.attrs['default_row']
figures.difference_per_epoch(difference_per_epoch(curves, rows, default), rows, default, title=study)

# %%
if summary.attrs['sizes']:
    display(figures.accuracy_vs_resolution(summary, train_size(df), study))

# %% [markdown]
# ## Explore
#
# `df` has one row per trial (`cfg.*` columns hold the flat model config); `curves` one row per trial and epoch;
# `summary` the numbers behind the table.

# %%
summary
