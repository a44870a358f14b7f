"""The ImageFolder data path and the `imagenet` protocol, on a tree of real CIFAR-10 JPEGs (conftest.jpeg_tree)."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TREE_TRAIN, TREE_VAL
from PIL import Image

from lightning_modules.cifar import DatasetError
from lightning_modules.imagefolder import (
    EpochBatches,
    ImageFolderDataModule,
    ImageFolderImages,
    eval_resize,
    random_resized_crop_box,
    scan_image_folder,
)
from lightning_modules.recipe import RECIPES
from lightning_modules.train import main as train_main
from sweeps.run import main as sweep_main

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIREMLP_CACHE", str(tmp_path / "cache"))


def _copy(tree: Path, dest: Path) -> Path:
    shutil.copytree(tree, dest)
    return dest


# ----------------------------------------------------------------------------------------------- the tree

def test_scan_lists_sorted_classes_and_every_image(jpeg_tree: Path) -> None:
    idx = scan_image_folder(jpeg_tree)
    assert list(idx.classes) == CLASSES
    assert len(idx.train_files) == 10 * TREE_TRAIN and len(idx.test_files) == 10 * TREE_VAL
    assert np.bincount(idx.train_labels).tolist() == [TREE_TRAIN] * 10
    for f, y in zip(idx.test_files, idx.test_labels, strict=True):
        assert Path(f).parent.name == CLASSES[y]


def test_classes_first_n_or_a_list_file(jpeg_tree: Path, tmp_path: Path) -> None:
    assert list(scan_image_folder(jpeg_tree, 3).classes) == CLASSES[:3]
    assert list(scan_image_folder(jpeg_tree, "4").classes) == CLASSES[:4]
    listing = tmp_path / "classes.txt"
    listing.write_text("# my subset\nship\ncat extra words\n")
    idx = scan_image_folder(jpeg_tree, str(listing))
    assert list(idx.classes) == ["cat", "ship"] and set(idx.train_labels.tolist()) == {0, 1}
    listing.write_text("cat\nzebra\n")
    with pytest.raises(DatasetError, match="'zebra' is not a folder"):
        scan_image_folder(jpeg_tree, str(listing))
    with pytest.raises(DatasetError, match="classes=11"):
        scan_image_folder(jpeg_tree, 11)


@pytest.mark.parametrize("damage, needle", [
    ("no_val", "val: missing split"),
    ("no_classes", "train: no class folders"),
    ("empty_class", "train/bird: no images"),
    ("val_class_missing", "val/frog: missing class folder"),
    ("unreadable", "train/cat/0003.JPEG: unreadable image"),
])
def test_bad_tree_is_one_line_and_exit_2(jpeg_tree: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                        damage: str, needle: str) -> None:
    root = _copy(jpeg_tree, tmp_path / "tree")
    if damage == "no_val":
        shutil.rmtree(root / "val")
    elif damage == "no_classes":
        for d in (root / "train").iterdir():
            shutil.rmtree(d)
    elif damage == "empty_class":
        for f in (root / "train" / "bird").iterdir():
            f.unlink()
    elif damage == "val_class_missing":
        shutil.rmtree(root / "val" / "frog")
    else:
        (root / "train" / "cat" / "0003.JPEG").write_bytes(b"\xff\xd8 this is not a JPEG")
    code = train_main(["--dataset", "imagefolder", "--data-dir", str(root), "--preset", "smoke", "--image-size", "32",
                       "--run-dir", str(tmp_path / "run"), "--progress", "false"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err and str(root) in err, err
    assert not (tmp_path / "run" / "metrics.csv").exists()  # nothing trained
    code = sweep_main(["--study", "padding", "--protocol", "imagenet", "--data-dir", str(root), "--runs-dir",
                       str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert not (tmp_path / "runs").exists()  # refused before any study or folder was made


def test_imagefolder_needs_a_data_dir(capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    assert sweep_main(["--study", "padding", "--protocol", "imagenet", "--runs-dir", str(tmp_path)]) == 2
    assert "needs --data-dir" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- decoding

def test_eval_is_resize_then_centre_crop_scaled_from_256_224(jpeg_tree: Path) -> None:
    assert eval_resize(500, 375, 224) == (341, 256) and eval_resize(375, 500, 224) == (256, 341)
    idx = scan_image_folder(jpeg_tree)
    images = ImageFolderImages(idx.test_files, idx.test_labels, 32, train=False, seed=0, decoder="pil")
    for i in (0, 17, 79):
        x, y = images[i]
        ref = Image.open(idx.test_files[i]).convert("RGB").resize((36, 36), Image.Resampling.BICUBIC)
        ref = np.asarray(ref.crop((2, 2, 34, 34)))
        assert x.dtype == torch.uint8 and x.shape == (3, 32, 32) and y == idx.test_labels[i]
        assert np.array_equal(x.permute(1, 2, 0).numpy(), ref)


def test_random_resized_crop_follows_its_law() -> None:
    rng = np.random.default_rng(0)
    areas, ratios = [], []
    for _ in range(2000):
        left, top, right, bottom = random_resized_crop_box(500, 375, rng)
        assert 0 <= left < right <= 500 and 0 <= top < bottom <= 375
        areas.append((right - left) * (bottom - top) / (500 * 375))
        ratios.append((right - left) / (bottom - top))
    assert 0.079 < min(areas) and max(areas) <= 1.0 and 0.74 < min(ratios) and max(ratios) < 1.35
    # where every try fits, the area fraction is uniform on the scale range and the log aspect ratio uniform
    draws = [random_resized_crop_box(1000, 1000, rng, scale=(0.2, 0.3)) for _ in range(4000)]
    area = np.array([(r - lf) * (b - t) / 1e6 for lf, t, r, b in draws])
    log_ratio = np.log([(r - lf) / (b - t) for lf, t, r, b in draws])
    assert abs(area.mean() - 0.25) < 0.003 and abs(area.std() - 0.1 / 12 ** 0.5) < 0.003
    assert abs(log_ratio.mean()) < 0.01 and abs(log_ratio.std() - np.log(16 / 9) / 12 ** 0.5) < 0.01
    # a 10 x 1000 strip: no try fits, so the centre crop at the closest allowed ratio, 3/4 (height 13)
    assert random_resized_crop_box(10, 1000, rng) == (0, 493, 10, 506)


def test_training_crops_depend_on_seed_epoch_and_position_only(jpeg_tree: Path) -> None:
    """The stream is the same with 0 or 2 worker processes: every draw is keyed by (seed, epoch, position)."""
    idx = scan_image_folder(jpeg_tree)
    images = ImageFolderImages(idx.train_files, idx.train_labels, 24, train=True, seed=5, decoder="pil")

    def stream(workers: int) -> list[torch.Tensor]:
        sampler = EpochBatches(len(images), 16, train=True, seed=5, repeats=3)
        sampler.set_epoch(2)
        loader = torch.utils.data.DataLoader(images, batch_sampler=sampler, num_workers=workers)
        return [x for x, _ in loader]

    a, b = stream(0), stream(2)
    assert len(a) == 10 * TREE_TRAIN // 16 and all(torch.equal(p, q) for p, q in zip(a, b, strict=True))
    x1, _ = images[(3, 0, 7)]
    assert torch.equal(x1, images[(3, 0, 7)][0]) and not torch.equal(x1, images[(3, 1, 7)][0])


def test_datamodule_holds_out_a_balanced_validation_split_and_tests_on_val(jpeg_tree: Path) -> None:
    dm = ImageFolderDataModule(jpeg_tree, batch_size=20, val_size=30, seed=1, data_seed=4, device="cpu",
                               recipe=RECIPES["paper"], image_size=32, workers=0)
    dm.setup("fit")
    train, val, test = (dm.splits[s] for s in ("train", "val", "test"))
    assert not set(train[0]) & set(val[0]) and len(train[0]) + len(val[0]) == 10 * TREE_TRAIN
    assert np.bincount(val[1]).tolist() == [3] * 10
    assert all("/val/" in f for f in test[0]) and len(test[0]) == 10 * TREE_VAL
    x, y, partner, lam = next(iter(dm.train_dataloader()))  # the paper recipe mixes on the device
    assert x.shape == (20, 3, 32, 32) and x.dtype == torch.float32 and torch.equal(partner, y.flip(0))
    xs, ys = next(iter(dm.test_dataloader()))
    assert xs.shape == (20, 3, 32, 32) and abs(float(xs.mean())) < 1.5  # normalised with ImageNet's mean/std


# ----------------------------------------------------------------------------------------------- the protocol

@pytest.mark.slow
def test_imagenet_protocol_trains_and_evaluates_on_a_jpeg_tree(jpeg_tree: Path, tmp_path: Path) -> None:
    """Hire-MLP-Small, the paper recipe (RandAugment, mixup/CutMix, erasing, repeated aug.), at 32 px."""
    runs = tmp_path / "runs"
    args = ["--study", "padding", "--protocol", "imagenet", "--rows", "circular", "--seeds", "1", "--image-size", "32",
            "--epochs", "1", "--batch-size", "40", "--warmup-epochs", "0", "--cooldown-epochs", "0",
            "--val-size", "40", "--data-dir", str(jpeg_tree), "--runs-dir", str(runs)]
    assert sweep_main(args) == 0
    (results,) = runs.glob("padding-imagenet*/results.csv")
    with open(results) as f:
        (row,) = list(csv.DictReader(f))
    assert row["state"] == "COMPLETE" and row["protocol.dataset"] == "imagefolder"
    assert row["recipe.randaug_ops"] == "2" and row["recipe.repeated_aug"] == "3" and row["recipe.mixup"] == "0.8"
    result = json.loads((Path(row["run_dir"]) / "result.json").read_text())
    assert result["decoder"] == "pil" and result["params"] == 32_605_978  # Small with a 10-class head
    assert 0 <= result["test_acc"] <= 100 and np.isfinite(result["test_loss"])
    config = json.loads((Path(row["run_dir"]) / "config.json").read_text())
    assert config["run"]["image_size"] == 32 and config["resolved"]["peak_lr"] == pytest.approx(5e-4 * 40 / 512)
