"""One row config: every place that builds a table row's model (the report's mixing plan, the dry run's cost, the
preflight check, the trial's RunConfig) goes through `hiremlp.row_config`, so they build the same network and
reject a bad row with the same one-line ValueError."""

from __future__ import annotations

from pathlib import Path

import pytest

import hiremlp
from ablations import Row, Study, get_study
from ablations.distinct_rows import paper_configs, study_configs
from ablations.studies import row_config
from lightning_modules.dataset_classes import dataset_classes
from sweeps import cost
from sweeps.protocols import get_protocol
from sweeps.trainers import trial_config

BAD = Study(name="bad", description="a row with a misspelt field", paper_table=None, default_row="ok",
            rows=(Row("ok", {"padding": "zero"}), Row("typo", {"paddin": "zero"})))


def test_row_config_applies_drop_path_and_classes_and_names_bad_fields() -> None:
    cfg = hiremlp.row_config("smoke", {"padding": "reflect"}, drop_path=0.2, num_classes=7)
    assert (cfg.padding, cfg.drop_path_rate, cfg.num_classes) == ("reflect", 0.2, 7)
    assert hiremlp.row_config("smoke") == hiremlp.PRESETS["smoke"]  # None keeps the preset's
    with pytest.raises(ValueError, match=r"unknown model config field 'paddin'; allowed: .*padding"):
        hiremlp.row_config("smoke", {"paddin": "zero"})
    with pytest.raises(ValueError, match="not both"):
        hiremlp.row_config("smoke", {"drop_path_rate": 0.1}, drop_path=0.2)


@pytest.mark.parametrize("build", [
    lambda: row_config(BAD, "typo", "smoke"),
    lambda: study_configs(BAD, "smoke"),
    lambda: paper_configs(BAD),
    lambda: cost._build(BAD, get_protocol("smoke"), "typo"),
    lambda: trial_config(BAD, get_protocol("smoke"), "typo", 0, Path("x")),
], ids=["studies", "distinct_rows", "paper_configs", "cost", "trial_config"])
def test_every_builder_names_an_unknown_field(build) -> None:
    """`dataclasses.replace` would raise a TypeError without the allowed names; every builder gives the same line."""
    with pytest.raises(ValueError, match=r"unknown model config field 'paddin'"):
        build()


def test_every_builder_builds_the_same_row_with_drop_path_and_classes() -> None:
    study = get_study("padding")
    protocol = get_protocol("cpu").with_changes(drop_path=0.15)
    cfg = trial_config(study, protocol, "zero", 0, Path("x"))
    want = row_config(study, "zero", protocol.preset, drop_path=0.15, num_classes=10)
    assert want.drop_path_rate == 0.15 and want.padding == "zero"
    assert cost._build(study, protocol, "zero").config == want
    assert cfg.model_config(dataset_classes(protocol.dataset)) == want


def test_classes_of_a_dataset_are_worked_out_once(jpeg_tree: Path, tmp_path: Path) -> None:
    assert dataset_classes("cifar10") == 10 and dataset_classes("cifar100") == 100
    assert dataset_classes("imagefolder", jpeg_tree) == 10 and dataset_classes("imagefolder", jpeg_tree, "3") == 3
    listing = tmp_path / "classes.txt"
    listing.write_text("# two classes\ncat\ndog extra words\ncat\n")
    assert dataset_classes("imagefolder", None, str(listing)) == 2 == dataset_classes("imagefolder", jpeg_tree,
                                                                                      str(listing))
    assert dataset_classes("imagefolder") is None  # unknowable without the tree
    imagenet100 = get_protocol("imagenet").with_changes(classes="100")
    assert cost._build(get_study("padding"), imagenet100, "zero").config.num_classes == 100
    assert cost.num_classes(get_protocol("imagenet")) == 1000  # the dry run costs an unstated tree as ImageNet-1k
    with pytest.raises(ValueError, match="dataset='mnist'"):
        dataset_classes("mnist")
