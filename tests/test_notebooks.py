"""notebooks/: stored without outputs, in sync with their builder, and run top to bottom on a small fixture."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from analysis.synthetic import write_synthetic_study

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_both_notebooks_exist():
    assert {p.stem for p in NOTEBOOKS} >= {"ablation_report", "model_anatomy"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    nb = json.loads(path.read_text())
    assert nb["nbformat"] == 4
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert "parameters" in code[0]["metadata"].get("tags", [])


@pytest.mark.skipif(shutil.which("nbstripout") is None, reason="nbstripout not installed")
def test_nbstripout_verify():
    proc = subprocess.run(["nbstripout", "--verify", *map(str, NOTEBOOKS)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_notebooks_match_their_builder():
    """Editing an .ipynb by hand and forgetting build_notebooks.py (or the reverse) shows up here."""
    nbformat = pytest.importorskip("nbformat")
    spec = importlib.util.spec_from_file_location("build_notebooks", ROOT / "notebooks" / "build_notebooks.py")
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    for name, cells in (("ablation_report", builder.ABLATION_REPORT), ("model_anatomy", builder.MODEL_ANATOMY)):
        expected = nbformat.writes(builder._notebook(cells))
        assert (ROOT / "notebooks" / f"{name}.ipynb").read_text().strip() == expected.strip(), name


def _execute(name: str, parameters: str) -> list[str]:
    """Run the notebook with its `parameters` cell replaced; returns the text of all outputs."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
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
    pytest.importorskip("hiremlp")
    outputs = "\n".join(_execute(
        "model_anatomy", 'presets = ["smoke"]\npreset = "smoke"\nimage_sizes = [32]\nmap_size = (5, 5)\n'
                         'pixel = (4, 4)'))
    assert "smoke" in outputs and outputs.count("image/png") >= 5
