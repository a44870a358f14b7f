"""A small synthetic run folder in the layout `sweeps` writes, for tests and for trying the notebooks.

The accuracies are chosen, not trained, so the expected table is known in advance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

DEFAULT_ACCURACIES: dict[str, Sequence[float]] = {
    "zero": (80.0, 81.0, 82.0),
    "circular": (82.0, 83.0, 84.0),
    "reflect": (79.0,),
}


def write_synthetic_study(
    run_root: str | Path,
    study: str = "padding",
    protocol: str = "fixture",
    accuracies: Mapping[str, Sequence[float]] = DEFAULT_ACCURACIES,
    failed: Mapping[str, str] | None = None,
    sizes: Sequence[int] = (),
    na_sizes: Mapping[int, str] | None = None,
    epochs: int = 3,
) -> Path:
    """Write results.csv and trials/<row>__seed<k>/metrics.csv; returns the study folder.

    Row r, seed k reaches accuracies[r][k] at the last epoch; at test size s it scores that minus
    |s - 32| / 8. `failed` adds one FAIL trial per row with the given reason; `na_sizes` marks sizes
    that cannot run (every trial gets `na@{size}` = reason).
    """
    folder = Path(run_root) / f"{study}-{protocol}"
    records, trial = [], 0
    for row, accs in accuracies.items():
        for seed, acc in enumerate(accs):
            run_dir = folder / "trials" / f"{row}__seed{seed}"
            run_dir.mkdir(parents=True, exist_ok=True)
            curve = pd.DataFrame({
                "epoch": range(epochs),
                "train_loss": [2.0 - e * 0.3 for e in range(epochs)],
                "train_acc": [acc * (e + 1) / epochs for e in range(epochs)],
                "val_loss": [2.1 - e * 0.3 for e in range(epochs)],
                "val_acc": [acc * (e + 1) / epochs for e in range(epochs)],
                "lr": [1e-3] * epochs,
                "images_per_s": [1000.0] * epochs,
                "epoch_s": [1.0] * epochs,
            })
            curve.to_csv(run_dir / "metrics.csv", index=False)
            (run_dir / "result.json").write_text(json.dumps({"test_acc": acc}))
            rec = {
                "study": study, "protocol": protocol, "row": row, "seed": seed, "trial": trial,
                "state": "COMPLETE", "fail_reason": None, "val_acc": acc, "best_val_acc": acc, "test_acc": acc,
                "params": 1_234_000, "macs": 56_000_000, "images_per_s": 1000.0 + seed, "wall_s": 10.0,
                "run_dir": str(run_dir.relative_to(folder)), "code_version": "synthetic",
            }
            for size in sizes:
                if na_sizes and size in na_sizes:
                    rec[f"test_acc@{size}"], rec[f"na@{size}"] = None, na_sizes[size]
                else:
                    rec[f"test_acc@{size}"], rec[f"na@{size}"] = acc - abs(size - 32) / 8, None
            rec.update({"cfg.padding": row, "cfg.num_classes": 10, "epochs_run": epochs})
            records.append(rec)
            trial += 1
    for row, reason in (failed or {}).items():
        records.append({"study": study, "protocol": protocol, "row": row, "seed": 99, "trial": trial,
                        "state": "FAIL", "fail_reason": reason})
        trial += 1
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame.from_records(records).to_csv(folder / "results.csv", index=False)
    return folder
