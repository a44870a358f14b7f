"""Issue #7: evaluation at other input sizes, the `resolution` study end to end, and its report."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hiremlp
from ablations import get_study
from ablations.studies import row_config

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("HIREMLP_DATA", REPO.parent / "shared" / "data"))
SIZES = (8, 12, 24, 28, 32, 36, 40, 48)


def _configs() -> list[tuple[str, hiremlp.HireMLPConfig]]:
    """Every padding mode crossed with every region-size row of Table 3, on the smoke model."""
    region_rows = get_study("region_size").rows
    return [(f"{mode}/{row.label}", hiremlp.get_config("smoke", padding=mode, **row.overrides))
            for mode in hiremlp.PADDINGS for row in region_rows]


@pytest.mark.parametrize("label,cfg", _configs(), ids=[label for label, _ in _configs()])
def test_stage_plan_predicts_exactly_which_sizes_run(label: str, cfg: hiremlp.HireMLPConfig) -> None:
    """A size the plan calls runnable evaluates; a size it rejects fails in the model with the same stage."""
    torch.manual_seed(0)
    model = hiremlp.build_model(cfg).eval()
    for size in SIZES:
        reason = next((p.reason for p in hiremlp.stage_plan(cfg, size) if p.reason), None)
        x = torch.randn(2, 3, size, size)
        if reason is None:
            with torch.no_grad():
                assert model(x).shape == (2, 10), (label, size)
        else:
            assert cfg.padding in reason and "region" in reason
            stage = reason.split(" ")[1]
            with pytest.raises(ValueError, match=f"stage {stage}"):
                model(x)


def test_reflect_cannot_run_where_the_pad_reaches_the_map_size() -> None:
    cfg = row_config(get_study("resolution"), "reflect", "smoke")
    assert cfg.padding == "reflect"
    # 12 px: stage maps 12, 6, 3, 2; stage 4's 2-wide map with region 2 needs no pad -> runs.
    assert all(p.reason is None for p in hiremlp.stage_plan(cfg, 12))
    # 8 px: maps 8, 4, 2, 1; stage 3 needs a pad of 1 on a 2-row map -> runs; stage 4 pads 1 on a 1-row map -> not.
    reasons = [p.reason for p in hiremlp.stage_plan(cfg, 8)]
    assert reasons[:3] == [None, None, None] and "reflect" in reasons[3]


def _need_data() -> None:
    if not (DATA / "cifar-10-python.tar.gz").is_file():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but no CIFAR-10 at {DATA}")
        pytest.skip(f"no CIFAR-10 archive at {DATA}")


@pytest.mark.slow
def test_resolution_smoke_sweep_writes_per_size_accuracies_and_the_figure(tmp_path: Path) -> None:
    _need_data()
    runs = tmp_path / "runs"
    cmd = [sys.executable, str(REPO / "sweeps" / "run.py"), "--study", "resolution", "--protocol", "smoke",
           "--train-subset", "128", "--eval-subset", "64", "--batch-size", "32", "--epochs", "1",
           "--eval-sizes", "8,24,32,40", "--seeds", "1", "--data-dir", str(DATA), "--runs-dir", str(runs)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (results,) = runs.glob("resolution-smoke*/results.csv")
    rows = list(csv.DictReader(results.open()))
    assert {r["row"] for r in rows if r["state"] == "COMPLETE"} == {"zero", "circular", "reflect", "replicate"}
    for r in rows:
        for size in (24, 32, 40):
            assert 0.0 <= float(r[f"test_acc@{size}"]) <= 100.0, (r["row"], size)
        if r["row"] == "reflect":  # stage 4 is a 1x1 map at 8 px: reflect cannot pad it
            assert not r.get("test_acc@8") and "reflect" in r["na@8"]
        else:
            assert 0.0 <= float(r["test_acc@8"]) <= 100.0
    report = results.parent / "report"
    for ext in ("png", "svg"):
        figure = report / f"accuracy_vs_resolution.{ext}"
        assert figure.is_file() and figure.stat().st_size > 1000
    table = (report / "table.md").read_text()
    assert "40 px" in table and "n/a" in table

    # The report notebook runs top to bottom on what this real sweep stored.
    from test_notebooks import _execute

    protocol = results.parent.name.split("-", 1)[1]
    text = "".join(_execute("ablation_report", f'study = "resolution"\nprotocol = {protocol!r}\n'
                                       f'run_root = {str(runs)!r}\nstorage = None'))
    assert "reflect" in text and "circular" in text
