"""The sweep machinery: resume, crash recovery, no duplicate cells, failure accounting, CLI errors.

Fast tests use the fake trainer (`tests/sweep_fakes.py`, milliseconds per trial). The `slow` tests run the real
Lightning trainer on real CIFAR-10 (smoke protocol, a few hundred images) on the journal storage and on a
PostgreSQL server started here.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from ablations import get_study
from sweeps import grid, recovery
from sweeps.protocols import get_protocol
from sweeps.reporting import TrialReport
from sweeps.run import main, protocol_label
from sweeps.storage import open_storage
from tests.sweep_fakes import FAKE

REPO = Path(__file__).resolve().parent.parent
RUN = [sys.executable, str(REPO / "sweeps" / "run.py")]
DATA = REPO.parent / "shared" / "data"
IN_CI = os.environ.get("CI", "").lower() == "true"


# ----------------------------------------------------------------------------------------------- helpers

def fake_args(runs: Path, *extra: str, study: str = "padding") -> list[str]:
    """One seed per row unless `extra` says otherwise (the CLI's default is 3)."""
    seeds = [] if "--seeds" in extra else ["--seeds", "1"]
    return ["--study", study, "--protocol", "smoke", "--trainer", FAKE, "--runs-dir", str(runs), *seeds, *extra]


def runs_log(path: Path) -> tuple[Counter, Counter, set]:
    """(starts per cell, ends per cell, pids) from the fake trainer's SWEEP_FAKE_LOG."""
    starts, ends, pids = Counter(), Counter(), set()
    for line in path.read_text().splitlines() if path.exists() else []:
        kind, cell, pid = line.split()
        (starts if kind == "start" else ends)[cell] += 1
        pids.add(pid)
    return starts, ends, pids


def load(runs: Path, study: str = "padding", protocol: str = "smoke", storage: str | None = None,
         **overrides) -> optuna.Study:
    p = get_protocol(protocol).with_changes(**overrides)
    name = grid.study_name(grid.spec(get_study(study), p))
    folder = runs / f"{study}-{protocol_label(p, name)}"
    return optuna.load_study(study_name=name, storage=open_storage(storage, folder))


def complete_per_cell(study: optuna.Study) -> Counter:
    return Counter(grid.cell_of(t).key for t in study.get_trials(states=(TrialState.COMPLETE,)))


def read_csv(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    log = tmp_path / "fake.log"
    monkeypatch.setenv("SWEEP_FAKE_LOG", str(log))
    for var in ("SWEEP_FAKE_FAIL", "SWEEP_FAKE_NAN", "SWEEP_FAKE_SLEEP"):
        monkeypatch.delenv(var, raising=False)
    return log


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while not predicate():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


# ----------------------------------------------------------------------------------------------- fast tests

def test_list_and_dry_run(tmp_path, capsys):
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "padding" in out and "Table 5" in out and "recipe" in out
    assert main(["--study", "cross_region", "--protocol", "smoke", "--seeds", "3", "--dry-run", "--runs-dir",
                 str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "grid: 2 rows x 3 seed(s) = 6 trials" in out
    assert "MACs/img" in out and "cost:" in out and "time: ~" in out and "measured: row" in out  # CPU protocol
    assert main(["--study", "recipe", "--protocol", "cifar10", "--trials", "20", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "tune: 20 trials" in out and "TPE" in out and "time: ~" in out


def test_sweep_records_everything_and_resumes_without_rerunning(tmp_path, fake_env, capsys):
    assert main(fake_args(tmp_path, "--seeds", "2")) == 0
    starts, ends, _ = runs_log(fake_env)
    assert len(ends) == 8 and set(ends.values()) == {1}
    out = capsys.readouterr().out
    assert "start zero seed 0" in out and "done  zero seed 0: val" in out and "all 8 cells complete" in out

    rows = read_csv(tmp_path / "padding-smoke" / "results.csv")
    assert len(rows) == 8 and {r["state"] for r in rows} == {"COMPLETE"}
    header = list(rows[0])
    assert header[:16] == ["study", "protocol", "row", "seed", "trial", "state", "fail_reason", "val_acc",
                           "best_val_acc", "test_acc", "params", "macs", "images_per_s", "wall_s", "run_dir",
                           "code_version"]
    assert "cfg.padding" in header
    trial_dir = tmp_path / "padding-smoke" / "trials" / "reflect__seed1"
    assert (trial_dir / "trial.json").is_file() and (trial_dir / "result.json").is_file()
    attrs = load(tmp_path).get_trials(states=(TrialState.COMPLETE,))[0].user_attrs
    assert {"torch", "pytorch_lightning", "optuna", "python"} <= set(attrs["versions"])
    assert attrs["code_version"] and attrs["cfg"]["padding"] in ("zero", "circular", "reflect", "replicate")

    assert main(fake_args(tmp_path, "--seeds", "2")) == 0  # same command: nothing re-runs
    assert runs_log(fake_env)[0] == starts
    assert main(fake_args(tmp_path, "--seeds", "3")) == 0  # one more seed: only the new cells run
    starts3, ends3, _ = runs_log(fake_env)
    assert sum(starts3.values()) == 12 and set(ends3.values()) == {1}
    assert set(complete_per_cell(load(tmp_path)).values()) == {1}


def test_every_epoch_of_every_trial_is_in_the_storage_and_progress_is_logged(tmp_path, fake_env, capsys):
    assert get_protocol("smoke").recipe.total_epochs == 3
    assert main(fake_args(tmp_path, "--seeds", "2", "--rows", "zero,circular")) == 0
    out = capsys.readouterr().out
    study = load(tmp_path)
    assert study.metric_names == ["val_acc"]  # the objective has a name (dashboard axes, trials_dataframe)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 4
    for t in trials:
        assert sorted(t.intermediate_values) == [0, 1, 2]  # curves in optuna-dashboard; no pruner on tables
        assert t.intermediate_values[2] == pytest.approx(t.value)
        assert [t.system_attrs[f"epoch_metrics:{e:04d}"]["val_acc"] for e in range(3)] == \
            [t.intermediate_values[e] for e in range(3)]
        assert not {"host", "pid", "heartbeat"} & set(t.user_attrs)  # bookkeeping is out of the dashboard columns
        assert set(recovery.owner(t)) == {"host", "pid", "heartbeat"}
    # one progress line per finished cell, with an ETA from the measured trials, and the dashboard command
    assert "cells 1/4 complete; ~" in out and "per trial with 1 worker(s)" in out and "cells 4/4 complete" in out
    assert "live curves: optuna-dashboard " in out and "optuna.journal" in out

    # a report built elsewhere, from the storage alone or from the folder's exported curves.csv, has every curve
    from analysis.load import load_curves, load_optuna, load_study

    folder = tmp_path / "padding-smoke"
    df = load_optuna(folder / "optuna.journal", "padding", "smoke")
    curves = load_curves(df, tmp_path / "nowhere", storage=folder / "optuna.journal")
    assert curves.attrs["missing"] == 0 and len(curves) == 4 * 3
    elsewhere = tmp_path / "elsewhere" / folder.name
    elsewhere.mkdir(parents=True)
    for name in ("results.csv", "curves.csv"):
        shutil.copy(folder / name, elsewhere / name)
    df = load_study("padding", "smoke", elsewhere.parent)
    curves = load_curves(df, elsewhere)
    assert curves.attrs["missing"] == 0 and len(curves) == 4 * 3
    last = curves[curves["epoch"] == 2].set_index(["row", "seed"])["val_acc"]
    assert last.to_dict() == pytest.approx({(grid.cell_of(t).row, grid.cell_of(t).seed): t.value for t in trials})


def test_recipe_variants_get_their_own_study_and_folder(tmp_path, fake_env):
    assert main(fake_args(tmp_path, "--rows", "zero")) == 0
    assert main(fake_args(tmp_path, "--rows", "zero", "--epochs", "5")) == 0
    variant = load(tmp_path, epochs=5)
    assert variant.study_name != load(tmp_path).study_name
    assert variant.user_attrs["spec"]["protocol"]["recipe"]["epochs"] == 5
    assert load(tmp_path).user_attrs["spec"]["protocol"]["recipe"]["epochs"] == get_protocol("smoke").recipe.epochs
    folders = sorted(p.name for p in tmp_path.iterdir() if p.is_dir())
    assert folders[0] == "padding-smoke" and folders[1].startswith("padding-smoke+")
    # a folder that belongs to another definition of the study is refused, not mixed
    (tmp_path / "padding-smoke" / "sweep.json").write_text('{"optuna_study": "padding-smoke-00000000"}')
    assert main(fake_args(tmp_path, "--rows", "zero")) == 2


def test_precision_is_a_recipe_override_and_the_default_keeps_old_study_names(tmp_path, fake_env):
    assert "precision" not in grid.spec(get_study("padding"), get_protocol("smoke"))["protocol"]
    assert main(fake_args(tmp_path, "--rows", "zero", "--precision", "bf16-mixed")) == 0
    variant = load(tmp_path, precision="bf16-mixed")
    assert variant.user_attrs["spec"]["protocol"]["precision"] == "bf16-mixed"
    assert variant.study_name != grid.study_name(grid.spec(get_study("padding"), get_protocol("smoke")))
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()][0].startswith("padding-smoke+")


def test_failures_are_recorded_and_set_the_exit_code(tmp_path, fake_env, monkeypatch, capsys):
    monkeypatch.setenv("SWEEP_FAKE_FAIL", "reflect")
    monkeypatch.setenv("SWEEP_FAKE_NAN", "zero")
    assert main(fake_args(tmp_path)) == 1
    out = capsys.readouterr().out
    assert "no result for reflect__seed0 (FAIL: RuntimeError: fake failure" in out
    assert "no result for zero__seed0 (FAIL: diverged" in out
    reasons = {r["row"]: r["fail_reason"] for r in read_csv(tmp_path / "padding-smoke" / "results.csv")}
    assert reasons["circular"] == "" and reasons["reflect"].startswith("RuntimeError")

    monkeypatch.delenv("SWEEP_FAKE_FAIL")
    monkeypatch.delenv("SWEEP_FAKE_NAN")
    assert main(fake_args(tmp_path)) == 0  # the rerun retries exactly the failed cells
    starts, _, _ = runs_log(fake_env)
    assert starts == Counter({"zero__seed0": 2, "reflect__seed0": 2, "circular__seed0": 1, "replicate__seed0": 1})


def test_dead_or_silent_running_trials_are_recovered(tmp_path, fake_env):
    assert main(fake_args(tmp_path, "--rows", "circular")) == 0  # creates the study
    study = load(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    claims = {}
    for row, attrs in {"zero": {"host": recovery.HOST, "pid": dead.pid, "heartbeat": time.time()},
                       "reflect": {"host": "elsewhere", "pid": 1, "heartbeat": time.time() - 10 * recovery.GRACE_S},
                       "replicate": {"host": "elsewhere", "pid": 1, "heartbeat": time.time()}}.items():
        grid.enqueue(study, grid.Cell(row, 0))
        trial = grid.claim(study, wanted={grid.Cell(row, 0)})
        if row == "zero":  # the owner as trials recorded it before it moved to a system attr
            for k, v in attrs.items():
                trial.set_user_attr(k, v)
        else:
            recovery.mark_owner(trial, **attrs)
        claims[row] = trial.number

    frozen = {t.number: t for t in study.get_trials()}
    assert not recovery.is_live(frozen[claims["zero"]]) and not recovery.is_live(frozen[claims["reflect"]])
    assert recovery.is_live(frozen[claims["replicate"]])
    study.tell(claims["replicate"], 1.0)  # the live worker elsewhere finishes its cell

    assert main(fake_args(tmp_path)) == 0
    frozen = {t.number: t for t in load(tmp_path).get_trials()}
    for row in ("zero", "reflect"):
        assert frozen[claims[row]].state == TrialState.FAIL
        assert frozen[claims[row]].user_attrs["fail_reason"] == "crashed/stale"
    assert set(complete_per_cell(load(tmp_path)).values()) == {1}
    assert "replicate__seed0" not in runs_log(fake_env)[0]  # finished elsewhere: not re-run here


def test_claimer_killed_before_owning_its_trial_is_recovered_at_once(tmp_path, fake_env):
    assert main(fake_args(tmp_path, "--rows", "circular")) == 0
    study = load(tmp_path)
    grid.enqueue(study, grid.Cell("zero", 0))
    orphan = grid.claim(study, wanted={grid.Cell("zero", 0)})  # killed before mark_owner: no host/pid attrs
    assert recovery.is_live(study.trials[orphan.number])  # could be a claim in flight elsewhere: grace period
    (tmp_path / "padding-smoke" / ".claiming").write_text("somehost 12345\n")  # left by the dead claimer
    start = time.time()
    assert main(fake_args(tmp_path, "--rows", "zero")) == 0
    assert time.time() - start < recovery.CLAIM_GRACE_S
    assert load(tmp_path).trials[orphan.number].user_attrs["fail_reason"] == "crashed/stale"
    assert set(complete_per_cell(load(tmp_path)).values()) == {1}


def test_claims_are_exclusive_and_duplicates_are_skipped(tmp_path):
    storage = open_storage(None, tmp_path)
    study = optuna.create_study(storage=storage)
    cell = grid.Cell("zero", 0)
    grid.enqueue(study, cell)
    grid.enqueue(study, cell)  # e.g. two machines enqueued concurrently on a shared RDB
    other = optuna.load_study(study_name=study.study_name, storage=open_storage(None, tmp_path))
    a, b = grid.claim(study), grid.claim(other)
    assert a.number != b.number and grid.claim(study) is None
    for t in (a, b):
        recovery.mark_owner(t)
    # the higher-numbered claim defers to the lower one; the lower one goes on
    assert grid.duplicate_of(study, b, cell, recovery.is_live).number == a.number
    assert grid.duplicate_of(study, a, cell, recovery.is_live) is None


def test_two_workers_never_run_a_cell_twice(tmp_path, fake_env):
    env = {**os.environ, "SWEEP_FAKE_SLEEP": "0.05"}
    proc = subprocess.run([*RUN, *fake_args(tmp_path, "--seeds", "3", "--workers", "2")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    starts, ends, pids = runs_log(fake_env)
    assert len(starts) == 12 and set(starts.values()) == {1} and set(ends.values()) == {1}
    assert len(pids) == 2  # both workers did work
    assert set(complete_per_cell(load(tmp_path)).values()) == {1}

    # two independent commands racing on a fresh study (enqueue guarded by the lock, claims by the journal)
    runs2 = tmp_path / "second"
    procs = [subprocess.Popen([*RUN, *fake_args(runs2, "--seeds", "2")], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert set(complete_per_cell(load(runs2)).values()) == {1} and len(complete_per_cell(load(runs2))) == 8


def test_sigkill_mid_sweep_then_restart_completes_the_grid(tmp_path, fake_env):
    env = {**os.environ, "SWEEP_FAKE_SLEEP": "0.3"}
    proc = subprocess.Popen([*RUN, *fake_args(tmp_path, "--seeds", "2")], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_for(lambda: sum(runs_log(fake_env)[1].values()) >= 1, 60, "the first trial to finish")
    wait_for(lambda: sum(runs_log(fake_env)[0].values()) >= 2, 30, "the second trial to start")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = load(tmp_path).get_trials(states=(TrialState.RUNNING,))
    assert len(killed) == 1

    assert main(fake_args(tmp_path, "--seeds", "2")) == 0
    starts, ends, _ = runs_log(fake_env)
    assert len(ends) == 8 and set(ends.values()) == {1}  # no cell finished twice
    assert starts[grid.cell_of(killed[0]).key] == 2  # the killed cell, and only it, ran again
    assert sum(starts.values()) == 9
    trial = load(tmp_path).trials[killed[0].number]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"] == "crashed/stale"


def test_tune_study_uses_tpe_median_pruning_and_its_budget(tmp_path, fake_env):
    assert main(fake_args(tmp_path, "--trials", "10", "--epochs", "4", study="recipe")) == 0
    study = load(tmp_path, study="recipe", epochs=4)
    trials = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(trials) == 10 and all("lr" in t.params and "epochs_scale" in t.params for t in trials)
    assert isinstance(study.pruner, optuna.pruners.MedianPruner)
    assert main(fake_args(tmp_path, "--trials", "10", "--epochs", "4", study="recipe")) == 0
    assert len(load(tmp_path, study="recipe", epochs=4).trials) == 10  # budget reached: nothing new


def test_crashed_tune_trial_is_retried_in_its_own_folder(tmp_path, fake_env):
    """A tune trial's folder is named by trial number; its retry (a new number) must reuse it to resume."""
    assert main(fake_args(tmp_path, "--trials", "1", "--epochs", "2", study="recipe")) == 0
    study = load(tmp_path, study="recipe", epochs=2)
    dead = subprocess.Popen(["true"])
    dead.wait()
    crashed = study.ask()
    crashed.set_user_attr("run_dir", str(tmp_path / "x" / "trials" / f"trial{crashed.number:04d}"))
    recovery.mark_owner(crashed, pid=dead.pid)
    assert main(fake_args(tmp_path, "--trials", "2", "--epochs", "2", study="recipe")) == 0
    retry = [t for t in load(tmp_path, study="recipe", epochs=2).trials if t.user_attrs.get("retry_of") is not None]
    assert len(retry) == 1 and retry[0].user_attrs["retry_of"] == crashed.number
    assert Path(retry[0].user_attrs["run_dir"]).name == f"trial{crashed.number:04d}" != f"trial{retry[0].number:04d}"


def test_pruning_callback_reports_and_prunes():
    from types import SimpleNamespace

    study = optuna.create_study(direction="maximize",
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0))
    good = study.ask()
    for epoch in range(3):
        good.report(90.0, epoch)
    study.tell(good, 90.0)
    trial = study.ask()
    cb = TrialReport(trial, prune=True)
    cb.on_validation_end(SimpleNamespace(sanity_checking=True, current_epoch=0, callback_metrics={}), None)
    with pytest.raises(optuna.TrialPruned):
        cb.on_validation_end(SimpleNamespace(sanity_checking=False, current_epoch=0,
                                             callback_metrics={"val_acc": 10.0}), None)
    assert study.trials[1].intermediate_values == {0: 10.0}


@pytest.mark.parametrize("args, needle", [
    (["--study", "nope"], "unknown study 'nope'; allowed: region_size"),
    (["--study", "padding", "--protocol", "imagenet21k"], "unknown protocol 'imagenet21k'; allowed: smoke"),
    (["--study", "padding", "--protocol", "smoke", "--rows", "zero,mirror"], "unknown row 'mirror'"),
    (["--study", "padding", "--protocol", "smoke", "--trainer", FAKE, "--storage", "nonsense"],
     "cannot open storage 'nonsense'"),
    (["--study", "padding", "--protocol", "smoke", "--trainer", FAKE, "--storage",
      "postgresql://nobody@127.0.0.1:9/none"], "cannot open storage postgresql://nobody@127.0.0.1:9/none"),
    (["--study", "padding", "--protocol", "smoke", "--data-dir", "EMPTY"], "no cifar10 data"),
    (["--study", "padding", "--eval-sizes", "24,x"], "argument --eval-sizes: expected comma-separated sizes like "
                                                     "24,28,32, got '24,x'"),
    (["--study", "padding", "--logger", "csv,neptune"], "logger='csv,neptune': unknown logger 'neptune'"),
    (["--study", "padding", "--checkpoint-every-s", "-1"], "checkpoint_every_s=-1.0 is not allowed: a number >= 0"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, needle):
    args = [str(tmp_path) if a == "EMPTY" else a for a in args] + ["--runs-dir", str(tmp_path / "runs")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and err.startswith("error: ") and len(err.splitlines()) == 1


def test_bad_input_from_the_shell_has_no_traceback(tmp_path):
    for cmd in (RUN, [sys.executable, "-m", "sweeps.run"]):
        proc = subprocess.run([*cmd, "--study", "bogus"], capture_output=True, text=True, cwd=REPO, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert proc.stderr.strip().splitlines() == ["error: unknown study 'bogus'; allowed: region_size, "
                                                    "shift_step, padding, components, cross_region, fidelity, "
                                                    "branches, mixers, resolution, recipe, a path/to/study.toml, "
                                                    "or package.module:STUDY"]


# ----------------------------------------------------------------------------------------------- real runs

def _need_real_stack() -> None:
    try:
        import lightning_modules  # noqa: F401
    except ImportError as e:
        if IN_CI:
            raise
        pytest.skip(f"lightning_modules not importable yet: {e}")
    if not (DATA / "cifar-10-python.tar.gz").is_file():
        if IN_CI:
            pytest.fail(f"CI=true but no CIFAR-10 at {DATA}")
        pytest.skip(f"no CIFAR-10 archive at {DATA}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url(tmp_path):
    """A throwaway PostgreSQL server on loopback (run as a non-root user when we are root)."""
    bins = {b: shutil.which(b) or f"/usr/local/bin/{b}" for b in ("initdb", "pg_ctl")}
    if not all(Path(p).is_file() for p in bins.values()):
        if IN_CI:
            pytest.fail("CI=true but the PostgreSQL binaries (initdb, pg_ctl) are missing")
        pytest.skip("PostgreSQL binaries (initdb, pg_ctl) not found")
    as_user: list[str] = []
    base = tmp_path
    if os.geteuid() == 0:  # postgres refuses to run as root; pytest's tmp dirs are root-only (0700)
        import pwd

        user = next((u for u in ("postgres", "nobody") if _has_user(u)), None)
        if user is None or shutil.which("runuser") is None:
            pytest.fail("running as root with no 'postgres'/'nobody' user or no runuser to start PostgreSQL")
        base = Path(tempfile.mkdtemp(prefix="sweeps-pg-", dir="/tmp"))
        os.chown(base, pwd.getpwnam(user).pw_uid, -1)
        as_user = ["runuser", "-u", user, "--"]
    data, port = base / "data", _free_port()
    subprocess.run([*as_user, bins["initdb"], "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"],
                   check=True, capture_output=True, timeout=120)
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*as_user, bins["pg_ctl"], "-D", str(data), "-l", str(base / "log"), "-o", opts, "-w",
                    "start"], check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, bins["pg_ctl"], "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        if base != tmp_path:
            shutil.rmtree(base, ignore_errors=True)


def _has_user(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def _real_sweep(runs: Path, storage: str | None, rows: tuple[str, ...]) -> None:
    """padding on smoke (tiny subset): SIGKILL after the first finished trial, restart with two workers."""
    args = ["--study", "padding", "--protocol", "smoke", "--train-subset", "64", "--eval-subset", "64",
            "--batch-size", "32", "--epochs", "1", "--seeds", "1", "--data-dir", str(DATA), "--runs-dir", str(runs),
            "--rows", ",".join(rows)]
    if storage:
        args += ["--storage", storage]

    def results() -> Path | None:
        found = sorted(runs.glob("padding-smoke*/results.csv"))
        return found[0] if found else None

    first = subprocess.Popen([*RUN, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def first_trial_done() -> bool:
        if first.poll() is not None:
            raise AssertionError(f"sweep exited early ({first.returncode}): {first.stdout.read()[-3000:]}")
        return results() is not None and len(read_csv(results())) >= 1

    wait_for(first_trial_done, 300, "the first real trial")
    first.send_signal(signal.SIGKILL)
    first.wait()
    done_before = {r["row"] for r in read_csv(results()) if r["state"] == "COMPLETE"}
    assert done_before

    second = subprocess.run([*RUN, *args, "--workers", "2"], capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    records = read_csv(results())
    complete = Counter(r["row"] for r in records if r["state"] == "COMPLETE")
    assert complete == Counter({row: 1 for row in rows})  # every row has a result, no cell ran twice
    assert all(float(r["test_acc"]) >= 0 and int(r["params"]) > 0 for r in records if r["state"] == "COMPLETE")
    for row in done_before:  # finished before the kill: not re-run
        assert f"start {row} seed 0" not in second.stdout
    for row in complete:
        assert (results().parent / "trials" / f"{row}__seed0" / "metrics.csv").is_file()
    from lightning_modules.cifar import SPECS, md5sum

    unofficial = md5sum(DATA / "cifar-10-python.tar.gz") != SPECS["cifar10"].md5
    # the archive is verified once per sweep: its warning once, not once per trial or per worker
    assert (second.stdout + second.stderr).count("is not the official") == int(unofficial)


@pytest.mark.slow
def test_real_sweep_journal_kill_restart_two_workers(tmp_path):
    _need_real_stack()
    _real_sweep(tmp_path / "runs", None, ("zero", "circular", "reflect", "replicate"))


@pytest.mark.slow
def test_real_sweep_postgres_kill_restart_two_workers(tmp_path, postgres_url):
    _need_real_stack()
    _real_sweep(tmp_path / "runs", postgres_url, ("zero", "reflect"))  # fewer rows: same machinery, less CPU


@pytest.mark.slow
def test_real_trial_killed_mid_run_resumes_from_its_checkpoint(tmp_path):
    """SIGKILL a real sweep while its trial trains; the same command again resumes that trial from its last
    checkpoint (not epoch 0) and records exactly the numbers of an uninterrupted sweep, with the whole curve."""
    _need_real_stack()
    args = ["--study", "padding", "--protocol", "smoke", "--rows", "zero", "--seeds", "1", "--train-subset", "200",
            "--eval-subset", "100", "--batch-size", "25", "--epochs", "4", "--data-dir", str(DATA),
            "--checkpoint-every-s", "0"]
    assert main([*args, "--runs-dir", str(tmp_path / "reference")]) == 0

    runs = tmp_path / "runs"
    proc = subprocess.Popen([*RUN, *args, "--runs-dir", str(runs)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    seen = []
    for line in proc.stdout:  # the trial's progress lines reach the redirected log while it trains
        seen.append(line)
        if "zero seed 0: epoch 2/4  train_loss " in line:  # epoch 0's checkpoint is on disk
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)[-3000:]
    folder = next(runs.glob("padding-smoke+*"))
    trial_dir = folder / "trials" / "zero__seed0"
    assert (trial_dir / "checkpoints" / "last.ckpt").is_file()

    assert main([*args, "--runs-dir", str(runs)]) == 0
    ref_folder = next((tmp_path / "reference").glob("padding-smoke+*"))
    keys = ("val_acc", "best_val_acc", "test_acc")
    done = [r for r in read_csv(folder / "results.csv") if r["state"] == "COMPLETE"]
    reference = [r for r in read_csv(ref_folder / "results.csv") if r["state"] == "COMPLETE"]
    assert len(done) == 1 and [done[0][k] for k in keys] == [reference[0][k] for k in keys]
    timing = ("images_per_s", "epoch_s")
    metrics = [{k: v for k, v in r.items() if k not in timing} for r in read_csv(trial_dir / "metrics.csv")]
    assert metrics == [{k: v for k, v in r.items() if k not in timing}
                       for r in read_csv(ref_folder / "trials" / "zero__seed0" / "metrics.csv")]
    name = json.loads((folder / "sweep.json").read_text())["optuna_study"]
    study = optuna.load_study(study_name=name, storage=open_storage(None, folder))
    resumed = study.get_trials(states=(TrialState.COMPLETE,))[0]
    assert 1 <= resumed.user_attrs["resumed_from_epoch"] <= 2  # continued from a checkpoint, not from epoch 0
    assert sorted(resumed.intermediate_values) == [0, 1, 2, 3]  # restored epochs reported too: the whole curve
    assert not (trial_dir / "checkpoints").exists()
