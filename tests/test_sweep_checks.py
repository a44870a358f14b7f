"""What a sweep settles before its first trial: bad input (exit 2, nothing stored), the CPU thread budget of its
workers, and the dry run's time estimate (from recorded trials, else measured)."""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ablations import STUDIES, get_study
from lightning_modules.failures import retry_advice
from sweeps import cost, cpu_threads, preflight
from sweeps.protocols import PROTOCOLS, get_protocol
from sweeps.run import main
from tests.sweep_fakes import FAKE

REPO = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(REPO / "sweeps" / "run.py")]


def no_storage(runs: Path) -> bool:
    """Nothing was stored: no journal, no run folder (so no trial can have started)."""
    return not runs.exists() or not any(runs.rglob("optuna.journal")) and not any(runs.rglob("trials"))


# ----------------------------------------------------------------------------------------------- early errors

@pytest.mark.parametrize("extra, needle", [
    (["--eval-sizes", "0,-8"], "eval_sizes=0,-8: sizes must be positive integers (pixels)"),
    (["--rows", ","], "--rows ',' names no row; allowed: zero, circular, reflect, replicate"),
    (["--lr", "-1"], "lr=-1.0 is not allowed: a number > 0"),
    (["--weight-decay", "-0.5"], "weight_decay=-0.5 is not allowed: a number >= 0"),
])
def test_bad_recipe_rows_or_sizes_exit_2_before_any_trial(tmp_path, capsys, extra, needle):
    runs = tmp_path / "runs"
    # the default (lightning) trainer and real data paths: the check must come before any of them is used
    assert main(["--study", "padding", "--protocol", "smoke", "--runs-dir", str(runs), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and needle in err and len(err.splitlines()) == 1
    assert no_storage(runs)


def test_row_that_does_not_build_on_the_protocol_exits_2(tmp_path, capsys, monkeypatch):
    """A row override the protocol's preset rejects fails every seed the same way: found before the first."""
    from ablations import Row

    study = get_study("padding")
    broken = dataclasses.replace(study, rows=(*study.rows, Row("bogus", {"padding": "mirror"})))
    monkeypatch.setitem(STUDIES, "padding", broken)
    runs = tmp_path / "runs"
    assert main(["--study", "padding", "--protocol", "smoke", "--trainer", FAKE, "--runs-dir", str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert "row 'bogus': padding='mirror' is not allowed" in err and len(err.splitlines()) == 1
    assert no_storage(runs)


def test_corrupt_archive_exits_2_once_before_any_trial(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HIREMLP_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b not really a gzip file" * 100)
    runs = tmp_path / "runs"
    assert main(["--study", "padding", "--protocol", "smoke", "--data-dir", str(data), "--runs-dir",
                 str(runs)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "corrupt archive" in err and len(err.splitlines()) == 1
    assert no_storage(runs)


def test_every_declared_study_passes_its_own_checks_on_every_protocol():
    """The checks refuse nothing the project itself declares (every row, every protocol, tune corners too)."""
    for study in STUDIES.values():
        for protocol in PROTOCOLS.values():
            preflight.check_recipe(study, protocol, study.labels, {"eval_sizes": study.eval_sizes})


def test_sizes_a_row_cannot_run_are_not_errors():
    """Size 8 leaves smoke's stage 3 a 1x1 map that reflect cannot pad: recorded as na@8 by the trial, not refused."""
    preflight.check_recipe(get_study("resolution"), get_protocol("smoke"), ["reflect"], {"eval_sizes": (8, 32, 64)})


def test_retry_advice_only_for_failures_a_retry_can_fix():
    assert "run the same command again to retry them" in retry_advice(["crashed/stale", "never ran"])
    assert "run the same command again to retry them" in retry_advice(["out of memory: CUDA ..."])
    text = retry_advice(["config error: lr=-1: must be > 0", "diverged: val_acc=nan"])
    assert "retry them" not in text and "2 failed on their configuration or diverged" in text
    mixed = retry_advice(["interrupted", "config error: x"])
    assert mixed.startswith("1 crashed") and "1 failed on their configuration" in mixed


# ----------------------------------------------------------------------------------------------- CPU threads

def test_thread_budget_splits_the_cores():
    assert cpu_threads.plan(3, cores=16, environ={}).threads == 5
    assert cpu_threads.plan(1, cores=16, environ={}).threads == 16
    over = cpu_threads.plan(4, cores=2, environ={})
    assert over.threads == 1 and "more workers than cores" in over.describe()
    kept = cpu_threads.plan(2, cores=16, environ={"OMP_NUM_THREADS": "2"})
    assert kept.threads == 2 and "OMP_NUM_THREADS=2 is kept" in kept.describe()
    assert cpu_threads.plan(2, cores=16, environ={"OMP_NUM_THREADS": "64"}).threads == 8
    assert kept.env() == {"SWEEP_THREADS": "2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}


def test_two_cpu_workers_do_not_oversubscribe_the_cores(tmp_path):
    """Each worker's trials record torch.get_num_threads(); two workers together use at most the cores."""
    log = tmp_path / "fake.log"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(SWEEP_FAKE_LOG=str(log), SWEEP_FAKE_SLEEP="0.05")
    proc = subprocess.run([*RUN, "--study", "padding", "--protocol", "smoke", "--trainer", FAKE, "--runs-dir",
                           str(tmp_path / "runs"), "--seeds", "2", "--workers", "2"],
                          env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    cores = cpu_threads.cpu_cores()
    share = max(1, cores // 2)
    assert f"no GPU: 2 workers x {share} CPU thread(s) on {cores} core(s)" in proc.stdout
    pids = {line.split()[2] for line in log.read_text().splitlines()}
    assert len(pids) == 2  # both workers trained
    with open(tmp_path / "runs" / "padding-smoke" / "results.csv") as fh:
        threads = [int(r["threads"]) for r in csv.DictReader(fh)]
    assert len(threads) == 8 and set(threads) == {share}
    if cores >= 2:
        assert 2 * share <= cores


# ----------------------------------------------------------------------------------------------- estimates

def _write_results(folder: Path, protocol, rows: list[dict]) -> None:
    """A results.csv as sweeps.results writes it: fixed columns, then protocol.<field> and recipe.<field> columns."""
    folder.mkdir(parents=True)
    proto = {**{f"protocol.{k}": ("" if v is None else v) for k, v in protocol.record().items()},
             **{f"recipe.{k}": ("" if v is None else v) for k, v in protocol.recipe.to_flat().items()}}
    with open(folder / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["state", "macs", "wall_s", *proto])
        w.writeheader()
        for r in rows:
            w.writerow({**r, **proto})


def test_dry_run_time_comes_from_recorded_trials_of_the_same_protocol(tmp_path, capsys):
    smoke = get_protocol("smoke")
    study = get_study("padding")
    macs = cost.estimate(study, smoke, ["zero"], 1, (), measure_here=False).macs_per_image["zero"]
    _write_results(tmp_path / "padding-smoke", smoke, [
        {"state": "COMPLETE", "macs": macs, "wall_s": 10.0}, {"state": "COMPLETE", "macs": macs, "wall_s": 14.0},
        {"state": "FAIL", "macs": macs, "wall_s": 999.0}])  # a failed trial's time is not a trial's time
    other = get_protocol("cifar10")  # another protocol's trials never count
    _write_results(tmp_path / "padding-cifar10", other, [{"state": "COMPLETE", "macs": 1, "wall_s": 1e6}])

    est = cost.estimate(study, smoke, ["zero", "circular"], 3, (), runs_dir=tmp_path)
    assert est.source == "recorded" and "2 COMPLETE trial(s) of protocol smoke" in est.throughput_note
    assert est.seconds == pytest.approx(6 * 12.0)  # same MACs, same recipe: 6 trials x the mean 12 s
    doubled = cost.estimate(study, smoke.with_changes(epochs=6), ["zero"], 1, (), runs_dir=tmp_path)
    n_train, n_val, n_test = cost.split_sizes(smoke)
    ratio = (3 * n_train * 6 + n_val * 6 + n_test) / (3 * n_train * 3 + n_val * 3 + n_test)
    assert doubled.seconds == pytest.approx(12.0 * ratio)  # scaled by images x epochs

    assert main(["--study", "padding", "--protocol", "smoke", "--seeds", "1", "--dry-run",
                 "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "time: ~48 s of one device, recorded: 2 COMPLETE trial(s)" in out


def test_dry_run_time_is_measured_at_the_protocols_batch_layout_and_precision(tmp_path):
    smoke = get_protocol("smoke")
    est = cost.estimate(get_study("padding"), smoke, ["zero"], 2, (), runs_dir=tmp_path / "none")
    assert est.source == "measured"
    assert f"at batch {smoke.recipe.batch_size}" in est.throughput_note and "channels_last" in est.throughput_note
    assert "precision 32" in est.throughput_note and "after 2 warm-up steps" in est.throughput_note
    from lightning_modules.step_timing import time_training_step

    m = time_training_step(smoke.config, "cpu", budget_s=0.2, eval_budget_s=0.1)
    assert m.batch == 64 and m.eval_batch == 512 and m.train_images_per_s > 0 and m.eval_images_per_s > 0
    one = cost.measured_trial_seconds(m, smoke.config)
    assert one > smoke.recipe.total_epochs * 2000 / m.train_images_per_s  # training time plus evaluation and warm-up


def test_dry_run_of_a_gpu_protocol_without_a_gpu_says_it_is_assumed(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here: the cifar10 protocol is measured, not assumed")
    est = cost.estimate(get_study("padding"), get_protocol("cifar10"), ["zero"], 1, (), runs_dir=tmp_path)
    assert est.source == "assumed" and "a guess" in est.throughput_note


def test_dry_run_stores_nothing(tmp_path, capsys):
    assert main(["--study", "padding", "--protocol", "smoke", "--rows", "zero", "--dry-run", "--runs-dir",
                 str(tmp_path / "runs")]) == 0
    assert no_storage(tmp_path / "runs")


def test_cpu_protocol_is_the_cpu_default_and_its_dry_run_states_trials_and_time(tmp_path, capsys):
    """What a CPU-only machine runs by default, and before it starts it says how many trials and how long here."""
    from sweeps.protocols import default_protocol_name

    assert default_protocol_name(False) == "cpu" and default_protocol_name(True) == "cifar10"
    assert main(["--study", "components", "--protocol", "cpu", "--dry-run", "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "grid: 4 rows x 3 seed(s) = 12 trials" in out
    assert "time: ~" in out and ", measured: row 'full' on cpu" in out
    assert "10,000 train x 6 epochs" in out and "5,000 test" in out
