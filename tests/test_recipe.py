"""The training recipe: its values, its validation, its command-line options, and every knob reaching training.

Each knob has a test that fails if the field were ignored. Data-side knobs are checked on the batches the
training loader yields (synthetic images; no dataset needed), loss-side ones on ``training_step``, schedule and
optimiser ones on the very optimiser and scheduler ``configure_optimizers`` hands Lightning, and one short real
run checks that the lr a run logs ends at ``min_lr``.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import hiremlp
from ablations import get_study
from lightning_modules.augment import RANDAUG_OPS, RandAugment, mix_batch, random_erase, repeated_order
from lightning_modules.gpu_loader import GpuBatches
from lightning_modules.recipe import PAPER, RECIPES, Recipe, describe, recipe_fields
from sweeps import grid
from sweeps.protocols import PROTOCOLS, get_protocol
from tests.sweep_fakes import FAKE

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------------------------- values

def test_paper_recipe_is_the_released_script() -> None:
    """Issue 12 item 3, value by value (train.py of ggjy/Hire-Wave-MLP.pytorch and its README commands)."""
    expected = dict(epochs=300, optimizer="adamw", lr=5e-4, lr_batch=512, lr_scaling="linear", weight_decay=0.05,
                    warmup_epochs=20.0, warmup_lr=1e-6, min_lr=1e-5, cooldown_epochs=10, label_smoothing=0.1,
                    mixup=0.8, cutmix=1.0, mix_prob=1.0, mix_switch_prob=0.5, randaug_ops=2,
                    randaug_magnitude=9.0, randaug_magnitude_std=0.5, erase_prob=0.25, erase_mode="pixel",
                    repeated_aug=3, ema=0.0)
    for name in ("paper", "paper-tiny", "paper-base"):
        got = dataclasses.asdict(RECIPES[name])
        assert {k: got[k] for k in expected} == expected, name
    assert (PAPER.batch_size, PAPER.drop_path, PAPER.peak_lr) == (1024, 0.1, pytest.approx(1e-3))  # paper 4.1
    tiny, base = RECIPES["paper-tiny"], RECIPES["paper-base"]
    assert (tiny.batch_size, tiny.drop_path, tiny.peak_lr) == (2048, 0.0, pytest.approx(2e-3))  # README Tiny
    assert (base.batch_size, base.drop_path, base.peak_lr) == (1024, 0.2, pytest.approx(1e-3))  # README Base
    assert PAPER.total_epochs == 310


def test_schedule_shape() -> None:
    r = PAPER
    assert r.lr_at(0) == pytest.approx(1e-6)
    assert r.lr_at(10) == pytest.approx(1e-6 + (1e-3 - 1e-6) / 2)
    assert r.lr_at(20) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * 20 / 300)))
    assert r.lr_at(299.999) == pytest.approx(1e-5, rel=1e-3)
    assert r.lr_at(300) == r.lr_at(309.9) == 1e-5
    assert Recipe(lr=1e-3, lr_batch=256, batch_size=1024, lr_scaling="sqrt").peak_lr == pytest.approx(2e-3)
    assert Recipe(lr=1e-3, lr_batch=256, batch_size=1024, lr_scaling="none").peak_lr == pytest.approx(1e-3)


# ----------------------------------------------------------------------------------------------- validation

BAD = {"epochs": 0, "batch_size": -1, "optimizer": "adam", "lr": 0.0, "lr_batch": 0, "lr_scaling": "cubic",
       "weight_decay": -0.1, "warmup_epochs": -1.0, "warmup_lr": -1.0, "min_lr": float("nan"),
       "cooldown_epochs": -1, "label_smoothing": 1.0, "drop_path": 1.5, "mixup": -1.0, "cutmix": -0.5,
       "mix_prob": 1.5, "mix_switch_prob": -0.1, "randaug_ops": 16, "randaug_magnitude": 11.0,
       "randaug_magnitude_std": -1.0, "erase_prob": 2.0, "erase_mode": "noise", "repeated_aug": 0, "ema": 1.0}


def test_every_field_has_a_bad_value_case() -> None:
    assert set(BAD) == set(recipe_fields())


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_value_is_a_one_line_error_naming_field_value_and_rule(name: str) -> None:
    with pytest.raises(ValueError) as e:
        Recipe(**{name: BAD[name]})
    msg = str(e.value)
    assert msg.startswith(f"{name}={BAD[name]!r} is not allowed: ") and "\n" not in msg


def test_warmup_longer_than_the_run_is_an_error_naming_both_numbers(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError, match=r"warmup_epochs=5 is longer than the run: epochs=2"):
        Recipe(epochs=2, warmup_epochs=5)
    from lightning_modules.train import main

    assert main(["--preset", "smoke", "--epochs", "2"]) == 2  # the paper recipe warms up for 20 epochs
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warmup_epochs=20 is longer than the run: epochs=2" in err
    from sweeps.run import main as sweep

    assert sweep(["--study", "padding", "--protocol", "cifar10", "--epochs", "4", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "warmup_epochs=5 is longer than the run: epochs=4" in err


# ----------------------------------------------------------------------------------------------- command lines

def _cli_value(name: str) -> tuple[str, object]:
    """A legal value for every field that differs from the paper recipe's, as text and as parsed."""
    value = {"optimizer": "sgd", "lr_scaling": "sqrt", "erase_mode": "const", "drop_path": 0.3,
             "warmup_epochs": 3.0, "epochs": 50, "repeated_aug": 2, "randaug_ops": 1, "ema": 0.99,
             "mix_prob": 0.5, "mix_switch_prob": 0.25, "label_smoothing": 0.2}.get(name)
    if value is None:
        default = getattr(PAPER, name)
        value = default + 1 if isinstance(default, int) else default / 2
    return str(value), value


def test_both_command_lines_override_every_recipe_field() -> None:
    from lightning_modules.train import config_from_args
    from sweeps.run import parse_args, resolve

    for name in recipe_fields():
        text, value = _cli_value(name)
        flag = "--" + name.replace("_", "-")
        cfg = config_from_args(["--recipe", "paper", flag, text])
        assert getattr(cfg.recipe, name) == value, name
        assert cfg.recipe.replace(**{name: getattr(PAPER, name)}) == PAPER, name  # nothing else moved
        _, protocol, *_ = resolve(parse_args(["--study", "padding", "--protocol", "cifar10", flag, text]))
        assert getattr(protocol.recipe, name) == value, name


# ----------------------------------------------------------------------------------------------- protocols

def test_protocol_descriptions_are_generated_from_the_fields() -> None:
    for p in PROTOCOLS.values():
        devs = p.deviations()
        assert set(p.why) == set(devs), f"{p.name}: every change needs a reason, and only changes have one"
        def fmt(v: object) -> str:
            return f"{v:g}" if isinstance(v, float) else str(v)

        for field, (old, new) in devs.items():
            assert f"{field} {fmt(new)} ({p.base_recipe} {fmt(old)})" in p.description
            assert p.why[field] in p.description
        assert describe(p.recipe) in p.description and f"Recipe '{p.base_recipe}'" in p.description
        assert "DeiT" not in p.description
    text = describe(get_protocol("cifar10").recipe)
    for words in ("RandAugment n2 m9 mstd0.5", "random erasing 0.25 (pixel)", "mixup 0.8 + CutMix 1",
                  "repeated augmentation x3", "label smoothing 0.1", "drop path 0.1", "cooldown 10"):
        assert words in text
    smoke = describe(get_protocol("smoke").recipe)
    for words in ("RandAugment", "erasing", "mixup", "repeated", "EMA", "warmup"):
        assert words not in smoke  # the smoke recipe turns them off, so its description does not name them
    variant = get_protocol("cifar10").with_changes(ema=0.999)
    assert "ema 0.999 (paper 0): override" in variant.description and "EMA 0.999" in variant.description


def test_recipe_changes_make_a_new_study_and_off_knobs_keep_names() -> None:
    study = get_study("padding")
    base = get_protocol("smoke")
    name = grid.study_name(grid.spec(study, base))
    assert grid.study_name(grid.spec(study, base.with_changes(mixup=0.2))) != name
    assert grid.study_name(grid.spec(study, base.with_changes(data_seed=1))) != name
    spec = grid.spec(study, base)["protocol"]["recipe"]
    assert "mixup" not in spec and "ema" not in spec and spec["epochs"] == 3  # off knobs stay out of the hash


def test_tune_search_space_names_recipe_fields() -> None:
    space = set(get_study("recipe").search_space)
    assert space - {"epochs_scale"} <= set(recipe_fields())


# ----------------------------------------------------------------------------------------------- data knobs

def _images(n: int = 24, size: int = 32, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    return x, torch.arange(n) % 10


def _first_batch(recipe: Recipe | None, n: int = 24, bs: int = 8, **kw) -> tuple:
    x, y = _images(n)
    loader = GpuBatches(x, y, bs, train=True, mean=MEAN, std=STD, seed=3, recipe=recipe, **kw)
    return next(iter(loader))


def test_randaugment_changes_pixels_and_magnitude_and_std_matter() -> None:
    plain = _first_batch(None)[0]
    base = Recipe(randaug_ops=2, randaug_magnitude=9.0, randaug_magnitude_std=0.0)
    aug = _first_batch(base)[0]
    assert not torch.equal(plain, aug)
    assert not torch.equal(aug, _first_batch(base.replace(randaug_magnitude=3.0))[0])
    assert not torch.equal(aug, _first_batch(base.replace(randaug_magnitude_std=0.5))[0])
    assert not torch.equal(aug, _first_batch(base.replace(randaug_ops=1))[0])
    assert torch.equal(aug, _first_batch(base)[0])  # seeded: the same stream again


def test_randaugment_picks_ops_per_image_with_timm_probabilities() -> None:
    ra = RandAugment(1, 9, 0.0)
    x = torch.rand(4000, 3, 8, 8)
    gen = torch.Generator().manual_seed(0)
    seen = []
    ra.apply = lambda x, op, level, sign: seen.append((op, level, sign)) or x  # record the per-image draws
    ra(x, gen)
    op, level, sign = seen[0]
    assert (op == -1).float().mean().item() == pytest.approx(0.5, abs=0.03)  # each op applied with prob 0.5
    counts = torch.bincount(op[op >= 0], minlength=len(RANDAUG_OPS)).float()
    assert counts.min() > 0.6 * counts.mean()  # all 15 ops, uniformly, chosen image by image
    assert torch.all(level == 0.9) and set(sign.tolist()) == {-1.0, 1.0}


def test_randaugment_masked_path_equals_the_gathered_one() -> None:
    """The GPU path (every op on the whole batch, kept where chosen) gives the CPU path's images."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 32, 32, generator=g)
    op = torch.randint(-1, len(RANDAUG_OPS), (64,), generator=g)
    level, sign = torch.rand(64, generator=g), torch.where(torch.rand(64, generator=g) < 0.5, -1.0, 1.0)
    ra = RandAugment(1, 9, 0.5)
    gathered, masked = ra.apply(x, op, level, sign, gather=True), ra.apply(x, op, level, sign, gather=False)
    assert torch.allclose(gathered, masked, atol=1e-5)
    assert torch.equal(gathered[op == -1], x[op == -1]) and not torch.allclose(gathered[op >= 0], x[op >= 0])


def _pil(x: torch.Tensor):
    from PIL import Image

    return Image.fromarray((x.permute(1, 2, 0) * 255).round().byte().numpy())


def _from_pil(img) -> torch.Tensor:
    return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255


def test_randaugment_pixel_ops_match_pil_as_timm_calls_it() -> None:
    """timm's level maps at m = 9, applied with PIL (what the released script runs) vs ours on one image."""
    from PIL import ImageEnhance, ImageOps

    x = (torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 255).round() / 255
    img = _pil(x[0])
    m, f_up = 0.9, 1 + 0.9 * 0.9
    reference = {
        "auto_contrast": ImageOps.autocontrast(img), "equalize": ImageOps.equalize(img),
        "invert": ImageOps.invert(img), "posterize": ImageOps.posterize(img, 4 - int(4 * m)),
        "solarize": ImageOps.solarize(img, 256 - int(256 * m)),
        "color": ImageEnhance.Color(img).enhance(f_up), "contrast": ImageEnhance.Contrast(img).enhance(f_up),
        "brightness": ImageEnhance.Brightness(img).enhance(f_up),
        "sharpness": ImageEnhance.Sharpness(img).enhance(f_up),
    }
    add = int(110 * m)  # timm's solarize_add: + add below 128, as a lookup table
    reference["solarize_add"] = img.point([min(255, i + add) if i < 128 else i for i in range(256)] * 3)
    ra = RandAugment(1, 9, 0.0)
    for name, ref in reference.items():
        op = torch.tensor([RANDAUG_OPS.index(name)])
        ours = ra.apply(x, op, torch.tensor([m]), torch.tensor([1.0]))[0]
        diff = (ours - _from_pil(ref)).abs() * 255
        assert diff.max() <= 2.0 + 1e-4, (name, diff.max().item())  # PIL rounds/truncates to 8 bits per op


def test_randaugment_geometric_ops_match_pil_away_from_the_border() -> None:
    from PIL import Image

    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = torch.stack([0.5 + 0.4 * torch.sin(xx / 5), 0.5 + 0.4 * torch.cos(yy / 6), (xx + yy) / 62])[None]
    x = (smooth * 255).round() / 255
    img, m = _pil(x[0]), 0.9
    fill = (128, 128, 128)
    kw = dict(resample=Image.BILINEAR, fillcolor=fill)
    reference = {
        "rotate": img.rotate(30 * m, **kw),
        "shear_x": img.transform(img.size, Image.AFFINE, (1, 0.3 * m, 0, 0, 1, 0), **kw),
        "shear_y": img.transform(img.size, Image.AFFINE, (1, 0, 0, 0.3 * m, 1, 0), **kw),
        "translate_x": img.transform(img.size, Image.AFFINE, (1, 0, 0.45 * m * 32, 0, 1, 0), **kw),
        "translate_y": img.transform(img.size, Image.AFFINE, (1, 0, 0, 0, 1, 0.45 * m * 32), **kw),
    }
    ra = RandAugment(1, 9, 0.0, fill=(128 / 255,) * 3)
    for name, ref in reference.items():
        op = torch.tensor([RANDAUG_OPS.index(name)])
        ours = ra.apply(x, op, torch.tensor([m]), torch.tensor([1.0]))[0]
        diff = ((ours - _from_pil(ref)).abs() * 255)[:, 4:-4, 4:-4]  # PIL and grid_sample blend edges differently
        assert diff.mean() < 1.5 and torch.quantile(diff.flatten(), 0.95) < 4, (name, diff.mean().item())


def test_random_erasing_fills_one_box_per_image_in_timm_limits() -> None:
    plain = _first_batch(None, n=400, bs=400)[0]
    erased = _first_batch(Recipe(erase_prob=1.0, erase_mode="pixel"), n=400, bs=400)[0]
    changed = (erased != plain).any(1)  # (B, H, W)
    frac = changed.float().mean((1, 2))
    assert frac.min() >= 0.015 and frac.max() <= 1 / 3 + 0.02 and (frac > 0).float().mean() > 0.95
    rows, cols = changed.any(2), changed.any(1)
    boxes = rows.sum(1) * cols.sum(1)
    assert torch.all(boxes == changed.sum((1, 2)))  # one rectangle each
    assert erased[changed.unsqueeze(1).expand_as(erased)].std() == pytest.approx(1.0, abs=0.05)  # N(0,1) pixels
    const = _first_batch(Recipe(erase_prob=1.0, erase_mode="const"), n=400, bs=400)[0]
    assert ((const == 0).all(1).float().mean((1, 2)) > 0.015).float().mean() > 0.95
    half = _first_batch(Recipe(erase_prob=0.5), n=400, bs=400)[0]
    assert ((half != plain).any(1).any((1, 2)).float().mean().item()) == pytest.approx(0.5, abs=0.08)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(random_erase(plain, 0.0, "pixel", g), plain)


def test_mixup_and_cutmix_mix_images_and_targets() -> None:
    plain = _first_batch(None)[0]
    x, y, partner, lam = _first_batch(Recipe(mixup=0.8))
    assert 0 < lam < 1 and torch.equal(partner, y.flip(0))
    assert torch.allclose(x, plain * lam + plain.flip(0) * (1 - lam), atol=1e-5)
    x, y, partner, lam = _first_batch(Recipe(cutmix=1.0))
    box = (x != plain).any(1).any(0)  # the pasted rectangle, the same for the whole batch
    assert 0 < box.float().mean() < 1 and lam == pytest.approx(1 - box.float().mean().item())
    assert len(_first_batch(Recipe(mixup=0.8, mix_prob=0.0))) == 2  # never mixed: plain (images, labels)
    rng = np.random.default_rng(0)
    picks = [mix_batch(plain, rng, 0.8, 1.0, 1.0, 1.0)[0] for _ in range(20)]  # switch 1: always CutMix
    assert all(((p != plain).any(1).any(0).float().mean() < 1) for p in picks)
    picks = [mix_batch(plain, rng, 0.8, 1.0, 1.0, 0.0)[0] for _ in range(20)]  # switch 0: always mixup
    assert all(((p != plain).any(1).all()) for p in picks)
    n_mixed = sum(mix_batch(plain, rng, 0.8, 0.0, 0.3, 0.5)[1] < 1 for _ in range(400))
    assert n_mixed / 400 == pytest.approx(0.3, abs=0.07)


def test_repeated_augmentation_repeats_each_image_in_a_row() -> None:
    order = repeated_order(12, 3, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert len(order) == 12 and all(len(set(order[i:i + 3].tolist())) == 1 for i in range(0, 12, 3))
    assert len(set(order.tolist())) == 4
    x, y = _images(24)
    codes = x.view(24, -1)[:, 0].long() * 1000 + x.view(24, -1)[:, 1].long()
    loader = GpuBatches(x, torch.arange(24), 12, train=True, mean=MEAN, std=STD, seed=3, pad=0, flip=False,
                        recipe=Recipe(repeated_aug=3))
    _, idx = next(iter(loader))
    assert len(set(codes[idx].tolist())) == 4 and all(idx[i] == idx[i + 1] == idx[i + 2] for i in range(0, 12, 3))


# ----------------------------------------------------------------------------------------------- loss, optimiser

def _module(**recipe):
    from lightning_modules import HireMLPClassifier

    torch.manual_seed(0)
    return HireMLPClassifier(**hiremlp.get_config("smoke", num_classes=10).to_flat(), **recipe)


def test_label_smoothing_and_mixed_targets_reach_the_loss() -> None:
    x = torch.randn(8, 3, 32, 32)
    y = torch.arange(8) % 10
    logits = 3 * torch.randn(8, 10, generator=torch.Generator().manual_seed(0))

    def module(**recipe):  # the network replaced by fixed logits: this test is about the loss
        m = _module(**recipe)
        m.__dict__["_forward"] = lambda _: logits
        return m

    m = module(label_smoothing=0.0)
    plain = m.training_step((x, y), 0)
    smoothed = module(label_smoothing=0.3).training_step((x, y), 0)
    assert abs(plain.item() - smoothed.item()) > 0.05
    mixed = m.training_step((x, y, y.flip(0), 0.6), 0)
    ce = torch.nn.functional.cross_entropy
    assert mixed == pytest.approx((0.6 * ce(logits, y) + 0.4 * ce(logits, y.flip(0))).item(), rel=1e-5)
    assert m.training_step((x, y, y.flip(0), 1.0), 0) == pytest.approx(plain.item(), rel=1e-6)


def _optimiser(recipe: Recipe, steps_per_epoch: int = 10):
    m = _module(**{k: v for k, v in recipe.to_flat().items() if k != "drop_path"})
    m._trainer = SimpleNamespace(estimated_stepping_batches=steps_per_epoch * recipe.total_epochs,
                                 max_epochs=recipe.total_epochs)
    out = m.configure_optimizers()
    return out["optimizer"], out["lr_scheduler"]["scheduler"]


def _lrs(recipe: Recipe, steps_per_epoch: int = 10) -> list[float]:
    opt, sched = _optimiser(recipe, steps_per_epoch)
    lrs = []
    for _ in range(steps_per_epoch * recipe.total_epochs):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return lrs


def test_schedule_knobs_reach_the_optimiser() -> None:
    r = Recipe(epochs=10, batch_size=128, lr=1e-3, lr_batch=256, warmup_epochs=2.0, warmup_lr=1e-5, min_lr=2e-5,
               cooldown_epochs=3)
    lrs = _lrs(r)
    assert len(lrs) == 130
    assert lrs[0] == pytest.approx(1e-5)  # warmup_lr
    peak = 1e-3 * 128 / 256  # lr x batch_size / lr_batch
    assert r.peak_lr == pytest.approx(peak) and lrs[19] == pytest.approx(1e-5 + (peak - 1e-5) * 1.9 / 2)
    # timm's cosine clock starts at 0, not after the warmup: at epoch 2 it already reads cos(pi 2/10)
    assert lrs[20] == pytest.approx(2e-5 + 0.5 * (peak - 2e-5) * (1 + math.cos(math.pi * 0.2)))
    assert lrs[99] == pytest.approx(2e-5, rel=0.01) and lrs[-30:] == [pytest.approx(2e-5)] * 30  # min_lr, cooldown
    unscaled = r.replace(lr_scaling="none")
    assert _lrs(unscaled)[25] == pytest.approx(unscaled.lr_at(2.5)) and unscaled.lr_at(2.5) > 1.8 * lrs[25]
    assert _lrs(r.replace(epochs=20))[60] > lrs[60]  # the cosine's length is `epochs`


def test_optimiser_and_weight_decay_reach_the_optimiser() -> None:
    opt, _ = _optimiser(Recipe(optimizer="sgd", weight_decay=0.01))
    assert isinstance(opt, torch.optim.SGD) and opt.param_groups[0]["momentum"] == 0.9
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    opt, _ = _optimiser(Recipe(weight_decay=0.07))
    assert isinstance(opt, torch.optim.AdamW) and [g["weight_decay"] for g in opt.param_groups] == [0.07, 0.0]


def test_drop_path_reaches_the_model() -> None:
    from lightning_modules import RunConfig

    cfg = RunConfig(preset="smoke", recipe=Recipe(drop_path=0.5)).model_config(10)
    x = torch.randn(4, 3, 32, 32)
    torch.manual_seed(0)
    dropped = hiremlp.build_model(cfg).train()
    assert not torch.equal(dropped(x), dropped(x))  # random depth: two training forwards differ
    plain = hiremlp.build_model(RunConfig(preset="smoke", recipe=Recipe(drop_path=0.0)).model_config(10)).train()
    assert torch.equal(plain(x), plain(x))


def test_ema_reaches_evaluation() -> None:
    m = _module(ema=0.5)
    assert m.eval_model is m.ema_model
    with torch.no_grad():
        for p in m.model.parameters():
            p.add_(1.0)
    m._update_ema()
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(m(x), m.model.eval()(x))
    assert _module(ema=0.0).eval_model is not None and _module(ema=0.0).ema_model is None


# ----------------------------------------------------------------------------------------------- data seed

def test_data_seed_fixes_the_evaluation_images(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning_modules import CIFAR10DataModule
    from lightning_modules.cifar import CifarArrays

    rng = np.random.default_rng(0)
    arrays = CifarArrays(rng.integers(0, 256, (2000, 3, 32, 32), dtype=np.uint8), np.arange(2000) % 10,
                         rng.integers(0, 256, (500, 3, 32, 32), dtype=np.uint8), np.arange(500) % 10,
                         [str(i) for i in range(10)], "synthetic", "")
    monkeypatch.setattr(CIFAR10DataModule, "load", lambda self: arrays)

    def splits(seed: int, data_seed: int) -> dict:
        dm = CIFAR10DataModule(val_size=200, train_subset=300, eval_subset=100, seed=seed, data_seed=data_seed,
                               device="cpu")
        dm.setup()
        return {k: v[0].view(len(v[0]), -1)[:, :4].tolist() for k, v in dm.splits.items()}

    a, b, c = splits(0, 0), splits(1, 0), splits(0, 1)
    assert a["val"] == b["val"] and a["test"] == b["test"]  # same evaluation images whatever the trial seed
    assert a["train"] != b["train"]  # the trial seed still draws the training subset
    assert a["val"] != c["val"] and a["test"] != c["test"]
    held_out = {tuple(v) for v in splits(0, 0)["val"]}
    assert not held_out & {tuple(v) for v in a["train"]}


# ----------------------------------------------------------------------------------------------- one real run

@pytest.mark.filterwarnings("ignore::lightning_modules.UnofficialArchiveWarning")
def test_a_run_ends_at_min_lr_and_records_the_recipe(tmp_path: Path) -> None:
    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not (data / "cifar-10-python.tar.gz").is_file():
        pytest.skip("no CIFAR-10 at ../shared/data")
    import csv
    import json

    from lightning_modules import RunConfig, run

    recipe = Recipe(epochs=2, cooldown_epochs=1, batch_size=25, lr=1e-3, lr_batch=25, warmup_epochs=1.0,
                    min_lr=3e-5, randaug_ops=2, erase_prob=0.25, mixup=0.8, cutmix=1.0, repeated_aug=3, ema=0.9,
                    label_smoothing=0.1, drop_path=0.1)
    cfg = RunConfig(preset="smoke", data_dir=str(data), recipe=recipe, train_subset=100, eval_subset=50,
                    device="cpu", run_dir=str(tmp_path))
    result = run(cfg)
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 3 and result["epochs_run"] == 3  # epochs + cooldown_epochs
    assert float(rows[-1]["lr"]) == pytest.approx(3e-5)
    logged = json.loads((tmp_path / "config.json").read_text())
    assert logged["run"]["recipe"] == recipe.to_flat()
    assert logged["hparams"]["randaug_ops"] == 2 and logged["model"]["drop_path_rate"] == 0.1


def test_a_sweep_records_the_recipe_in_user_attrs_and_results_csv(tmp_path: Path) -> None:
    import csv

    import optuna

    from sweeps.run import main
    from sweeps.storage import open_storage

    args = ["--study", "padding", "--protocol", "smoke", "--trainer", FAKE, "--runs-dir", str(tmp_path),
            "--rows", "zero", "--mixup", "0.2", "--randaug-ops", "1"]
    assert main(args) == 0
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rows = list(csv.DictReader(open(folder / "results.csv")))
    assert rows[0]["recipe.mixup"] == "0.2" and rows[0]["recipe.randaug_ops"] == "1"
    assert rows[0]["protocol.data_seed"] == "0" and rows[0]["recipe.epochs"] == "3"
    (summary,) = optuna.get_all_study_summaries(open_storage(None, folder))
    trial = optuna.load_study(study_name=summary.study_name, storage=open_storage(None, folder)).trials[0]
    assert trial.user_attrs["recipe"] == get_protocol("smoke").recipe.replace(mixup=0.2, randaug_ops=1).to_flat()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_paper_augmentation_on_a_gpu_never_syncs_with_the_host() -> None:
    x = torch.randint(0, 256, (256, 3, 32, 32), dtype=torch.uint8, device="cuda")
    y = torch.randint(0, 10, (256,), device="cuda")
    loader = GpuBatches(x, y, 64, train=True, mean=MEAN, std=STD, seed=0, recipe=PAPER)
    next(iter(loader))  # first use: allocations, kernel loading
    torch.cuda.set_sync_debug_mode("error")
    try:
        batches = list(loader)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(batches) == 4 and all(b[0].is_cuda for b in batches)
