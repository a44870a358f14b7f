"""hiremlp.mixing_plan tells what every branch mixes (held against autograd on the real model) and which rows of
the paper's tables are the same network at the size a protocol runs them."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pandas as pd
import pytest
import torch

import hiremlp
from ablations import STUDIES, get_study
from ablations.distinct_rows import check_study, dry_run_text, paper_configs, study_configs
from analysis.report import report_study
from hiremlp import HireModule
from hiremlp.counting import map_sizes
from hiremlp.mixing_plan import Slot, branch_plan, inert_steps, is_inert, mixing_plan, same_network
from sweeps.protocols import PROTOCOLS
from sweeps.run import main as sweep_main

PAPER_TABLES = [s for s in STUDIES.values() if s.paper_table in ("Table 3", "Table 4", "Table 5", "Table 6",
                                                                  "Table 7")]


def _random_config(rng: random.Random, cross_region: str, padding: str) -> hiremlp.HireMLPConfig:
    stem = rng.choice([(3, 1, 1), (3, 2, 1), (7, 4, 2)])
    return hiremlp.HireMLPConfig(
        embed_dims=(16, 16, 16, 16), depths=tuple(rng.randint(1, 3) for _ in range(4)),
        region_sizes=tuple((rng.randint(1, 5), rng.randint(1, 5)) for _ in range(4)),
        shift_steps=tuple(rng.randint(0, 3) for _ in range(4)), shift_schedule=rng.choice(["official", "paper"]),
        cross_region=cross_region, padding=padding, inner_region=rng.random() > 0.15,
        branches=rng.choice(["h,w,c", "h,w", "h,c", "w"]), stem_kernel=stem[0], stem_stride=stem[1],
        stem_padding=stem[2], num_classes=3)


def _reached(module: HireModule, branch: str, shape: tuple[int, int], pixel: tuple[int, int],
             x: torch.Tensor) -> set[tuple[int, int]]:
    """Input pixels with a nonzero gradient at one output pixel of one branch, OR-ed over the batch."""
    x = x.detach().requires_grad_(True)
    out = module.branch_outputs(x)[branch]
    (grad,) = torch.autograd.grad(out[:, :, pixel[0], pixel[1]].sum(), x)
    return {(int(r), int(c)) for r, c in torch.nonzero(grad.abs().sum((0, 1)) > 0)}


def test_plan_equals_autograd_receptive_fields_of_the_real_model() -> None:
    """Random configs and input sizes: every output row (column) of every block's h (w) branch reaches exactly the
    rows (columns) the plan lists, in its own column (row), and the plan's map sizes are the model's."""
    rng = random.Random(11)
    checked = refused = 0
    seen = set()
    combos = [(c, p) for c in ("shift", "shuffle", "none") for p in ("zero", "circular", "replicate", "reflect")]
    for cross_region, padding in combos * 3:
        while True:  # sizes some configs cannot run at are refused by plan and model alike
            cfg = _random_config(rng, cross_region, padding)
            size = (rng.randint(6, 30), rng.randint(6, 30))
            torch.manual_seed(0)
            model = hiremlp.build_model(cfg).double().eval()
            try:
                plan = mixing_plan(cfg, size)
                break
            except ValueError:
                with pytest.raises(ValueError):
                    model(torch.zeros(1, 3, *size, dtype=torch.float64))
                refused += 1
        with torch.no_grad():
            shapes = [tuple(o.shape[-2:]) for o in model.stage_outputs(torch.zeros(1, 3, *size, dtype=torch.float64))]
        assert shapes == map_sizes(cfg, size)
        for blocks, (h, w) in zip(plan, shapes, strict=True):
            for block in blocks:
                module = model.stages[block.stage - 1].blocks[block.block - 1].mixer
                x = torch.randn(16, 16, h, w, dtype=torch.float64)
                for axis, branch in block.branches().items():
                    across = rng.randrange(w if axis == "h" else h)
                    seen.add((branch.manner, cfg.padding if branch.pad else "no pad"))
                    for k in range(branch.length):
                        pixel = (k, across) if axis == "h" else (across, k)
                        want = {(r, across) if axis == "h" else (across, r) for r in branch.reach(k)}
                        assert _reached(module, axis, (h, w), pixel, x) == want, (cfg, size, block, axis, k)
                        checked += 1
    assert checked > 2000 and refused > 0
    assert {(m, p) for m in ("shift", "shuffle") for p in ("zero", "circular", "replicate", "reflect")} <= seen


@pytest.mark.parametrize(("args", "text"), [
    ((7, 3, 1, "shift", "circular"), "[6 0 1][2 3 4][5 6' 0']"),
    ((7, 3, 0, "shift", "zero"), "[0 1 2][3 4 5][6 _ _]"),
    ((7, 2, 1, "shift", "replicate"), "[6 0][1 2][3 4][5 5']"),
    ((7, 2, 1, "shift", "reflect"), "[6 0][1 2][3 4][5 4']"),
    ((6, 3, 1, "shuffle", "circular"), "[0 3 1][4 2 5]"),
    ((5, 3, 2, "none", "circular"), "[0 1 2][3 4 0']"),
])
def test_plan_text_spells_out_shift_padding_and_shuffle(args, text) -> None:
    assert branch_plan(*args).text() == text


def test_equivalence_rule() -> None:
    """One region: p, order and padding do not matter. Several regions: their order does not, their slot
    contents do (zero vs a copy of the remainder row), and a uniform reordering of slots is the same MLP."""
    one_region = [branch_plan(2, p, s, "shift", pad) for p in (2, 3) for s in (0, 1) for pad in ("zero", "circular")]
    assert len({b.canonical() for b in one_region}) == 1
    assert branch_plan(7, 2, 0, padding="zero").canonical() != branch_plan(7, 2, 0, padding="replicate").canonical()
    assert branch_plan(7, 2, 0, padding="replicate").canonical() != branch_plan(7, 2, 1).canonical()
    assert branch_plan(8, 2, 2).canonical() == branch_plan(8, 2, 0).canonical()  # regions moved onto each other
    assert branch_plan(8, 2, 1).canonical() != branch_plan(8, 2, 0).canonical()
    plain = branch_plan(6, 3)
    swapped = type(plain)(**{**plain.__dict__, "regions": tuple((r[2], r[0], r[1]) for r in plain.regions)})
    assert swapped.canonical() == plain.canonical()
    crossed = type(plain)(**{**plain.__dict__, "regions": ((Slot(0), Slot(1), Slot(2)), (Slot(4), Slot(3), Slot(5)))})
    assert crossed.canonical() != plain.canonical()


def test_inert_steps_are_exactly_undone_by_the_module() -> None:
    """What the plan calls inert really is: the same weights with and without the step give equal outputs."""
    for n, p, s, manner in ((4, 2, 2, "shift"), (4, 2, 4, "shift"), (9, 3, 3, "shift"), (3, 3, 1, "shuffle")):
        assert is_inert(branch_plan(n, p, s, manner))
        still = HireModule(16, region_size=p, shift=0).eval()
        moved = HireModule(16, region_size=p, shift=s, cross_region=manner).eval()
        moved.load_state_dict(still.state_dict())
        x = torch.randn(2, 16, n, n)
        for axis in "hw":
            torch.testing.assert_close(moved.branch_outputs(x)[axis], still.branch_outputs(x)[axis])
    assert not is_inert(branch_plan(7, 2, 2))  # stage 4 at 224 px: s = 2 moves a padded region
    assert not is_inert(branch_plan(4, 2, 2, "shuffle"))


def test_one_region_with_a_larger_region_size_is_the_same_function() -> None:
    """3-3-3-2 vs 3-3-3-3 on a 2-row map: the p = 3 branch (rows [1 0 1'] with s = 1) is a p = 2 branch whose
    weights are sums over the copies; outputs agree exactly once the weights are mapped."""
    torch.manual_seed(0)
    big = HireModule(8, region_size=3, shift=1, branches="h").eval()
    small = HireModule(8, region_size=2, shift=0, branches="h").eval()
    plan_big, plan_small = branch_plan(2, 3, 1), branch_plan(2, 2, 0)
    src, dst = big.h.mlp, small.h.mlp
    with torch.no_grad():
        dst.norm.load_state_dict(src.norm.state_dict())
        for k_small, slot in enumerate(plan_small.regions[0]):
            row = slot.source
            k_true = plan_big.regions[0].index(Slot(row))
            dst.reduce[:, :, k_small] = sum(src.reduce[:, :, k] for k, s in enumerate(plan_big.regions[0])
                                            if s.source == row)
            dst.expand[:, :, k_small] = src.expand[:, :, k_true]
            dst.expand_bias[:, k_small] = src.expand_bias[:, k_true]
    x = torch.randn(3, 8, 2, 5)
    torch.testing.assert_close(small.branch_outputs(x)["h"], big.branch_outputs(x)["h"])


def test_every_paper_row_is_a_distinct_network_at_224_px_with_small() -> None:
    for study in PAPER_TABLES:
        configs = paper_configs(study)
        for a in configs:
            for b in configs:
                assert (a == b) == same_network(configs[a], configs[b], 224), (study.name, a, b)
    # the check can fail: the same rows on the old stride-2 CIFAR stem are not all distinct
    region = get_study("region_size")
    old = study_configs(region, "cifar_small_s2")
    assert same_network(old["3-3-3-2"], old["3-3-3-3"], 32) and same_network(old["4-3-3-2"], old["4-3-3-3"], 32)


def _protocol_presets() -> list[tuple[str, int]]:
    return sorted({(p.preset, p.image_size or 32) for p in PROTOCOLS.values()})


@pytest.mark.parametrize("preset, size", _protocol_presets())
def test_shipped_presets_make_every_paper_row_a_distinct_network(preset: str, size: int) -> None:
    """No two rows of Tables 3-7 are one network at the protocol's size; at 32 px the only inert step the 224 px
    model lacks is Table 4's 2-2-2-2 in stage 4 (a roll by 2 of a 4-row map in regions of 2), at 224 px none."""
    here_only = set()
    for study in PAPER_TABLES:
        findings = check_study(study, size, preset)
        assert all(not f.same_as and f.reason is None for f in findings.values()), (study.name, findings)
        here_only |= {(study.name, label, s.stage, s.block, s.axis, s.step)
                      for label, f in findings.items() for s in f.inert_here_only}
    expected = {("shift_step", "2-2-2-2", 4, 2)} if size == 32 else set()
    assert {(s, label, stage, step) for s, label, stage, _, _, step in here_only} == expected


@pytest.mark.parametrize("preset", ["smoke_s2", "cifar_tiny_s2", "cifar_small_s2"])
def test_old_stride2_presets_flag_their_known_degenerate_pairs(preset: str) -> None:
    findings = check_study(get_study("region_size"), 32, preset)
    assert findings["3-3-3-2"].same_as == ("3-3-3-3",) and findings["4-3-3-2"].same_as == ("4-3-3-3",)
    assert all(not findings[r].same_as for r in ("2-2-2-2", "3-2-2-2", "3-3-2-2", "4-4-3-3", "5-4-3-3"))
    shifts = check_study(get_study("shift_step"), 32, preset)
    assert {(s.stage, s.step) for s in shifts["2-2-1-1"].inert_here_only} == {(4, 1)}
    stage3 = {(s.stage, s.step) for s in shifts["2-2-2-2"].inert_here_only if s.stage == 3}
    assert stage3 == ({(3, 4)} if hiremlp.PRESETS[preset].depths[2] >= 3 else set())
    shuffle = check_study(get_study("cross_region"), 32, preset)["shuffle"]
    assert {(s.stage, s.manner) for s in shuffle.inert_here_only} == {(4, "shuffle")}


def test_dry_run_lists_differing_stages_and_warns(capsys) -> None:
    assert sweep_main(["--study", "shift_step", "--protocol", "smoke", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^1-1-1-1 +stages 1,2$", out, re.M) and re.search(r"^2-2-2-2 +stages 3,4$", out, re.M)
    assert "warning: row 2-2-2-2" in out and "stage 4 block 2 (h, w): shift 2 on 4 rows/columns" in out
    text = dry_run_text(get_study("region_size"), "smoke_s2", get_study("region_size").labels)
    assert "warning: rows 3-3-3-2, 3-3-3-3 are the same network at 32 px" in text
    assert "warning: rows 4-3-3-2, 4-3-3-3 are the same network at 32 px" in text


def _results_csv(folder: Path, study, preset: str) -> None:
    """A finished study's results.csv whose trials ran the rows on `preset` (what sweeps writes: cfg.* columns)."""
    records = []
    for i, (label, cfg) in enumerate(study_configs(study, preset).items()):
        for seed in range(2):
            records.append({"study": study.name, "protocol": "smoke", "row": label, "seed": seed, "trial": 2 * i + seed,
                            "state": "COMPLETE", "test_acc": 50.0 + i + seed, "protocol.preset": "smoke",
                            **{f"cfg.{k}": v for k, v in cfg.to_flat().items()}})
    folder.mkdir(parents=True)
    pd.DataFrame(records).to_csv(folder / "results.csv", index=False)


def test_report_marks_rows_the_protocol_cannot_measure(tmp_path: Path) -> None:
    """The configs that ran (old stride-2 smoke) decide the marks, not the preset's current definition."""
    study = get_study("region_size")
    _results_csv(tmp_path / "region_size-smoke", study, "smoke_s2")
    md = report_study("region_size", "smoke", tmp_path)
    assert "same network as row 3-3-3-3 at 32 px: this protocol cannot measure it" in md
    assert "same network as row 4-3-3-2 at 32 px: this protocol cannot measure it" in md
    assert re.search(r"\| 3-3-3-2 \[\d\]", md) and re.search(r"\| 4-3-3-2 \(default\) \[\d\]", md)
    table = pd.read_csv(tmp_path / "region_size-smoke" / "report" / "table.csv").set_index("row")
    assert table["cannot_measure"].notna().all()  # every row has a stage-4 shift that does nothing at 16/8/4/2

    shift = get_study("shift_step")
    _results_csv(tmp_path / "shift_step-smoke", shift, "smoke")
    md = report_study("shift_step", "smoke", tmp_path)
    table = pd.read_csv(tmp_path / "shift_step-smoke" / "report" / "table.csv").set_index("row")
    assert table["cannot_measure"].notna().tolist() == [False, False, False, True]
    assert "2-2-2-2 [" in md and "inert at 32 px that acts at 224 px (stage 4 block 2 (h, w)" in md


def test_inert_steps_of_the_plan_and_the_cli(capsys) -> None:
    assert [(s.stage, s.block, s.axis) for s in inert_steps(hiremlp.PRESETS["smoke_s2"], 32)] == [
        (4, 2, "h"), (4, 2, "w")]
    assert inert_steps(hiremlp.PRESETS["smoke"], 32) == []
    from hiremlp.__main__ import main as hiremlp_main

    assert hiremlp_main(["--plan", "smoke_s2"]) == 0
    out = capsys.readouterr().out
    assert "block 2 step 1 (shift) h, w: [1 0]  (inert" in out
    with pytest.raises(SystemExit) as err:
        hiremlp_main(["--plan", "nope"])
    assert err.value.code == 2
