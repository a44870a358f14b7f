"""What a sweep settles and says before its first trial. Inputs that used to fail inside every trial, or not at all,
are one line and exit 2 before it, with nothing stored; data budgets are checked against the data's real size (real
CIFAR-10; an ImageFolder tree). The help states the chosen protocol's values, and the first lines the time."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_modules.data_base import split_indices
from lightning_modules.train import main as train_main
from sweeps.run import main

pytestmark = pytest.mark.filterwarnings("ignore::lightning_modules.UnofficialArchiveWarning")
SMOKE = ["--study", "padding", "--protocol", "smoke", "--seeds", "1"]


def refused(capsys: pytest.CaptureFixture, runs: Path, *args: str) -> str:
    """Exit 2, one line on stderr, and no runs folder at all (no study, no journal, no trial folder)."""
    assert main([*SMOKE, "--runs-dir", str(runs), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert not runs.exists()
    return err


@pytest.mark.parametrize("args, needle", [
    (["--val-size", "60000"], "val_size=60000: cifar10's training set has 50,000 images; allowed 0..49,990"),
    (["--val-size", "49991"], "val_size=49991: cifar10's training set has 50,000 images; allowed 0..49,990"),
    (["--train-subset", "999999"], "train_subset=999999: cifar10's training set has 49,000 images left for "
                                   "training after val_size 1,000; allowed 1..49,000"),
    (["--train-subset", "49001"], "allowed 1..49,000"),
    (["--rows", "zero,zero"], "--rows 'zero,zero' names row 'zero' twice"),
    (["--rows", "zero,circular,zero"], "names row 'zero' twice"),
])
def test_budget_beyond_the_data_and_repeated_rows_exit_2(tmp_path, capsys, real_cifar, args, needle):
    assert needle in refused(capsys, tmp_path / "runs", *args)


def test_runs_dir_that_cannot_be_created_exits_2(tmp_path, capsys, real_cifar):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    err = refused(capsys, blocker / "runs")
    assert f"--runs-dir {blocker / 'runs'}: cannot create the run folder there" in err
    if Path("/proc").is_dir():
        assert "--runs-dir /proc/x: cannot create the run folder" in refused(capsys, Path("/proc/x"))


def test_the_largest_budgets_the_data_allows_pass(tmp_path, capsys, real_cifar):
    """The limits are the data's, not one off: a dry run is not needed to see that the check lets them through."""
    y = __import__("numpy").repeat(range(10), 5000)
    split = split_indices(y, 100, y[:100], val_size=49_990, train_subset=10, eval_subset=None, seed=0, data_seed=0)
    assert len(split.val) == 49_990 and len(split.train) == 10
    split = split_indices(y, 100, y[:100], val_size=1000, train_subset=49_000, eval_subset=None, seed=0,
                          data_seed=0)
    assert len(split.train) == 49_000


def test_imagefolder_budget_is_checked_against_the_tree(jpeg_tree, tmp_path, capsys, monkeypatch):
    """The tree has 240 training images: --val-size 300 or a training subset beyond what is left stops the sweep
    (and a single run) with one line naming the tree, before any trial."""
    monkeypatch.setenv("HIREMLP_CACHE", str(tmp_path / "cache"))
    base = ["--study", "padding", "--protocol", "imagenet", "--data-dir", str(jpeg_tree), "--image-size", "32",
            "--rows", "circular"]
    for extra, needle in ((["--val-size", "300"], "val_size=300: "),
                          (["--val-size", "40", "--train-subset", "201"], "train_subset=201: ")):
        runs = tmp_path / "runs"
        assert main([*base, "--runs-dir", str(runs), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and str(jpeg_tree / "train") in err and len(err.splitlines()) == 1, err
        assert not runs.exists()
    code = train_main(["--dataset", "imagefolder", "--data-dir", str(jpeg_tree), "--preset", "smoke", "--image-size",
                       "32", "--val-size", "40", "--train-subset", "500", "--run-dir", str(tmp_path / "run"),
                       "--progress", "off", "--workers", "0", "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "train_subset=500: " in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.fixture
def real_cifar():
    from conftest import real_cifar_dir

    if real_cifar_dir() is None:
        pytest.skip("real CIFAR-10 not found: set HIREMLP_DATA or provide ../shared/data")


# ----------------------------------------------------------------------------------------------- what it says first

def test_help_states_the_chosen_protocols_values(capsys):
    def help_of(*args: str) -> str:
        assert main([*args, "--help"]) == 0
        return " ".join(capsys.readouterr().out.split())

    cpu = help_of("--protocol", "cpu")
    assert "(default: cifar10 with a GPU, cpu without)" in cpu and "defaults: protocol cpu's values" in cpu
    assert "cooldown_epochs) (an integer >= 1; default 6, protocol cpu's)" in cpu  # not the dataclass's 100
    assert "training images (None: the whole training split) (default 10000, protocol cpu's)" in cpu
    assert "validation (default 5000, protocol cpu's)" in cpu
    smoke = help_of("--protocol", "smoke")
    assert "cooldown_epochs) (an integer >= 1; default 3, protocol smoke's)" in smoke
    assert "validation (default 1000, protocol smoke's)" in smoke
    assert "default 300" in help_of("--protocol", "imagenet")
    assert "$HIREMLP_DATA, ~/.cache/hiremlp/data, <repository>/data, <repository>/../shared/data that holds" in cpu


def test_a_sweep_states_its_estimated_time_before_its_first_trial(tmp_path, capsys, real_cifar, monkeypatch):
    """Measured here after warm-up (no trials recorded under this runs folder), said before any trial starts, with
    how long the measurement took."""
    from sweeps import run as sweep_run

    started = []
    monkeypatch.setattr(sweep_run.worker, "work", lambda sweep: started.append(capsys.readouterr().out))
    assert main([*SMOKE, "--rows", "zero,circular", "--runs-dir", str(tmp_path / "runs")]) == 1  # no trial ran
    (before_trials,) = started
    line = next(ln for ln in before_trials.splitlines() if "estimated time:" in ln)
    assert "for 2 trial(s) on one device, measured: row 'zero' on cpu: " in line
    assert "train images/s at batch 64" in line
    assert " s; worker start-up not included)" in line.split("the estimate took ")[1]
