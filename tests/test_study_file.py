"""Study files (`ablations.study_file`): a user's study in TOML, its validation before any trial, its identity, and
rows that change the recipe, run end to end (fake trainer here; the real one on smoke in the slow test)."""

from __future__ import annotations

import csv
import sys
import textwrap
from pathlib import Path

import pytest

from ablations import STUDIES
from ablations.study_file import StudyFileError, load_study_file, resolve_study
from sweeps import grid
from sweeps.protocols import get_protocol
from sweeps.run import main
from sweeps.trainers import trial_config
from tests.sweep_fakes import FAKE

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "ablations" / "examples"
DATA = REPO.parent / "shared" / "data"

GOOD = """
name = "mine"
default_row = "base"
[[rows]]
label = "base"
[[rows]]
label = "ls"
label_smoothing = 0.1
[[rows]]
label = "zero-pad"
padding = "zero"
"""


def write(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def name_of(path: Path, protocol: str = "smoke") -> str:
    return grid.study_name(grid.spec(load_study_file(path), get_protocol(protocol)))


# (what is wrong, the file, words the one line must hold besides the file's path)
BAD_FILES = [
    ("not toml", 'name = "mine"\n[[rows]\nlabel = "a"', ["not valid TOML"]),
    ("unknown top-level key", 'colour = "red"\n' + GOOD, ["unknown key 'colour'"]),
    ("unknown row field", GOOD.replace('padding = "zero"', 'paddng = "zero"'), ["row 'zero-pad'", "'paddng'",
                                                                                 "unknown field"]),
    ("bad model value", GOOD.replace('padding = "zero"', 'padding = "mirror"'), ["row 'zero-pad'", "'padding'",
                                                                                  "mirror"]),
    ("bad recipe value", GOOD.replace("label_smoothing = 0.1", "label_smoothing = 1.5"),
     ["row 'ls'", "'label_smoothing'", "1.5"]),
    ("duplicate label", GOOD.replace('label = "zero-pad"', 'label = "ls"'), ["row 'ls'", "duplicate label"]),
    ("missing default row", GOOD.replace('default_row = "base"', 'default_row = "plain"'),
     ["default_row = 'plain'", "base, ls, zero-pad"]),
    ("row equal to the default", GOOD + '[[rows]]\nlabel = "circ"\npadding = "circular"\n',
     ["row 'circ'", "default row 'base'"]),
    ("row without a label", GOOD + '[[rows]]\npadding = "reflect"\n', ["row 4", "label = None"]),
    ("rows and factors", GOOD + '[factors]\npadding = ["zero", "circular"]\n', ["not both"]),
    ("factor with one level", 'name = "f"\n[factors]\npadding = ["zero"]\n', ["factor 'padding'", "2 levels"]),
    ("factor level given twice", 'name = "f"\n[factors]\nregion_sizes = ["4,3,3,2", "4x4,3,3,2"]\n',
     ["factor 'region_sizes'", "twice"]),
    ("a built-in study's name", GOOD.replace('name = "mine"', 'name = "padding"'), ["built-in study"]),
    ("unknown base preset", 'base_preset = "huge"\n' + GOOD, ["base_preset = 'huge'"]),
    ("a field the dataset sets", GOOD.replace('padding = "zero"', "num_classes = 5"),
     ["row 'zero-pad'", "'num_classes'"]),
]


@pytest.mark.parametrize("text, needles", [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES])
def test_every_bad_file_is_one_line_and_exit_2_before_any_trial(tmp_path, monkeypatch, capsys, text, needles):
    path = write(tmp_path, text)
    log = tmp_path / "fake.log"
    monkeypatch.setenv("SWEEP_FAKE_LOG", str(log))
    rc = main(["--study", str(path), "--protocol", "smoke", "--trainer", FAKE, "--seeds", "1",
               "--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert len(err.splitlines()) == 1, err
    for needle in (str(path), *needles):
        assert needle in err, (needle, err)
    assert not log.exists() and not (tmp_path / "runs").exists()  # nothing trained, no run folder


def test_a_missing_file_and_a_bad_entry_point_are_one_line(tmp_path, capsys):
    assert main(["--study", str(tmp_path / "none.toml"), "--trainer", FAKE, "--protocol", "smoke"]) == 2
    assert "cannot read the study file" in capsys.readouterr().err
    assert main(["--study", "sweeps.run:log", "--trainer", FAKE, "--protocol", "smoke"]) == 2
    assert "is not an ablations.Study" in capsys.readouterr().err


def test_the_shipped_examples_load_and_show_each_feature():
    smoothing = load_study_file(EXAMPLES / "smoothing.toml")
    assert smoothing.row("ls").recipe == {"label_smoothing": 0.1} and not smoothing.row("ls").overrides
    assert smoothing.row("zero-pad").overrides == {"padding": "zero"} and smoothing.base_preset == "smoke"
    factorial = load_study_file(EXAMPLES / "padding_x_region.toml")
    assert factorial.labels == ["circular+4-3-3-2", "circular+3-3-3-3", "zero+4-3-3-2", "zero+3-3-3-3"]
    assert factorial.default_row == "circular+4-3-3-2"  # the first level of each factor
    assert [factorial.level_of(r) for r in factorial.labels] == [(0, 0), (0, 1), (1, 0), (1, 1)]


def test_identity_is_what_the_rows_train_not_how_the_file_is_written(tmp_path):
    base = name_of(write(tmp_path, GOOD, "a.toml"))
    reformatted = """
    # the same study: comments, another row order, other spellings of the same values
    default_row = "base"
    name = "mine"

    [[rows]]
    label = "zero-pad"
    padding = "zero"   # zero padding

    [[rows]]
    label = "base"

    [[rows]]
    label = "ls"
    label_smoothing = 1e-1
    """
    assert name_of(write(tmp_path, reformatted, "b.toml")) == base
    assert name_of(write(tmp_path, GOOD.replace("0.1", "0.2"), "c.toml")) != base  # a recipe row edited
    assert name_of(write(tmp_path, GOOD.replace('"zero"', '"reflect"'), "d.toml")) != base  # a model row edited
    spellings = [name_of(write(tmp_path, f'name = "f"\n[factors]\nregion_sizes = [{a}, "3,3,3,3"]\n', f"{i}.toml"))
                 for i, a in enumerate(('"4,3,3,2"', "[4, 3, 3, 2]", '"4x4,3,3,2"'))]
    assert len(set(spellings)) == 1


def test_built_in_study_names_are_unchanged():
    """Recipe rows add a spec key only when a row has one: every built-in table keeps its Optuna name (and so its
    stored trials). The names are main's before study files existed."""
    before = {"region_size": "1b3b4b50", "shift_step": "0ae03f2a", "padding": "657c57aa", "components": "19b4b7a1",
              "cross_region": "5c98125b", "fidelity": "b9d62e36", "branches": "7177934a", "mixers": "eac8998c",
              "resolution": "dc028904",
              "recipe": "ecb097b0"}
    now = {n: grid.study_name(grid.spec(s, get_protocol("smoke"))).rsplit("-", 1)[1] for n, s in STUDIES.items()}
    assert {n: now[n] for n in before} == before


def test_a_recipe_row_changes_the_trials_recipe_and_nothing_else():
    study = load_study_file(EXAMPLES / "smoothing.toml")
    protocol = get_protocol("smoke")
    ls = trial_config(study, protocol, "ls", 0, Path("x"))
    base = trial_config(study, protocol, "base", 0, Path("x"))
    assert ls.recipe.label_smoothing == 0.1 and base.recipe.label_smoothing == 0.0
    assert ls.recipe.replace(label_smoothing=0.0) == base.recipe and ls.model_overrides == {}


def test_entry_point_and_list(tmp_path, monkeypatch, capsys):
    module = tmp_path / "my_studies.py"
    module.write_text("from ablations.study_file import load_study_file\n"
                      f"MY_STUDY = load_study_file({str(EXAMPLES / 'smoothing.toml')!r})\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert resolve_study("my_studies:MY_STUDY").name == "smoothing"
    with pytest.raises(StudyFileError, match="unknown study 'nope'"):
        resolve_study("nope")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "mine.toml").write_text(GOOD)
    (tmp_path / "studies" / "broken.toml").write_text(GOOD.replace('"zero"', '"mirror"'))
    monkeypatch.chdir(tmp_path)
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    assert "studies/mine.toml" in out and "mine: " in out
    assert "studies/broken.toml" in out and "mirror" in out


def _rows_of(results: Path) -> dict[str, dict]:
    with open(results) as fh:
        return {r["row"]: r for r in csv.DictReader(fh)}


def test_a_study_file_runs_end_to_end_on_the_fake_trainer(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SWEEP_FAKE_EFFECTS", raising=False)
    runs = tmp_path / "runs"
    args = ["--study", str(EXAMPLES / "smoothing.toml"), "--protocol", "smoke", "--trainer", FAKE,
            "--seeds", "2", "--runs-dir", str(runs)]
    assert main([*args, "--dry-run"]) == 0
    assert "recipe label_smoothing=0.1" in capsys.readouterr().out
    assert main(args) == 0
    rows = _rows_of(runs / "smoothing-smoke" / "results.csv")
    assert float(rows["ls"]["recipe.label_smoothing"]) == 0.1 and float(rows["base"]["recipe.label_smoothing"]) == 0
    assert rows["zero-pad"]["cfg.padding"] == "zero" and rows["ls"]["cfg.padding"] == "circular"
    report = (runs / "smoothing-smoke" / "report" / "report.md").read_text()
    assert "Does label smoothing help Hire-MLP" in report
    assert "same network" not in report  # a recipe row is one network with the default but trains differently


@pytest.mark.slow
def test_the_shipped_example_runs_on_smoke_with_the_real_trainer(tmp_path):
    """CI: the example study file end to end (a recipe row and a model row) on real CIFAR-10, tiny budget."""
    import subprocess

    runs = tmp_path / "runs"
    cmd = [sys.executable, str(REPO / "sweeps" / "run.py"), "--study", str(EXAMPLES / "smoothing.toml"),
           "--protocol", "smoke", "--train-subset", "64", "--eval-subset", "64", "--val-size", "64",
           "--batch-size", "32", "--epochs", "1", "--seeds", "1", "--data-dir", str(DATA), "--runs-dir", str(runs)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = sorted(runs.glob("smoothing-smoke*/results.csv"))
    assert results, done.stdout[-2000:]
    rows = _rows_of(results[0])
    assert set(rows) == {"base", "ls", "zero-pad"} and all(r["state"] == "COMPLETE" for r in rows.values())
    assert float(rows["ls"]["recipe.label_smoothing"]) == 0.1 and rows["zero-pad"]["cfg.padding"] == "zero"
    assert (results[0].parent / "report" / "report.md").is_file()


SAME_NETWORK = """
name = "cross"
[[rows]]
label = "base"
[[rows]]
label = "no-cross"
cross_region = "none"
[[rows]]
label = "zero-shift"
shift_steps = "0,0,0,0"
[[rows]]
label = "no-cross-ls"
cross_region = "none"
label_smoothing = 0.1
"""


def test_same_network_rows_are_warned_in_the_dry_run_and_marked_in_the_report(tmp_path, monkeypatch, capsys):
    """No cross-region step and steps of 0 are one network; the same network with another recipe is not."""
    from analysis.report import main as report_main

    monkeypatch.delenv("SWEEP_FAKE_EFFECTS", raising=False)
    path = write(tmp_path, SAME_NETWORK)
    runs = tmp_path / "runs"
    args = ["--study", str(path), "--protocol", "smoke", "--trainer", FAKE, "--seeds", "2", "--runs-dir", str(runs)]
    assert main([*args, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "warning: rows no-cross, zero-shift are the same network" in out
    assert "no-cross-ls" not in out.split("warning:", 1)[1]  # its recipe differs: not the same trial
    assert main(args) == 0
    capsys.readouterr()
    assert report_main(["--study", str(path), "--protocol", "smoke", "--runs-dir", str(runs)]) == 0  # the report CLI
    table = (runs / "cross-smoke" / "report" / "table.csv").read_text().splitlines()
    marked = {line.split(",")[0] for line in table[1:] if "same network as" in line}
    assert marked == {"no-cross", "zero-shift"}
    assert report_main(["--study", str(tmp_path / "missing.toml"), "--runs-dir", str(runs)]) == 2
    assert "cannot read the study file" in capsys.readouterr().err


@pytest.mark.slow
def test_the_factorial_example_runs_on_smoke_with_the_real_trainer_and_prints_its_contrasts(tmp_path):
    """CI: the 2x2 example on real CIFAR-10 (tiny budget, 2 seeds): the sweep prints both main effects and the
    interaction with their intervals."""
    import subprocess

    example = EXAMPLES / "padding_x_region.toml"
    cmd = [sys.executable, str(REPO / "sweeps" / "run.py"), "--study", str(example), "--protocol", "smoke",
           "--train-subset", "64", "--eval-subset", "64", "--val-size", "64", "--batch-size", "32", "--epochs", "1",
           "--seeds", "2", "--data-dir", str(DATA), "--runs-dir", str(tmp_path / "runs")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [x for x in done.stdout.splitlines() if x.startswith("| padding zero − circular")
             or x.startswith("| region_sizes 3-3-3-3 − 4-3-3-2") or x.startswith("| (padding zero − circular) × ")]
    assert len(lines) == 3, done.stdout[-3000:]
    assert all("[" in x and "| 2 |" in x for x in lines)  # an interval over the 2 paired seeds
    assert len(list((tmp_path / "runs").glob("padding_x_region-smoke*/report/interaction.png"))) == 1


def test_a_recipe_row_the_protocol_cannot_train_is_refused_before_any_trial(tmp_path, monkeypatch, capsys):
    """Checked against the protocol's recipe (smoke: 3 epochs) once it is known: one line naming the file and row."""
    path = write(tmp_path, GOOD.replace("label_smoothing = 0.1", "warmup_epochs = 5.0"))
    log = tmp_path / "fake.log"
    monkeypatch.setenv("SWEEP_FAKE_LOG", str(log))
    assert main(["--study", str(path), "--protocol", "smoke", "--trainer", FAKE, "--runs-dir",
                 str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(path) in err and "row 'ls'" in err and "warmup_epochs" in err
    assert not log.exists()
