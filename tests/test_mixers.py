"""The token-mixer switch: the default stays Hire-MLP, and every other mixer mixes what its paper says it mixes.

Receptive fields are measured by autograd on the mixer of a real block (`analysis.receptive_field`), and held
against each paper's statement: AS-MLP a cross of shift_size // 2 pixels each way (zeros beyond the border),
ViP whole columns and rows, CycleMLP a 1x3 and a 3x1 staircase, a 3x3 depthwise conv a 3x3 square, channel-only
the pixel itself. The per-channel tests pin the released direction of each shift.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import hiremlp
from ablations import STUDIES
from analysis.receptive_field import module_from_config, receptive_fields
from hiremlp.axial_shift import axial_shift
from hiremlp.config import MIXERS
from hiremlp.cycle_fc import cycle_offsets, cycle_shift
from hiremlp.mixing_plan import inert_steps, same_network
from hiremlp.permute_mlp import segment_channels

SMOKE = hiremlp.PRESETS["smoke"]


def _mask(size: tuple[int, int], pixels: list[tuple[int, int]]) -> np.ndarray:
    m = np.zeros(size, dtype=bool)
    for i, j in pixels:
        if 0 <= i < size[0] and 0 <= j < size[1]:
            m[i, j] = True
    return m


def _row(i: int, cols: range) -> list[tuple[int, int]]:
    return [(i, j) for j in cols]


def _col(j: int, rows: range) -> list[tuple[int, int]]:
    return [(i, j) for i in rows]


# ------------------------------------------------------------------------------------------------ config, names
def test_default_is_hire_and_bad_mixer_values_are_one_line_errors() -> None:
    assert hiremlp.HireMLPConfig().mixer == "hire"
    assert all(cfg.mixer == "hire" for cfg in hiremlp.PRESETS.values())
    for field, value, needle in (("mixer", "mlp", "mixer='mlp' is not allowed: one of hire, as_mlp, vip"),
                                 ("shift_size", 4, "shift_size=4 is not allowed: an odd integer"),
                                 ("vip_image_size", 0, "vip_image_size=0 is not allowed")):
        with pytest.raises(ValueError, match=needle) as err:
            SMOKE.replace(**{field: value})
        assert "\n" not in str(err.value)
    assert SMOKE.replace(mixer="AS_MLP").mixer == "as_mlp"


def test_spec_leaves_out_what_does_not_change_the_network() -> None:
    new = {"mixer", "shift_size", "vip_image_size"}
    for cfg in hiremlp.PRESETS.values():
        assert set(cfg.to_flat()) - set(cfg.spec()) == new
        assert cfg.replace(shift_size=3, vip_image_size=64).spec() == cfg.spec()
    assert set(SMOKE.to_flat()) - set(SMOKE.replace(mixer="as_mlp").spec()) == {"vip_image_size"}
    assert SMOKE.replace(mixer="as_mlp", shift_size=3).spec() != SMOKE.replace(mixer="as_mlp").spec()
    assert set(SMOKE.to_flat()) - set(SMOKE.replace(mixer="vip").spec()) == {"shift_size"}
    assert SMOKE.replace(mixer="dwconv").spec()["mixer"] == "dwconv"


def test_studies_with_committed_results_keep_their_optuna_names() -> None:
    """The names the runs in results/ were made under: a change would orphan users' run folders (no resume)."""
    from sweeps import grid
    from sweeps.protocols import get_protocol

    for study, name in (("components", "components-cpu-432dbd64"), ("cross_region", "cross_region-cpu-2ca87151")):
        assert grid.study_name(grid.spec(STUDIES[study], get_protocol("cpu"))) == name


def test_mixers_study_has_a_row_per_mixer_and_no_paper_column() -> None:
    study = STUDIES["mixers"]
    assert tuple(study.labels) == MIXERS and study.default_row == "hire"
    assert study.paper_table is None and all(r.paper_top1 is None for r in study.rows)
    assert study.figures == ("accuracy_vs_macs",)


# ------------------------------------------------------------------------------------------------- the models
@pytest.mark.parametrize("mixer", MIXERS)
def test_every_mixer_trains_and_its_two_implementations_agree(mixer: str) -> None:
    torch.manual_seed(0)
    fast = hiremlp.create_model("smoke", num_classes=10, mixer=mixer).to(memory_format=torch.channels_last)
    ref = hiremlp.create_model("smoke", num_classes=10, mixer=mixer, impl="reference")
    ref.load_state_dict(fast.state_dict())
    fast.eval()
    ref.eval()
    x = torch.randn(4, 3, 32, 32)
    assert torch.allclose(fast(x.contiguous(memory_format=torch.channels_last)), ref(x), atol=1e-4)
    fast.train()
    opt = torch.optim.SGD(fast.parameters(), lr=0.1)
    y = torch.randint(0, 10, (4,))
    losses = []
    for _ in range(8):  # one batch, learned by heart: the mixer's parameters take gradients
        loss = torch.nn.functional.cross_entropy(fast(x), y)
        opt.zero_grad()
        loss.backward()
        losses.append(loss.item())
        opt.step()
    assert losses[-1] < losses[0]
    mixers = [b.mixer for s in fast.stages for b in s.blocks]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for m in mixers for p in m.parameters())


def test_hire_blocks_still_hold_the_hire_module() -> None:
    model = hiremlp.create_model("smoke", num_classes=10)
    assert all(isinstance(b.mixer, hiremlp.HireModule) for s in model.stages for b in s.blocks)
    assert hiremlp.count_params(model) == 340694  # the params column of results/components-cpu/results.csv


def test_other_mixers_have_no_hire_plan_and_are_other_networks() -> None:
    for mixer in MIXERS[1:]:
        cfg = SMOKE.replace(mixer=mixer)
        assert inert_steps(cfg, 32) == [] and not any(p.pads for p in hiremlp.stage_plan(cfg, 32))
        assert not same_network(SMOKE, cfg, 32)
        assert same_network(cfg, cfg.replace(padding="zero", region_sizes="2,2,2,2"), 32)


def test_vip_is_tied_to_its_map_size() -> None:
    cfg = SMOKE.replace(mixer="vip")
    with pytest.raises(ValueError, match=r"stage 1 vip: map 40x40, but its height/width weights are sized for "
                                         r"32x32 \(vip_image_size=32\)"):
        hiremlp.check_input_size(cfg, 40)
    model = hiremlp.build_model(cfg)
    with pytest.raises(ValueError, match="stage 1 block 1: vip: map 40x40"):
        model(torch.randn(1, 3, 40, 40))
    hiremlp.check_input_size(cfg.replace(vip_image_size=40), 40)


# ------------------------------------------------------------------------------------------ receptive fields
CASES = [
    # (mixer, extra config, stage, map, pixel, {branch: pixels the paper says it reaches})
    ("as_mlp", {}, 2, (8, 8), (3, 4), {"w": _row(3, range(2, 7)), "h": _col(4, range(1, 6))}),
    ("as_mlp", {}, 2, (8, 8), (0, 7), {"w": _row(0, range(5, 8)), "h": _col(7, range(0, 3))}),  # zeros beyond
    ("as_mlp", {"shift_size": 3}, 1, (16, 16), (5, 9), {"w": _row(5, range(8, 11)), "h": _col(9, range(4, 7))}),
    ("as_mlp", {"shift_size": 7}, 1, (16, 16), (5, 9), {"w": _row(5, range(6, 13)), "h": _col(9, range(2, 9))}),
    ("vip", {}, 0, (32, 32), (5, 20), {"h": _col(20, range(32)), "w": _row(5, range(32)), "c": [(5, 20)]}),
    ("vip", {}, 2, (8, 8), (3, 4), {"h": _col(4, range(8)), "w": _row(3, range(8)), "c": [(3, 4)]}),
    ("cycle", {}, 2, (8, 8), (3, 4), {"sfc_h": _row(3, range(3, 6)), "sfc_w": _col(4, range(2, 5)),
                                      "c": [(3, 4)]}),
    ("cycle", {}, 3, (4, 4), (3, 0), {"sfc_h": _row(3, range(0, 2)), "sfc_w": _col(0, range(2, 4)),
                                      "c": [(3, 0)]}),
    ("dwconv", {}, 2, (8, 8), (3, 4), {"dw": [(i, j) for i in range(2, 5) for j in range(3, 6)]}),
    ("dwconv", {}, 2, (8, 8), (7, 0), {"dw": [(i, j) for i in range(6, 8) for j in range(0, 2)]}),
    ("channel_only", {}, 2, (8, 8), (3, 4), {"c": [(3, 4)]}),
]


@pytest.mark.parametrize("mixer, extra, stage, size, pixel, expected", CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_receptive_field_per_block_is_what_the_paper_states(mixer, extra, stage, size, pixel, expected) -> None:
    cfg = SMOKE.replace(mixer=mixer, **extra)
    for block in range(cfg.depths[stage]):
        masks = receptive_fields(module_from_config(cfg, stage, block), size, pixel, samples=8)
        assert set(masks) == set(expected)
        for branch, pixels in expected.items():
            assert np.array_equal(masks[branch], _mask(size, pixels)), (mixer, block, branch)


def test_group_norm_statistics_couple_every_pixel_unless_held_fixed() -> None:
    """Why the measurement holds them fixed: AS-MLP's GroupNorm(1) reaches the whole map through its statistics."""
    module = module_from_config(SMOKE.replace(mixer="as_mlp"), 2, 0).eval()
    x = torch.randn(2, 48, 8, 8, requires_grad=True)
    (grad,) = torch.autograd.grad(module.branch_outputs(x)["w"][:, :, 3, 4].sum(), x)
    assert (grad.abs().sum((0, 1)) > 0).all()
    assert receptive_fields(module, (8, 8), (3, 4), samples=2)["w"].sum() == 5


# ------------------------------------------------------------------------------------- per-channel directions
@pytest.mark.parametrize("channels, k", [(16, 5), (48, 5), (6, 5), (9, 3), (30, 7)])
def test_axial_shift_moves_group_g_as_the_released_kernel(channels: int, k: int) -> None:
    """Released kernel: group g = c // ceil(C / k) at output position i reads input i + (k // 2 - g), else 0."""
    x = torch.randn(2, channels, 7, 9)
    size = -(-channels // k)
    for dim in (2, 3):
        out = axial_shift(x, k, dim)
        want = torch.zeros_like(x)
        n = x.shape[dim]
        for c in range(channels):
            s = k // 2 - c // size
            for i in range(n):
                if 0 <= i + s < n:
                    want.select(1, c).select(dim - 1, i).copy_(x.select(1, c).select(dim - 1, i + s))
        assert torch.equal(out, want), (channels, k, dim)


def test_cycle_offsets_are_the_released_ones_and_the_shift_reads_them() -> None:
    assert cycle_offsets(7, 3) == [0, 1, -1, 0, 1, -1, 0]  # released gen_offset: (c + 1) % 3 - 1
    assert cycle_offsets(6, 5) == [0, 1, 2, -2, -1, 0]
    x = torch.randn(2, 7, 5, 6)
    for dim in (2, 3):
        out = cycle_shift(x, 3, dim)
        n = x.shape[dim]
        for c, s in enumerate(cycle_offsets(7, 3)):
            for i in range(n):
                got = out.select(1, c).select(dim - 1, i)
                want = x.select(1, c).select(dim - 1, i + s) if 0 <= i + s < n else torch.zeros_like(got)
                assert torch.equal(got, want), (dim, c, i)


def test_vip_segments_are_the_released_ones_where_the_map_side_divides_the_channels() -> None:
    assert segment_channels(64, 16) == 4 and segment_channels(48, 8) == 6  # C // H: the released C x C weights
    assert segment_channels(16, 32) == 1 and segment_channels(320, 14) == 20  # no released form: largest divisor
    module = module_from_config(SMOKE.replace(mixer="vip"), 2, 0).eval()  # 48 channels, 8x8: segments of 6
    assert module.mlp_h.weight.shape == (48, 48) and module.mlp_w.weight.shape == (48, 48)
    x = torch.randn(1, 48, 8, 8, requires_grad=True)
    out = module.branch_outputs(x)
    for branch in ("h", "w"):  # output channel c reaches only the channels of its own segment
        (grad,) = torch.autograd.grad(out[branch][0, 13, 3, 4], x, retain_graph=True)
        assert torch.nonzero(grad.abs().sum((0, 2, 3))).flatten().tolist() == list(range(12, 18))


# ------------------------------------------------------------------------------------------ the smoke sweep
@pytest.mark.slow
def test_mixers_smoke_sweep_trains_every_row_on_real_cifar(tmp_path) -> None:
    """`python sweeps/run.py --study mixers --protocol smoke` (tiny subset, one seed): every mixer's row trains,
    records its own model, and the report has the accuracy-vs-MACs figure."""
    import csv
    import subprocess
    import sys

    from conftest import REPO, real_cifar_dir

    data = real_cifar_dir()
    if data is None:
        pytest.skip("real CIFAR-10 not found: set HIREMLP_DATA or provide ../shared/data")
    cmd = [sys.executable, str(REPO / "sweeps" / "run.py"), "--study", "mixers", "--protocol", "smoke",
           "--train-subset", "64", "--eval-subset", "64", "--batch-size", "32", "--epochs", "1", "--seeds", "1",
           "--data-dir", str(data), "--runs-dir", str(tmp_path)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (folder,) = tmp_path.glob("mixers-smoke*")
    with open(folder / "results.csv") as fh:
        records = list(csv.DictReader(fh))
    assert [r["row"] for r in records] == list(MIXERS) and {r["state"] for r in records} == {"COMPLETE"}
    for r in records:
        assert (r["cfg.mixer"] or "hire") == r["row"]  # a Hire row records no mixer fields (`spec`)
        model = hiremlp.build_model(SMOKE.replace(mixer=r["row"]))
        assert int(r["params"]) == hiremlp.count_params(model) and int(r["macs"]) == hiremlp.count_macs(model, 32)
        assert float(r["images_per_s"]) > 0 and 0 <= float(r["test_acc"]) <= 100
    report = (folder / "report" / "report.md").read_text()
    assert "accuracy_vs_macs.png" in report and (folder / "report" / "accuracy_vs_macs.png").stat().st_size > 0
    assert "| as_mlp |" in (folder / "report" / "table.md").read_text()
