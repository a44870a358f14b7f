"""The whole model: the released architecture and sizes, the schedule, the config's validation, the presets."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hiremlp
from hiremlp import HireMLPConfig, count_macs, count_params, create_model, stage_plan
from hiremlp.matmul_conv import PatchConv, PointwiseConv
from hiremlp.model import LayerNorm2d

# Released models with 1000 classes at 224 px (reference §2: counted from the official code).
RELEASED = {"tiny": (18.04e6, 2.14e9), "small": (33.11e6, 4.23e9), "base": (58.23e6, 8.11e9),
            "large": (95.72e6, 13.42e9)}


@pytest.mark.parametrize("name", list(RELEASED))
def test_presets_match_the_released_params_and_macs(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name)
    params, macs = RELEASED[name]
    assert count_params(model) == pytest.approx(params, rel=0.01)
    assert count_macs(model, 224) == pytest.approx(macs, rel=0.01)


def test_region_size_rows_of_table_3_match_the_released_code_counts() -> None:
    """Reference §3 gives the released code's params for Small with other region sizes; ours must agree."""
    for regions, params in [("2,2,2,2", 30.88e6), ("3,3,3,3", 34.66e6), ("5,4,3,3", 34.85e6)]:
        with torch.device("meta"):
            model = create_model("small", region_sizes=regions)
        assert count_params(model) == pytest.approx(params, rel=0.002), regions


def test_official_and_paper_shift_schedules() -> None:
    small = hiremlp.PRESETS["small"]
    assert [small.block_steps(i) for i in range(4)] == [
        (0, 2, 0), (0, 2, 0, 2), (0, 1, 2, 0, 1, 2, 0, 1, 2, 0), (0, 1, 0)]
    paper = small.replace(shift_schedule="paper")
    assert paper.block_steps(2) == (0, 1) * 5
    assert small.replace(cross_region="none").block_steps(0) == (0, 0, 0)
    model = create_model("small")
    steps = [blk.mixer.shift_step for blk in model.stages[2].blocks]
    assert steps == [(s, s) for s in (0, 1, 2, 0, 1, 2, 0, 1, 2, 0)]


def test_released_architecture_uses_batchnorm_and_relu_in_stem_and_downsampling() -> None:
    model = create_model("tiny")
    assert [type(m) for m in model.stem] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    conv = model.stem[0]
    assert (conv.kernel_size, conv.stride, conv.padding) == ((7, 7), (4, 4), (2, 2))
    down = model.stages[1].downsample
    assert [type(m) for m in down] == [PatchConv, nn.BatchNorm2d, nn.ReLU]  # an nn.Conv2d (see its test)
    assert (down[0].kernel_size, down[0].stride, down[0].padding) == ((3, 3), (2, 2), (1, 1))
    block = model.stages[0].blocks[0]
    assert isinstance(block.norm1, nn.BatchNorm2d) and isinstance(model.norm, nn.BatchNorm2d)
    assert block.mlp.fc1.out_channels == 4 * 64 and isinstance(block.mlp.act, nn.GELU)
    layer = create_model("tiny", norm="layer")
    assert isinstance(layer.stages[0].blocks[0].norm1, LayerNorm2d) and isinstance(layer.norm, LayerNorm2d)


def test_drop_path_rises_linearly_over_all_blocks() -> None:
    model = create_model("tiny", drop_path_rate=0.1)
    rates = [blk.drop_path.rate for stage in model.stages for blk in stage.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.1)
    assert rates == pytest.approx([0.1 * k / 9 for k in range(10)])


def test_init_is_truncated_normal_with_std_002() -> None:
    """As released (timm's trunc_normal_(std=.02), whose bounds are +-2 absolute), biases zero."""
    model = create_model("smoke")
    w = model.stages[3].blocks[0].mlp.fc1.weight
    assert w.std().item() == pytest.approx(0.02, rel=0.1) and abs(w.mean().item()) < 0.002
    assert model.stages[0].blocks[0].mixer.h.mlp.reduce.std().item() == pytest.approx(0.02, rel=0.1)
    assert torch.count_nonzero(model.stages[3].blocks[0].mlp.fc1.bias) == 0


@pytest.mark.parametrize("overrides", [
    {}, {"branches": "h"}, {"branches": "w,c"}, {"fusion": "sum"}, {"norm": "layer"},
    {"cross_region": "shuffle"}, {"inner_region": False}, {"padding": "reflect"},
])
def test_every_parameter_receives_a_gradient(overrides: dict) -> None:
    torch.manual_seed(0)
    model = create_model("smoke", num_classes=10, **overrides)
    out = model(torch.randn(4, 3, 32, 32))
    nn.functional.cross_entropy(out, torch.arange(4)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name


def test_smoke_preset_exercises_every_switch() -> None:
    cfg = hiremlp.PRESETS["smoke"]
    assert all(any(s > 0 for s in cfg.block_steps(i)) for i in range(cfg.num_stages))
    assert sum(plan.pads for plan in stage_plan(cfg, 32)) >= 1


def test_cifar_presets_keep_32px_for_stage_1_and_pad_like_224px() -> None:
    """Maps 32/16/8/4: two or more regions per axis in every stage (as at 224 px), padding 0/2/1/0."""
    for name in ("cifar_tiny", "cifar_small", "smoke"):
        plans = stage_plan(hiremlp.PRESETS[name], 32)
        assert [p.map_size for p in plans] == [(32, 32), (16, 16), (8, 8), (4, 4)]
        assert [p.pad_rows for p in plans] == [0, 2, 1, 0]
        assert all(p.map_size[0] > p.region_size[0] for p in plans)
    for name in ("cifar_tiny_s2", "cifar_small_s2", "smoke_s2"):
        assert [p.map_size for p in stage_plan(hiremlp.PRESETS[name], 32)] == [(16, 16), (8, 8), (4, 4), (2, 2)]
    assert [p.pad_rows for p in stage_plan(hiremlp.PRESETS["tiny"], 224)] == [0, 2, 1, 1]


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("overrides", [{}, {"cross_region": "shuffle", "padding": "zero"},
                                       {"branches": "h,c", "fusion": "sum"}])
def test_fast_and_reference_models_agree(overrides: dict, layout: torch.memory_format) -> None:
    torch.manual_seed(0)
    fast = create_model("smoke", num_classes=10, **overrides).to(memory_format=layout)
    ref = create_model("smoke", num_classes=10, impl="reference", **overrides)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(fast(x.contiguous(memory_format=layout)), ref(x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("size", [1, 2, 4, 8, 9, 16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_pointwise_conv_is_the_released_1x1_conv(size: int, layout: torch.memory_format, monkeypatch) -> None:
    """Same outputs and gradients as nn.Conv2d; the matmul runs exactly on small channels-last maps."""
    torch.manual_seed(0)
    conv = nn.Conv2d(24, 40, 1)
    pw = PointwiseConv(24, 40, max_linear_rows=3 * 8 * 8)
    pw.load_state_dict(conv.state_dict())
    linear_calls = []
    real_linear = F.linear
    monkeypatch.setattr(F, "linear", lambda *a: linear_calls.append(1) or real_linear(*a))
    x = torch.randn(3, 24, size, size, dtype=torch.float64)
    out = pw.double()(x.clone(memory_format=layout))
    # a 1x1 map is channels-last whichever way it is stored
    takes_matmul = 3 * size * size <= pw.max_linear_rows and (layout == torch.channels_last or size == 1)
    assert bool(linear_calls) == takes_matmul
    torch.testing.assert_close(out, conv.double()(x))


def test_pointwise_conv_gradients_match_the_conv() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(24, 40, 1).double()
    pw = PointwiseConv(24, 40).double()
    pw.load_state_dict(conv.state_dict())
    x = torch.randn(3, 24, 4, 4, dtype=torch.float64)
    g = torch.randn(3, 40, 4, 4, dtype=torch.float64)
    xa = x.clone(memory_format=torch.channels_last).requires_grad_()
    xb = x.clone().requires_grad_()
    pw(xa).backward(g)
    conv(xb).backward(g)
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(pw.weight.grad, conv.weight.grad)
    torch.testing.assert_close(pw.bias.grad, conv.bias.grad)


@pytest.mark.parametrize("size", [3, 4, 5, 8])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_patch_conv_is_the_released_strided_conv(size: int, layout: torch.memory_format, monkeypatch) -> None:
    """Same outputs and gradients as nn.Conv2d(3x3, stride 2, pad 1); im2col only into maps of <= 4 pixels."""
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 10, 3, 2, 1).double()
    pc = PatchConv(6, 10, 3, 2, 1).double()
    pc.load_state_dict(conv.state_dict())
    linear_calls = []
    real_linear = F.linear
    monkeypatch.setattr(F, "linear", lambda *a: linear_calls.append(1) or real_linear(*a))
    x = torch.randn(3, 6, size, size, dtype=torch.float64)
    g = torch.randn(3, 10, (size + 1) // 2, (size + 1) // 2, dtype=torch.float64)
    xa, xb = x.clone(memory_format=layout).requires_grad_(), x.clone().requires_grad_()
    out, want = pc(xa), conv(xb)
    assert bool(linear_calls) == (layout == torch.channels_last and ((size + 1) // 2) ** 2 <= 4)
    torch.testing.assert_close(out, want)
    out.backward(g)
    want.backward(g)
    torch.testing.assert_close(xa.grad, xb.grad)
    torch.testing.assert_close(pc.weight.grad, conv.weight.grad)
    torch.testing.assert_close(pc.bias.grad, conv.bias.grad)


def test_reference_model_uses_the_released_layers_and_same_state_dict() -> None:
    fast = create_model("smoke", num_classes=10)
    ref = create_model("smoke", num_classes=10, impl="reference")
    assert {k: v.shape for k, v in fast.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    assert not any(isinstance(m, (PointwiseConv, PatchConv)) for m in ref.modules())
    assert sum(isinstance(m, PointwiseConv) for m in fast.modules()) == sum(
        isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in ref.modules())


def test_forward_is_features_then_head_and_any_size_runs() -> None:
    model = create_model("smoke", num_classes=10).eval()
    x = torch.randn(2, 3, 40, 28)
    feats = model.forward_features(x)
    assert feats.shape == (2, 64, 5, 4)
    assert torch.equal(model.forward_head(feats), model(x))
    assert model.forward_head(feats, pre_logits=True).shape == (2, 64)


def test_stage_plan_reports_sizes_that_cannot_be_honoured() -> None:
    cfg = hiremlp.get_config("smoke", padding="reflect", region_sizes="4,3,3,8")
    plans = stage_plan(cfg, 32)
    assert plans[3].map_size == (4, 4) and plans[3].reason and "reflect" in plans[3].reason
    with pytest.raises(ValueError, match="stage 4"):
        hiremlp.check_input_size(cfg, 32)
    with pytest.raises(ValueError, match="stage 4 block 1"):
        hiremlp.build_model(cfg).eval()(torch.randn(1, 3, 32, 32))


def test_flat_config_round_trip() -> None:
    cfg = hiremlp.get_config("cifar_tiny", region_sizes="4x2,3,3,2", branches="h,c", padding="zero")
    flat = cfg.to_flat()
    assert all(isinstance(v, (int, float, str, bool)) for v in flat.values())
    assert HireMLPConfig.from_flat(flat) == cfg
    assert cfg.region_sizes[0] == (4, 2)


@pytest.mark.parametrize("overrides,field", [
    ({"padding": "mirror"}, "padding"),
    ({"branches": ""}, "branches"),
    ({"branches": "h,h"}, "branches"),
    ({"region_sizes": "4,3,0,2"}, "region_sizes"),
    ({"region_sizes": "4,3,3"}, "region_sizes"),
    ({"shift_steps": (1, 1)}, "shift_steps"),
    ({"shift_steps": "1,1,-1,1"}, "shift_steps"),
    ({"cross_region": "swap"}, "cross_region"),
    ({"shift_schedule": "always"}, "shift_schedule"),
    ({"fusion": "concat"}, "fusion"),
    ({"norm": "group"}, "norm"),
    ({"inner_region": "maybe"}, "inner_region"),
    ({"embed_dims": "64,128"}, "embed_dims"),
    ({"drop_path_rate": 2}, "drop_path_rate"),
    ({"colour": "red"}, "colour"),
])
def test_bad_config_values_are_one_line_errors_naming_field_and_value(overrides: dict, field: str) -> None:
    with pytest.raises(ValueError) as err:
        create_model("smoke", **overrides)
    message = str(err.value)
    assert field in message and "\n" not in message
    assert str(next(iter(overrides.values()))) in message or field == "colour"


def test_unknown_preset_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="preset='huge'.*tiny, small"):
        create_model("huge")


def test_module_cli_prints_the_preset_table() -> None:
    out = subprocess.run([sys.executable, "-m", "hiremlp"], capture_output=True, text=True, check=True).stdout
    assert "tiny" in out and "18.04" in out and "2.144" in out and "32x32 16x16 8x8 4x4" in out
    assert re.search(r"^smoke_s2 .* 4/4 3/3 2/2 1/1 +stage 4$", out, re.M)  # one region per axis: inert shifts
    assert re.search(r"^smoke .* 8/8 6/6 3/3 2/2 +-$", out, re.M)


def test_macs_are_the_same_on_the_matmul_path() -> None:
    """The channels-last fast path does the same multiply-accumulates as the convolutions it replaces."""
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model("cifar_tiny", num_classes=10).eval()
    x = torch.zeros(2, 3, 32, 32)
    counts = []
    for layout in (torch.contiguous_format, torch.channels_last):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x.contiguous(memory_format=layout))
        counts.append(counter.get_total_flops())
    assert counts[0] == counts[1] == 4 * count_macs(model, 32)
