"""The ablation studies are data: check they build valid models and carry the paper's numbers faithfully."""

import pytest

from ablations import PAPER_SOURCE, STUDIES, Study, get_study, row_config

# arXiv v1 Tables 3-7 (Hire-MLP-Small, ImageNet top-1), copied from shared/reference/hiremlp.md section 3.
PAPER = {
    "region_size": {
        "2-2-2-2": 80.95, "3-2-2-2": 81.04, "3-3-2-2": 81.33, "3-3-3-2": 81.58, "3-3-3-3": 81.51,
        "4-3-3-2": 81.69, "4-3-3-3": 81.50, "4-4-3-3": 81.35, "5-4-3-3": 81.16,
    },
    "shift_step": {"0-0-0-0": 81.06, "1-1-1-1": 81.53, "2-2-1-1": 81.78, "2-2-2-2": 81.46},
    "padding": {"zero": 81.59, "circular": 81.78, "reflect": 81.36, "replicate": 81.42},
    "components": {"full": 81.78, "no-cross": 81.06, "no-inner": 79.81, "no-channel": 81.18},
    "cross_region": {"shift": 81.78, "shuffle": 80.82},
}
TABLES = {"region_size": "Table 3", "shift_step": "Table 4", "padding": "Table 5", "components": "Table 6",
          "cross_region": "Table 7"}


@pytest.mark.parametrize("name", list(STUDIES))
def test_every_row_builds_a_valid_smoke_config(name):
    study = STUDIES[name]
    for row in study.rows:
        cfg = row_config(study, row.label, preset="smoke")
        for key, value in row.overrides.items():
            got = getattr(cfg, key)
            assert got == value or tuple(got) == tuple(value), (name, row.label, key)


@pytest.mark.parametrize("name", list(STUDIES))
def test_labels_unique_default_present_and_filesystem_safe(name):
    study = STUDIES[name]
    assert len(set(study.labels)) == len(study.labels)
    assert study.default_row in study.labels
    assert study.description and study.description.endswith(".")
    for label in study.labels:
        assert label.replace("-", "").replace("_", "").isalnum(), label  # used in folder names and --rows a,b


@pytest.mark.parametrize("name", list(PAPER))
def test_paper_numbers_match_reference(name):
    study = STUDIES[name]
    assert {r.label: r.paper_top1 for r in study.rows} == PAPER[name]
    assert study.paper_table == TABLES[name]


def test_studies_beyond_the_paper_have_no_paper_numbers():
    for name in set(STUDIES) - set(PAPER):
        assert STUDIES[name].paper_table is None
        assert all(r.paper_top1 is None for r in STUDIES[name].rows)
    assert "arXiv 2108.13341 v1" in PAPER_SOURCE and "Small" in PAPER_SOURCE


def test_region_rows_use_unit_shift_and_branch_rows_cover_all_subsets():
    assert all(r.overrides["shift_steps"] == (1, 1, 1, 1) for r in STUDIES["region_size"].rows)
    assert {frozenset(r.overrides["branches"]) for r in STUDIES["branches"].rows} == {
        frozenset(s) for s in ("h", "w", "c", "hw", "hc", "wc", "hwc")}
    assert STUDIES["resolution"].eval_sizes == (24, 28, 32, 36, 40, 48)
    assert STUDIES["recipe"].kind == "tune" and {"lr", "weight_decay", "drop_path"} <= set(
        STUDIES["recipe"].search_space)


def test_get_study_names_the_allowed_studies():
    assert get_study("padding") is STUDIES["padding"]
    with pytest.raises(ValueError, match="allowed: region_size"):
        get_study("nope")
    with pytest.raises(ValueError, match="default row"):
        Study("x", "d.", None, (), "missing")
