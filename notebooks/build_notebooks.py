"""Write the output-free notebooks from the cell sources below: `python notebooks/build_notebooks.py`.

Editing this file and re-running it keeps the notebooks reviewable as plain Python; the .ipynb files are
what a researcher opens. The first code cell of each is tagged `parameters` (papermill's convention, but
tests simply replace its source).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

SETUP = """\
import sys
from pathlib import Path

ROOT = Path.cwd() if (Path.cwd() / "analysis").is_dir() else Path.cwd().parent  # repo root
sys.path.insert(0, str(ROOT))
%matplotlib inline"""

ABLATION_REPORT = [
    new_markdown_cell("# Ablation report\n\nOne study of one protocol: our accuracy per row beside the paper's, "
                      "the differences the seeds can (and cannot) resolve, and the training curves. "
                      "Set the parameters below; `run_root` is relative to the repo root."),
    new_code_cell('study = "padding"\nprotocol = "smoke"\nrun_root = "runs"\nstorage = None',
                  metadata={"tags": ["parameters"]}),
    new_code_cell(SETUP),
    new_code_cell("from IPython.display import Markdown\n\nfrom analysis import figures, load, row_marks, tables\n"
                  "from analysis.report import protocol_note, train_size"),
    new_code_cell("folder = load.study_dir(ROOT / run_root, study, protocol)\n"
                  "df = load.load_study(study, protocol, ROOT / run_root, storage)\n"
                  "spec = load.get_study_spec(study)\ndf.head()"),
    new_code_cell("summary = tables.summarize_study(df, spec)\ntable = tables.display_table(summary)\n"
                  "row_marks.mark_rows(summary, table, df, spec, train_size(df))  # rows this protocol cannot measure\n"
                  "Markdown(tables.to_markdown(table))"),
    new_code_cell("note = protocol_note(df, protocol, train_size(df))\n"
                  "Markdown(tables.rank_sentence(summary, note))"),
    new_code_cell("figures.accuracy_vs_paper(summary, study)"),
    new_code_cell("figures.ours_vs_paper(summary, study)"),
    new_code_cell("curves = load.load_curves(df, folder)\n"
                  "figures.validation_curves(curves, list(summary['row']), title=study)"),
    new_code_cell("if summary.attrs['sizes']:\n"
                  "    display(figures.accuracy_vs_resolution(summary, train_size(df), study))"),
    new_markdown_cell("## Explore\n\n`df` has one row per trial (`cfg.*` columns hold the flat model config); "
                      "`curves` one row per trial and epoch; `summary` the numbers behind the table."),
    new_code_cell("summary"),
]

MODEL_ANATOMY = [
    new_markdown_cell("# Model anatomy\n\nThe presets, what each stage sees at a given input size, and what each "
                      "of the paper's switches does to one Hire Module, measured by autograd."),
    new_code_cell('presets = None  # None: all presets (about 15 s of MAC counting on a CPU)\n'
                  'preset = "smoke"\nimage_sizes = [24, 32, 48]\nmap_size = (7, 7)\npixel = (6, 4)',
                  metadata={"tags": ["parameters"]}),
    new_code_cell(SETUP),
    new_code_cell("import hiremlp\nfrom analysis import anatomy\n"
                  "from analysis.receptive_field import plot_receptive_fields, switch_panels"),
    new_markdown_cell("## Presets"),
    new_code_cell("anatomy.presets_table(presets)"),
    new_markdown_cell("## Stages at several input sizes\n\nPadding rows/columns are where the padding switch acts; "
                      "a non-empty last column means that size cannot run."),
    new_code_cell("anatomy.stage_table(hiremlp.PRESETS[preset], image_sizes)"),
    new_markdown_cell("## What each block mixes\n\nPer stage and block at the preset's image size: each `[...]` is a "
                      "region, true rows (columns) in the order the inner-region MLP sees them; `r'` is a padding "
                      "copy of row r, `_` a zero. `inert` names branches whose cross-region step mixes exactly what "
                      "step 0 mixes (`hiremlp.mixing_plan`)."),
    new_code_cell("anatomy.mixing_table(hiremlp.PRESETS[preset], hiremlp.PRESET_IMAGE_SIZE[preset])"),
    new_markdown_cell("## What each switch does\n\nBlue: input pixels the red output pixel depends on (nonzero "
                      "gradient). Dashed: region borders. Hatched: padding beyond the map."),
    new_code_cell("panels = switch_panels()\nplot_receptive_fields(panels['shift step (Table 4)'], map_size, pixel)"),
    new_code_cell("for name, group in panels.items():\n"
                  "    fig = plot_receptive_fields(group, map_size, pixel, branches=('h',))\n"
                  "    fig.suptitle(name)\n    display(fig)"),
]


def _notebook(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    nb.metadata["language_info"] = {"name": "python"}
    for cell in nb.cells:
        cell.pop("id", None)  # stable files: no random cell ids in diffs
    nb.nbformat_minor = 4
    return nb


def main() -> None:
    for name, cells in (("ablation_report", ABLATION_REPORT), ("model_anatomy", MODEL_ANATOMY)):
        nb = _notebook(cells)
        nbformat.validate(nb)
        nbformat.write(nb, HERE / f"{name}.ipynb")


if __name__ == "__main__":
    main()
