"""`test_subset`, the knob added through the one run declaration: how many test images a run scores, apart from how
many validation images it uses (`eval_subset`). Its declaration in `RunConfig` makes it an option of both command
lines, a protocol field recorded with every trial, a keyword of `split_indices` and a count in the dry run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import real_cifar_dir

from ablations import get_study
from lightning_modules.data_base import split_indices
from lightning_modules.predictions import decode
from lightning_modules.run_config import RunConfig
from lightning_modules.train import config_from_args
from sweeps import grid
from sweeps.protocols import get_protocol
from sweeps.run import main
from tests.sweep_fakes import FAKE

LABELS = np.repeat(np.arange(10), 100)  # 1,000 training images, 100 per class
TEST = np.repeat(np.arange(10), 50)  # 500 test images


def split(**budget):
    base = dict(val_size=200, train_subset=300, eval_subset=100, data_seed=3, seed=1)
    return split_indices(LABELS, len(TEST), TEST, **{**base, **budget})


def test_unset_it_scores_as_many_test_images_as_eval_subset_and_the_same_ones():
    before, same = split(), split(test_subset=100)
    assert len(before.test) == 100
    for a, b in zip(before, same, strict=True):
        np.testing.assert_array_equal(a, b)


def test_set_it_changes_only_the_test_images_and_they_are_balanced_and_the_same_for_every_seed():
    base, more = split(), split(test_subset=300)
    np.testing.assert_array_equal(base.train, more.train)
    np.testing.assert_array_equal(base.val, more.val)
    assert len(more.test) == 300 and np.bincount(TEST[more.test]).tolist() == [30] * 10
    np.testing.assert_array_equal(more.test, split(test_subset=300, seed=7).test)
    assert len(split(test_subset=500).test) == 500 and len(split(eval_subset=None, test_subset=20).test) == 20


@pytest.mark.parametrize("bad", [0, 501])
def test_a_count_the_test_set_cannot_give_is_refused(bad):
    with pytest.raises(ValueError, match=f"test_subset={bad}"):
        split(test_subset=bad) if bad else RunConfig(test_subset=bad)


def test_both_command_lines_have_it_and_a_protocol_records_it_without_renaming_old_studies(tmp_path, capsys):
    assert config_from_args(["--test-subset", "250", "--run-dir", str(tmp_path)]).test_subset == 250
    cpu, study = get_protocol("cpu"), get_study("padding")
    assert grid.study_name(grid.spec(study, cpu)) != grid.study_name(grid.spec(study, cpu.with_changes(
        test_subset=10_000)))
    assert cpu.record()["test_subset"] is None and "test_subset" not in cpu.spec()
    assert main(["--study", "padding", "--protocol", "smoke", "--test-subset", "300", "--trainer", FAKE,
                 "--seeds", "1", "--rows", "zero", "--runs-dir", str(tmp_path)]) == 0
    (folder,) = tmp_path.glob("padding-smoke+*")
    assert pd.read_csv(folder / "results.csv")["protocol.test_subset"].tolist() == [300]
    capsys.readouterr()
    assert main(["--study", "padding", "--protocol", "cpu", "--test-subset", "10000", "--dry-run",
                 "--runs-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "5,000 validation per epoch, 10,000 test" in out and "5,000 validation images, 10,000 test images" in out


@pytest.mark.skipif(real_cifar_dir() is None, reason="real CIFAR-10 not found")
@pytest.mark.filterwarnings("ignore::lightning_modules.UnofficialArchiveWarning")
def test_a_run_scores_that_many_test_images(tmp_path):
    from lightning_modules import run
    from lightning_modules.recipe import get_recipe

    cfg = RunConfig(preset="smoke", recipe=get_recipe("plain").replace(epochs=1, batch_size=32), train_subset=64,
                    eval_subset=40, test_subset=120, device="cpu", data_dir=str(real_cifar_dir()),
                    run_dir=str(tmp_path / "run"))
    pred, label = decode(run(cfg)["predictions"])
    assert len(pred) == 120 and np.bincount(label).tolist() == [12] * 10
