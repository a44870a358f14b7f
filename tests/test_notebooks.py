"""notebooks/: jupytext-paired (`notebooks/*.py` percent sources = the `.ipynb` cells), stored without outputs,
and run top to bottom on a small fixture. Every tool these tests use is in the dev extras: nothing is skipped."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import nbclient
import nbformat
import pytest

from analysis.synthetic import write_synthetic_study

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.with_suffix(".ipynb") for p in (ROOT / "notebooks").glob("*.py"))


def test_both_notebooks_exist_with_their_sources():
    assert {p.stem for p in NOTEBOOKS} >= {"ablation_report", "model_anatomy"}
    stored = {p for p in (ROOT / "notebooks").glob("*.ipynb") if not p.stem.endswith("-executed")}
    assert stored == set(NOTEBOOKS)  # every notebook has its source and every source its notebook


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    """What nbstripout would strip: outputs, execution counts, cell metadata beyond tags, notebook metadata beyond
    the kernel, the language and the jupytext pairing."""
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert all(set(c["metadata"]) <= {"tags"} for c in nb["cells"])
    assert set(nb["metadata"]) <= {"kernelspec", "language_info", "jupytext"}
    assert nb["metadata"]["jupytext"]["formats"] == "ipynb,py:percent"
    assert "parameters" in code[0]["metadata"].get("tags", [])


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str, list[str]]]:
    return [(c.cell_type, c.source, list(c.metadata.get("tags", []))) for c in nb.cells]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_matches_its_jupytext_source(path):
    """Editing one side and not syncing (`jupytext --sync notebooks/*.py`) shows up here."""
    source = path.with_suffix(".py")
    assert _cells(jupytext.read(source)) == _cells(nbformat.read(path, as_version=4)), (
        f"{path.name} and {source.name} differ: run `jupytext --sync {source.relative_to(ROOT)}`")


def _execute(name: str, parameters: str) -> list[str]:
    """Run the notebook with its `parameters` cell replaced; returns the text of all outputs."""
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = parameters
    nbclient.NotebookClient(nb, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT)}}).execute()
    texts = []
    for c in nb.cells:
        for out in c.get("outputs", []):
            texts.append(out.get("text", "") + json.dumps(out.get("data", {}), ensure_ascii=False))
    return texts


def test_ablation_report_runs_on_fixture(tmp_path):
    write_synthetic_study(tmp_path, study="padding", protocol="fixture", sizes=(24, 32, 48),
                          na_sizes={48: "stage 4 cannot pad"}, failed={"reflect": "NaN loss"})
    outputs = "\n".join(_execute(
        "ablation_report", f'study = "padding"\nprotocol = "fixture"\nrun_root = {str(tmp_path)!r}\nstorage = None'))
    assert "83.00 ± 1.00" in outputs  # the table rendered with the fixture's circular row
    assert outputs.count("image/png") >= 4  # paper panels, scatter, curves, resolution


def test_model_anatomy_runs():
    outputs = "\n".join(_execute(
        "model_anatomy", 'presets = ["smoke"]\npreset = "smoke"\nimage_sizes = [32]\nmap_size = (5, 5)\n'
                         'pixel = (4, 4)'))
    assert "smoke" in outputs and outputs.count("image/png") >= 5
