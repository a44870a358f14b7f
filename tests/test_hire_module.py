"""The switches of the Hire Module are honest: each test shows, by gradients or by values, what a switch does."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from hiremlp import HireModule
from hiremlp.cross_region import CrossRegionShuffle, crop_end, pad_amount, shuffle_order
from hiremlp.inner_region import InnerRegionMLP


def _module(dim: int = 16, **kwargs) -> HireModule:
    torch.manual_seed(0)
    return HireModule(dim, **kwargs).eval()


def reached(module: HireModule, branch: str, shape: tuple[int, int], pixel: tuple[int, int]) -> set[tuple[int, int]]:
    """Input pixels that one output pixel of ``branch`` depends on, by autograd (BN in eval mode)."""
    x = torch.randn(1, module.proj.in_channels, *shape, dtype=torch.float64, requires_grad=True)
    module = module.double()
    out = module.branch_outputs(x)[branch]
    out[0, :, pixel[0], pixel[1]].sum().backward()
    grad = x.grad.abs().sum(1)[0]
    return {(int(r), int(c)) for r, c in torch.nonzero(grad > 0)}


def expected_rows(row: int, n: int, region: int, step: int, mode: str = "circular") -> set[int]:
    """Rows of the original map that output row ``row`` mixes, written out from the released code's definition."""
    padded = n + pad_amount(n, region)
    shifted = (row + step) % n  # the row's position after roll(+step)
    start = shifted // region * region
    rows = set()
    for pos in range(start, start + region):
        if pos < n:
            src = pos
        elif mode == "circular":
            src = pos - n
        elif mode == "replicate":
            src = n - 1
        elif mode == "reflect":
            src = 2 * (n - 1) - pos
        else:
            continue  # zero padding brings in no input pixel
        assert pos < padded
        rows.add((src - step) % n)
    return rows


@pytest.mark.parametrize("step", [0, 1, 2])
@pytest.mark.parametrize("mode", ["zero", "circular", "replicate", "reflect"])
def test_height_branch_mixes_its_region_of_adjacent_rows_in_the_same_column(step: int, mode: str) -> None:
    m = _module(region_size=(3, 2), shift=(step, step), padding=mode)
    for row in range(7):
        got = reached(m, "h", (7, 5), (row, 2))
        assert got == {(r, 2) for r in expected_rows(row, 7, 3, step, mode)}, (row, got)


@pytest.mark.parametrize("step", [0, 1])
@pytest.mark.parametrize("mode", ["zero", "circular", "replicate", "reflect"])
def test_width_branch_mixes_its_region_of_adjacent_columns_in_the_same_row(step: int, mode: str) -> None:
    m = _module(region_size=(3, 4), shift=(step, step), padding=mode)
    for col in range(6):
        got = reached(m, "w", (5, 6), (1, col))
        assert got == {(1, c) for c in expected_rows(col, 6, 4, step, mode)}, (col, got)


def test_regions_are_contiguous_rows_not_strided() -> None:
    """The unofficial code grouped rows {0, 2, 4}, {1, 3, 5}; the released code groups {0, 1, 2}, {3, 4, 5}."""
    m = _module(region_size=3)
    assert reached(m, "h", (6, 6), (0, 0)) == {(0, 0), (1, 0), (2, 0)}
    assert reached(m, "h", (6, 6), (4, 0)) == {(3, 0), (4, 0), (5, 0)}


def test_shift_moves_the_region_and_is_undone_on_the_same_axis() -> None:
    """With a shift of 1, output row 0 mixes rows {5, 0, 1}: the region moved, the output did not."""
    m = _module(region_size=3, shift=1)
    assert reached(m, "h", (6, 6), (0, 3)) == {(5, 3), (0, 3), (1, 3)}
    assert reached(m, "w", (6, 6), (3, 0)) == {(3, 5), (3, 0), (3, 1)}


def test_shift_of_a_per_pixel_branch_is_exactly_undone() -> None:
    """Region 1 mixes nothing spatially, so shift + unshift must return exactly the unshifted result."""
    plain = _module(region_size=1, shift=0)
    shifted = _module(region_size=1, shift=3)
    shifted.load_state_dict(plain.state_dict())
    x = torch.randn(2, 16, 7, 5)
    for branch in "hw":
        assert torch.equal(plain.branch_outputs(x)[branch], shifted.branch_outputs(x)[branch])


def test_channel_branch_sees_only_its_own_pixel() -> None:
    m = _module(region_size=3, shift=2)
    assert reached(m, "c", (6, 7), (4, 5)) == {(4, 5)}


def test_inner_region_off_makes_spatial_branches_per_pixel() -> None:
    m = _module(region_size=3, shift=1, inner_region=False)
    assert reached(m, "h", (6, 6), (2, 2)) == {(2, 2)}
    assert reached(m, "w", (6, 6), (2, 2)) == {(2, 2)}


def test_shuffle_mixes_rows_of_different_regions_and_is_undone() -> None:
    m = _module(region_size=3, shift=1, cross_region="shuffle")
    # order [0, 3, 1, 4, 2, 5]: the first new region holds old rows 0, 3, 1 (old regions 0 and 1).
    assert shuffle_order(6, 3).tolist() == [0, 3, 1, 4, 2, 5]
    for row, rows in {0: {0, 1, 3}, 1: {0, 1, 3}, 3: {0, 1, 3}, 2: {2, 4, 5}, 4: {2, 4, 5}, 5: {2, 4, 5}}.items():
        assert reached(m, "h", (6, 4), (row, 1)) == {(r, 1) for r in rows}
    spans = {r // 3 for r, _ in reached(m, "h", (6, 4), (0, 1))}
    assert spans == {0, 1}


def test_shuffle_of_a_per_pixel_branch_is_exactly_undone() -> None:
    plain = _module(region_size=1)
    shuffled = HireModule(16, region_size=(4, 4), shift=1, cross_region="shuffle", inner_region=False).eval()
    shuffled.load_state_dict(plain.state_dict())
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(plain(x), shuffled(x))


def test_cross_region_none_ignores_the_step() -> None:
    a = _module(region_size=3, shift=0)
    b = _module(region_size=3, shift=2, cross_region="none")
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 16, 7, 7)
    assert torch.equal(a(x), b(x))


def _capture_padded(m: HireModule, x: torch.Tensor) -> dict[str, torch.Tensor]:
    seen: dict[str, torch.Tensor] = {}
    for name in "hw":
        branch = getattr(m, name)
        branch.mlp.register_forward_hook(lambda mod, args, out, name=name: seen.__setitem__(name, args[0].detach()))
    m(x)
    return seen


@pytest.mark.parametrize("mode", ["zero", "reflect", "replicate", "circular"])
def test_padding_amount_axis_and_values(mode: str) -> None:
    m = _module(region_size=(3, 4), shift=1, padding=mode)
    x = torch.randn(1, 16, 7, 9)
    seen = _capture_padded(m, x)
    # h-branch: 7 rows -> 9 (2 added at the bottom), width untouched; w-branch: 9 cols -> 12, height untouched.
    assert seen["h"].shape == (1, 16, 9, 9)
    assert seen["w"].shape == (1, 16, 7, 12)
    shifted_h = torch.roll(x, 1, 2)
    shifted_w = torch.roll(x, 1, 3)
    assert torch.equal(seen["h"][:, :, :7], shifted_h)
    assert torch.equal(seen["w"][..., :9], shifted_w)
    expected_h = {
        "zero": torch.zeros(1, 16, 2, 9),
        "reflect": shifted_h[:, :, [5, 4]],
        "replicate": shifted_h[:, :, [6, 6]],
        "circular": shifted_h[:, :, [0, 1]],
    }[mode]
    expected_w = {
        "zero": torch.zeros(1, 16, 7, 3),
        "reflect": shifted_w[..., [7, 6, 5]],
        "replicate": shifted_w[..., [8, 8, 8]],
        "circular": shifted_w[..., [0, 1, 2]],
    }[mode]
    assert torch.equal(seen["h"][:, :, 7:], expected_h)
    assert torch.equal(seen["w"][..., 9:], expected_w)
    assert m(x).shape == x.shape


def test_no_padding_when_the_map_divides() -> None:
    """The unofficial code padded a whole extra region (p - n % p) when n % p == 0."""
    m = _module(region_size=(4, 2))
    seen = _capture_padded(m, torch.randn(1, 16, 8, 6))
    assert seen["h"].shape[-2:] == (8, 6)
    assert seen["w"].shape[-2:] == (8, 6)


def test_reflect_that_cannot_be_honoured_is_a_clear_error() -> None:
    m = HireModule(16, region_size=5, padding="reflect", where="stage 4 block 1: ").eval()
    with pytest.raises(ValueError) as err:
        m(torch.randn(1, 16, 2, 2))
    message = str(err.value)
    assert "\n" not in message
    for part in ("stage 4", "2", "region 5", "reflect"):
        assert part in message


def released_forward(m: HireModule, x: torch.Tensor) -> torch.Tensor:
    """A literal transcription of the released module's forward, reading ``m``'s weights (test oracle)."""
    b, c, H, W = x.shape
    ph, pw = m.region_size
    s = m.shift_step[0]
    mode = {"zero": "constant", "circular": "circular", "replicate": "replicate", "reflect": "reflect"}
    h, w = x.clone(), x.clone()
    if s > 0:
        h, w = torch.roll(h, s, -2), torch.roll(w, s, -1)
    pad_h, pad_w = (ph - H % ph) % ph, (pw - W % pw) % pw
    if pad_h:
        h = F.pad(h, (0, 0, 0, pad_h), mode[m.h.padding])
    if pad_w:
        w = F.pad(w, (0, pad_w, 0, 0), mode[m.w.padding])
    Hp, Wp = H + pad_h, W + pad_w

    def mlp(t: torch.Tensor, branch) -> torch.Tensor:
        p = branch.region
        w1 = branch.mlp.reduce.reshape(c // 2, c * p, 1, 1)
        perm = (1, 2, 0, 3) if branch.axis == "h" else (1, 3, 0, 2)
        w2 = branch.mlp.expand.permute(*perm).reshape(c * p, c // 2, 1, 1)
        t = F.conv2d(t, w1)
        t = F.relu(F.batch_norm(t, branch.mlp.norm.running_mean, branch.mlp.norm.running_var,
                                branch.mlp.norm.weight, branch.mlp.norm.bias, False, 0.0, branch.mlp.norm.eps))
        return F.conv2d(t, w2, branch.mlp.expand_bias.reshape(-1))

    h = h.reshape(b, c, Hp // ph, ph, W).permute(0, 1, 3, 2, 4).reshape(b, c * ph, Hp // ph, W)
    h = mlp(h, m.h).reshape(b, c, ph, Hp // ph, W).permute(0, 1, 3, 2, 4).reshape(b, c, Hp, W)
    w = w.reshape(b, c, H, Wp // pw, pw).permute(0, 1, 4, 2, 3).reshape(b, c * pw, H, Wp // pw)
    w = mlp(w, m.w).reshape(b, c, pw, H, Wp // pw).permute(0, 1, 3, 4, 2).reshape(b, c, H, Wp)
    h, w = h.narrow(2, 0, H), w.narrow(3, 0, W)
    cc = m.c(x)
    if s > 0:
        h, w = torch.roll(h, -s, -2), torch.roll(w, -s, -1)
    a = (h + w + cc).mean((2, 3), keepdim=True)
    a = m.reweight.fc2(F.gelu(m.reweight.fc1(a))).reshape(b, c, 3).permute(2, 0, 1).softmax(0)
    out = h * a[0][..., None, None] + w * a[1][..., None, None] + cc * a[2][..., None, None]
    return m.proj(out)


@pytest.mark.parametrize("mode", ["zero", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("step", [0, 2])
def test_module_matches_a_transcription_of_the_released_code(mode: str, step: int) -> None:
    m = _module(region_size=(3, 2), shift=step, padding=mode)
    for bn in (m.h.mlp.norm, m.w.mlp.norm):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 16, 7, 9)
    torch.testing.assert_close(m(x), released_forward(m, x), rtol=1e-5, atol=1e-6)


SWITCHES = list(itertools.product(
    ["zero", "reflect", "replicate", "circular"], ["shift", "shuffle", "none"], [True, False],
    [("h", "w", "c"), ("h",), ("w", "c")], ["reweight", "sum"],
))


@pytest.mark.parametrize("layout", ["nchw", "channels_last"])
@pytest.mark.parametrize("padding,cross,inner,branches,fusion", SWITCHES)
def test_fast_path_equals_reference_path(padding, cross, inner, branches, fusion, layout, monkeypatch) -> None:
    """Both fast paths (strided convs on NCHW, matmuls on channels-last) against the released reshape path."""
    kwargs = dict(region_size=(3, 2), shift=(2, 1), padding=padding, cross_region=cross, inner_region=inner,
                  branches=branches, fusion=fusion)
    fast = _module(**kwargs).train().double()
    ref = HireModule(16, impl="reference", **kwargs).train().double()
    ref.load_state_dict(fast.state_dict())
    took = []
    matmul_path = InnerRegionMLP.forward_channels_last
    monkeypatch.setattr(InnerRegionMLP, "forward_channels_last",
                        lambda self, x: took.append(self.axis) or matmul_path(self, x))
    x = torch.randn(3, 16, 7, 9, dtype=torch.float64)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    xf, xr = x.clone(memory_format=fmt).requires_grad_(), x.clone().requires_grad_()
    out_f, out_r = fast(xf), ref(xr)
    spatial = sorted(b for b in branches if b != "c")
    assert sorted(took) == (spatial if layout == "channels_last" else []), "the layout chose the wrong path"
    torch.testing.assert_close(out_f, out_r, rtol=1e-10, atol=1e-10)
    out_f.square().sum().backward()
    out_r.square().sum().backward()
    torch.testing.assert_close(xf.grad, xr.grad, rtol=1e-10, atol=1e-10)
    for (name, pf), pr in zip(fast.named_parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(pf.grad, pr.grad, rtol=1e-10, atol=1e-10, msg=name)


def test_channels_last_input_gives_the_same_output() -> None:
    m = _module(region_size=(3, 2), shift=1)
    x = torch.randn(2, 16, 7, 9)
    torch.testing.assert_close(m(x), m(x.contiguous(memory_format=torch.channels_last)))


def test_disabled_branch_owns_no_parameters() -> None:
    full = _module(region_size=3)
    no_w = _module(region_size=3, branches=("h", "c"))
    only_c = _module(region_size=3, branches=("c",))
    assert no_w.w is None and not any(n.startswith("w.") for n, _ in no_w.named_parameters())
    assert only_c.h is None and only_c.w is None and only_c.reweight is None
    w_params = sum(p.numel() for p in full.w.parameters())
    # the reweight MLP's last conv shrinks from 3C to 2C outputs: C/4 * C weights + C biases
    assert sum(p.numel() for p in full.parameters()) - sum(p.numel() for p in no_w.parameters()) == (
        w_params + 4 * 16 + 16)


def test_branch_sizes_follow_the_released_bottleneck() -> None:
    m = _module(dim=32, region_size=(4, 3))
    # conv1x1 C*p -> C/2 without bias, BN(C/2), conv1x1 C/2 -> C*p with bias
    assert m.h.mlp.reduce.numel() == 32 * 4 * 16 and m.h.mlp.norm.num_features == 16
    assert m.h.mlp.expand.numel() + m.h.mlp.expand_bias.numel() == 16 * 32 * 4 + 32 * 4
    assert m.w.mlp.reduce.numel() == 32 * 3 * 16
    assert m.reweight.fc1.out_channels == 8 and m.reweight.fc2.out_channels == 96


def test_sum_fusion_is_a_plain_sum_before_the_projection() -> None:
    m = _module(region_size=3, shift=1, fusion="sum")
    x = torch.randn(2, 16, 6, 6)
    outs = m.branch_outputs(x)
    torch.testing.assert_close(m(x), m.proj(outs["h"] + outs["w"] + outs["c"]))


def test_reweight_is_a_per_channel_softmax_over_branches() -> None:
    m = _module(region_size=3, shift=1)
    x = torch.randn(2, 16, 6, 6)
    outs = list(m.branch_outputs(x).values())
    fused = m.reweight(outs)
    # if all branches are equal, any convex combination returns that branch
    torch.testing.assert_close(m.reweight([outs[0]] * 3), outs[0])
    assert not torch.allclose(fused, sum(outs) / 3)


@pytest.mark.parametrize("channels_last", [False, True])
def test_weighted_sum_equals_autograds_mul_addcmul_chain_bit_for_bit(channels_last) -> None:
    """The fusion's own backward must not change a CPU float32 bit: committed results depend on it."""
    from hiremlp.hire_module import _WeightedSum

    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    outs = [torch.randn(4, 16, 8, 8).contiguous(memory_format=fmt).requires_grad_() for _ in range(3)]
    weights = torch.randn(3, 4, 16, 1, 1).softmax(0).requires_grad_()
    grad = torch.randn(4, 16, 8, 8).contiguous(memory_format=fmt)
    chain = outs[0] * weights[0]
    for k in (1, 2):
        chain = chain.addcmul(outs[k], weights[k])
    expected = torch.autograd.grad(chain, [weights, *outs], grad)
    fused = _WeightedSum.apply(weights, *outs)
    got = torch.autograd.grad(fused, [weights, *outs], grad)
    assert torch.equal(fused, chain) and fused.stride() == chain.stride()
    for a, b in zip(got, expected, strict=True):
        assert torch.equal(a, b)


def test_split_attention_compiles_to_the_eager_values_and_gradients() -> None:
    """Under torch.compile the fusion is autograd's chain (inductor crashed on the custom backward with AVX-512)."""
    torch.manual_seed(0)
    m = _module(region_size=3, shift=1)
    outs = [torch.randn(2, 16, 6, 6).contiguous(memory_format=torch.channels_last).requires_grad_() for _ in range(3)]
    eager = m.reweight(outs)
    compiled = torch.compile(m.reweight, fullgraph=True)(outs)
    torch.testing.assert_close(compiled, eager)
    for a, b in zip(torch.autograd.grad(compiled.sum(), outs), torch.autograd.grad(eager.sum(), outs), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kwargs,field", [
    (dict(padding="mirror"), "padding"),
    (dict(cross_region="twist"), "cross_region"),
    (dict(fusion="max"), "fusion"),
    (dict(branches=()), "branches"),
    (dict(branches=("h", "x")), "branches"),
    (dict(region_size=0), "region_size"),
    (dict(region_size=(2, 2, 2)), "region_size"),
    (dict(shift=-1), "shift"),
    (dict(impl="cuda"), "impl"),
])
def test_bad_module_arguments_are_one_line_errors(kwargs, field) -> None:
    with pytest.raises(ValueError) as err:
        HireModule(16, **kwargs)
    assert field in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("padding", ["zero", "reflect", "replicate", "circular"])
@pytest.mark.parametrize("cross", ["shift", "shuffle", "none"])
def test_channels_last_holds_through_padded_branches_forward_and_backward(padding, cross, monkeypatch) -> None:
    """A branch that pads must not drop to NCHW: F.pad's circular mode, index_select and autograd's slice
    backward all return NCHW, which sends the rest of the branch (and its backward) down copying paths."""
    layouts = []
    matmul_path = InnerRegionMLP.forward_channels_last

    def spy(self, x):
        out = matmul_path(self, x)
        out.register_hook(lambda g: layouts.append(g.is_contiguous(memory_format=torch.channels_last)))
        return out

    monkeypatch.setattr(InnerRegionMLP, "forward_channels_last", spy)
    m = _module(region_size=(3, 2), shift=(2, 1), padding=padding, cross_region=cross).train()
    x = torch.randn(2, 16, 7, 9).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = m(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    out.backward(torch.randn_like(out))
    assert layouts == [True, True], "a branch's gradient arrived in NCHW"
    assert x.grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("dim", [2, 3])
def test_hand_written_backwards_pass_gradcheck(dim: int, layout: torch.memory_format) -> None:
    """The shuffle's and the crop's own backward passes against numerical gradients."""
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64).contiguous(memory_format=layout).requires_grad_()
    shuffle = CrossRegionShuffle(3, dim)
    assert torch.autograd.gradcheck(shuffle.apply, (x,))
    assert torch.autograd.gradcheck(shuffle.undo, (x,))
    assert torch.autograd.gradcheck(lambda t: crop_end(t, dim, 4), (x,))
    assert torch.equal(shuffle.undo(shuffle.apply(x)), x)
    assert torch.equal(crop_end(x, dim, 4), x.narrow(dim, 0, 4))
