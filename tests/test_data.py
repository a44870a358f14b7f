"""CIFAR archive reading, checks, download, cache; splits; the device-resident loader's augmentation."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import tarfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lightning_modules import cifar
from lightning_modules.cifar import SPECS, DatasetError, UnofficialArchiveWarning, load_cifar
from lightning_modules.datamodule import CIFAR10DataModule, CIFAR100DataModule, balanced_subset
from lightning_modules.gpu_loader import GpuBatches

TRAIN_PER_CLASS, TEST_PER_CLASS = 3, 2


@pytest.fixture(autouse=True)
def tiny_specs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Official layout, tiny counts; cache in tmp so tests never touch ~/.cache."""
    for name in ("cifar10", "cifar100"):
        monkeypatch.setitem(SPECS, name, dataclasses.replace(SPECS[name], train_per_class=TRAIN_PER_CLASS,
                                                             test_per_class=TEST_PER_CLASS))
    monkeypatch.setenv("HIREMLP_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HIREMLP_DATA", raising=False)


def _balanced_labels(num_classes: int, per_class: int, rng: np.random.Generator) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(num_classes), per_class))


def official_members(name: str, seed: int = 0) -> tuple[dict[str, bytes], dict[str, np.ndarray]]:
    """Pickled members in the official python layout, plus the (N, 3072) arrays they hold."""
    spec, rng = SPECS[name], np.random.default_rng(seed)
    n_cls = spec.num_classes
    members, truth = {}, {}
    if name == "cifar10":  # 5 train batches + test_batch, py2-str keys (bytes after encoding='bytes')
        train_y = _balanced_labels(n_cls, TRAIN_PER_CLASS, rng)
        chunks = np.array_split(np.arange(len(train_y)), len(spec.train_files))
        files = [(f, train_y[c]) for f, c in zip(spec.train_files, chunks, strict=True)]
        files.append(("test_batch", _balanced_labels(n_cls, TEST_PER_CLASS, rng)))
        for fname, y in files:
            x = rng.integers(0, 256, (len(y), 3072), dtype=np.uint8)
            members[fname] = pickle.dumps({b"batch_label": b"batch", b"labels": [int(v) for v in y], b"data": x,
                                           b"filenames": [b"f.png"] * len(y)}, protocol=2)
            truth[fname] = x
        members["batches.meta"] = pickle.dumps({b"label_names": [f"c{i}".encode() for i in range(n_cls)],
                                                b"num_cases_per_batch": 10000, b"num_vis": 3072}, protocol=2)
    else:  # train / test / meta with str keys (what py3 pickles look like)
        for fname, per in (("train", TRAIN_PER_CLASS), ("test", TEST_PER_CLASS)):
            y = _balanced_labels(n_cls, per, rng)
            x = rng.integers(0, 256, (len(y), 3072), dtype=np.uint8)
            members[fname] = pickle.dumps({"filenames": ["f.png"] * len(y), "batch_label": "b",
                                           "fine_labels": [int(v) for v in y], "coarse_labels": [0] * len(y),
                                           "data": x}, protocol=2)
            truth[fname] = x
        members["meta"] = pickle.dumps({"fine_label_names": [f"f{i}" for i in range(n_cls)],
                                        "coarse_label_names": [f"c{i}" for i in range(20)]}, protocol=2)
    return members, truth


def write_archive(root: Path, name: str, members: dict[str, bytes] | None = None) -> Path:
    spec = SPECS[name]
    members = members if members is not None else official_members(name)[0]
    root.mkdir(parents=True, exist_ok=True)
    path = root / spec.archive
    with tarfile.open(path, "w:gz") as tf:
        for fname, blob in members.items():
            info = tarfile.TarInfo(f"{spec.folder}/{fname}")
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    return path


def write_folder(root: Path, name: str) -> Path:
    folder = root / SPECS[name].folder
    folder.mkdir(parents=True)
    for fname, blob in official_members(name)[0].items():
        (folder / fname).write_bytes(blob)
    return folder


# ------------------------------------------------------------------------------------------------ reading

@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_archive_round_trip(tmp_path: Path, name: str) -> None:
    spec = SPECS[name]
    members, truth = official_members(name)
    write_archive(tmp_path, name, members)
    with pytest.warns(UnofficialArchiveWarning, match="not the official"):
        a = load_cifar(name, tmp_path)
    train = np.concatenate([truth[f] for f in spec.train_files]).reshape(-1, 3, 32, 32)
    np.testing.assert_array_equal(a.train_x, train)
    np.testing.assert_array_equal(a.test_x, np.concatenate([truth[f] for f in spec.test_files]).reshape(-1, 3, 32, 32))
    assert a.train_x.dtype == np.uint8 and a.train_y.dtype == np.int64
    assert len(a.classes) == spec.num_classes
    assert np.bincount(a.train_y).tolist() == [TRAIN_PER_CLASS] * spec.num_classes
    # CHW: channel 0 of image 0 is the first 1024 bytes (R plane, row-major)
    np.testing.assert_array_equal(a.train_x[0, 0].ravel(), truth[spec.train_files[0]][0, :1024])


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_extracted_folder_matches_archive(tmp_path: Path, name: str) -> None:
    write_folder(tmp_path / "f", name)
    write_archive(tmp_path / "a", name)
    from_folder = load_cifar(name, tmp_path / "f")
    with pytest.warns(UnofficialArchiveWarning):
        from_archive = load_cifar(name, tmp_path / "a")
    np.testing.assert_array_equal(from_folder.train_x, from_archive.train_x)
    np.testing.assert_array_equal(from_folder.test_y, from_archive.test_y)
    assert from_folder.md5 == ""


def test_data_dir_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_folder(tmp_path, "cifar10")
    monkeypatch.setenv("HIREMLP_DATA", str(tmp_path))
    assert len(load_cifar("cifar10").train_y) == 10 * TRAIN_PER_CLASS


def test_cache_is_used_on_second_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = write_archive(tmp_path, "cifar10")
    with pytest.warns(UnofficialArchiveWarning):
        first = load_cifar("cifar10", tmp_path)
    assert len(list((tmp_path / "cache").glob("cifar10-*.npz"))) == 1

    def boom(*a, **k):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(cifar, "_decode", boom)
    with pytest.warns(UnofficialArchiveWarning):  # the md5 verdict is cached too
        second = load_cifar("cifar10", tmp_path)
    np.testing.assert_array_equal(first.train_x, second.train_x)
    os.utime(archive, ns=(time.time_ns(), time.time_ns() + 10**9))  # a changed source invalidates the cache
    with pytest.raises(AssertionError, match="decoded again"):
        load_cifar("cifar10", tmp_path)


def test_damaged_cache_is_rebuilt(tmp_path: Path) -> None:
    write_folder(tmp_path, "cifar10")
    load_cifar("cifar10", tmp_path)
    (cache_file,) = (tmp_path / "cache").glob("*.npz")
    cache_file.write_bytes(b"garbage")
    assert load_cifar("cifar10", tmp_path).train_x.shape == (10 * TRAIN_PER_CLASS, 3, 32, 32)


# ------------------------------------------------------------------------------------------------ failures

def test_missing_data_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=rf"no cifar10 data \(cifar-10-python.tar.gz or cifar-10-batches-py/\) in "
                                           rf"{tmp_path}; pass a data folder"):
        load_cifar("cifar10", tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_cifar("mnist", tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_archive(tmp_path: Path, damage: str) -> None:
    path = write_archive(tmp_path, "cifar10")
    blob = path.read_bytes()
    path.write_bytes(b"not a gzip file at all" * 10 if damage == "garbage" else blob[: len(blob) // 2])
    with pytest.raises(DatasetError, match=rf"{path}: corrupt archive"):
        load_cifar("cifar10", tmp_path)


def test_corrupt_or_hostile_pickle(tmp_path: Path) -> None:
    members, _ = official_members("cifar10")
    members["data_batch_2"] = b"\x80\x02garbage"
    write_archive(tmp_path, "cifar10", members)
    with pytest.raises(DatasetError, match="corrupt batch file"):
        load_cifar("cifar10", tmp_path)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    members["data_batch_2"] = pickle.dumps(Evil(), protocol=2)
    write_archive(tmp_path / "evil", "cifar10", members)
    with pytest.raises(DatasetError, match="unexpected object"):
        load_cifar("cifar10", tmp_path / "evil")


def _bad(name: str, fname: str, **changes) -> dict[str, bytes]:
    members, _ = official_members(name)
    d = pickle.loads(members[fname], encoding="bytes")
    for k, v in changes.items():
        if v is None:
            d.pop(k.encode())
        else:
            d[k.encode()] = v(d[k.encode()])
    members[fname] = pickle.dumps(d, protocol=2)
    return members


@pytest.mark.parametrize("members, match", [
    (lambda: {k: v for k, v in official_members("cifar10")[0].items() if k != "data_batch_3"},
     "lacks cifar-10-batches-py/data_batch_3"),
    (lambda: _bad("cifar10", "data_batch_1", data=lambda x: x[:, :3000]), r"uint8 \(N, 3072\)"),
    (lambda: _bad("cifar10", "data_batch_1", data=lambda x: x.astype(np.float32)), "float32"),
    (lambda: _bad("cifar10", "data_batch_1", labels=lambda y: [99] + y[1:]), "labels span 0..99"),
    (lambda: _bad("cifar10", "test_batch", labels=lambda y: [0] * len(y)), "expected 2 of each of 10 classes"),
    (lambda: _bad("cifar10", "data_batch_1", labels=lambda y: y[:-1]), "labels for"),
    (lambda: _bad("cifar10", "data_batch_1", data=None), "lacks 'data'"),
    (lambda: _bad("cifar10", "batches.meta", label_names=lambda n: n[:3]), "3 class names"),
])
def test_wrong_structure(tmp_path: Path, members, match: str) -> None:
    path = write_archive(tmp_path, "cifar10", members())
    with pytest.raises(DatasetError, match=rf"{path}: wrong structure: .*{match}"):
        load_cifar("cifar10", tmp_path)


def test_wrong_structure_in_folder(tmp_path: Path) -> None:
    folder = write_folder(tmp_path, "cifar100")
    (folder / "meta").unlink()
    with pytest.raises(DatasetError, match="wrong structure: missing meta"):
        load_cifar("cifar100", tmp_path)


# ------------------------------------------------------------------------------------------------ download

def _serve(monkeypatch: pytest.MonkeyPatch, name: str, src: Path, md5: str | None = None) -> None:
    """Point the dataset's URL at a local file:// copy (md5 defaults to the file's real md5)."""
    md5 = md5 or hashlib.md5(src.read_bytes()).hexdigest()
    monkeypatch.setitem(SPECS, name, dataclasses.replace(SPECS[name], url=src.as_uri(), md5=md5))


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_download_checks_md5_and_renames(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    src = write_archive(tmp_path / "server", name)
    _serve(monkeypatch, name, src)
    dm = (CIFAR10DataModule if name == "cifar10" else CIFAR100DataModule)(tmp_path / "data", download=True,
                                                                          val_size=0, device="cpu")
    dm.prepare_data()
    assert (tmp_path / "data" / SPECS[name].archive).read_bytes() == src.read_bytes()
    assert [p.name for p in (tmp_path / "data").iterdir()] == [SPECS[name].archive]
    dm.setup()  # official md5 now matches: no warning expected
    assert len(dm.splits["train"][1]) == SPECS[name].num_classes * TRAIN_PER_CLASS


def test_download_with_wrong_md5_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _serve(monkeypatch, "cifar10", write_archive(tmp_path / "server", "cifar10"), md5="0" * 32)
    with pytest.raises(DatasetError, match=r"md5 [0-9a-f]{32} != official 0{32}; nothing written"):
        load_cifar("cifar10", tmp_path / "data", download_ok=True)
    assert list((tmp_path / "data").iterdir()) == []


def test_truncated_download_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_archive(tmp_path / "server", "cifar10")
    _serve(monkeypatch, "cifar10", src)
    blob = src.read_bytes()

    class Response(io.BytesIO):
        headers = {"Content-Length": str(len(blob))}

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: Response(blob[:1000]))
    with pytest.raises(DatasetError, match=rf"truncated download \(1000 of {len(blob)} bytes\)"):
        load_cifar("cifar10", tmp_path / "data", download_ok=True)
    assert list((tmp_path / "data").iterdir()) == []


def test_unreachable_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(SPECS, "cifar10", dataclasses.replace(SPECS["cifar10"],
                                                              url=(tmp_path / "nope.tar.gz").as_uri()))
    with pytest.raises(DatasetError, match="download failed"):
        load_cifar("cifar10", tmp_path / "data", download_ok=True)
    assert list((tmp_path / "data").iterdir()) == []


# ------------------------------------------------------------------------------------------------ splits

def test_balanced_subset() -> None:
    labels = np.repeat(np.arange(10), 50)
    idx = balanced_subset(labels, 95, np.random.default_rng(0))
    counts = np.bincount(labels[idx], minlength=10)
    assert len(idx) == len(set(idx)) == 95 and counts.max() - counts.min() == 1
    np.testing.assert_array_equal(idx, balanced_subset(labels, 95, np.random.default_rng(0)))
    with pytest.raises(ValueError):
        balanced_subset(labels, 501, np.random.default_rng(0))


def test_datamodule_splits_are_seeded_disjoint_and_balanced(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(SPECS, "cifar10", dataclasses.replace(SPECS["cifar10"], train_per_class=20))
    members, _ = official_members("cifar10")
    rng = np.random.default_rng(1)  # rebuild the train batches with 20 per class
    y = _balanced_labels(10, 20, rng)
    for f, c in zip(SPECS["cifar10"].train_files, np.array_split(np.arange(200), 5), strict=True):
        x = np.arange(len(c) * 3072, dtype=np.int64).reshape(len(c), 3072) % 251
        x[:, 0] = c  # image id in the first byte, to check disjointness
        members[f] = pickle.dumps({b"data": x.astype(np.uint8), b"labels": [int(v) for v in y[c]]}, protocol=2)
    write_archive(tmp_path, "cifar10", members)

    def make(seed: int) -> CIFAR10DataModule:
        dm = CIFAR10DataModule(tmp_path, batch_size=16, val_size=50, train_subset=60, eval_subset=10, seed=seed,
                               device="cpu")
        with pytest.warns(UnofficialArchiveWarning):
            dm.setup()
        return dm

    dm = make(0)
    (tx, ty), (vx, vy), (_, sy) = dm.splits["train"], dm.splits["val"], dm.splits["test"]
    assert (len(ty), len(vy), len(sy)) == (60, 10, 10)
    assert torch.bincount(ty, minlength=10).tolist() == [6] * 10
    assert torch.bincount(vy, minlength=10).tolist() == [1] * 10
    assert not set(tx[:, 0, 0, 0].tolist()) & set(vx[:, 0, 0, 0].tolist())
    assert tx.dtype == torch.uint8 and tx.device.type == "cpu"
    assert torch.equal(tx, make(0).splits["train"][0]) and not torch.equal(tx, make(1).splits["train"][0])
    assert dm.num_classes == 10 and len(dm.train_dataloader()) == 60 // 16 and len(dm.val_dataloader()) == 1


# ------------------------------------------------------------------------------------------------ loader

def _images(n: int = 12) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, 8, 8), generator=g, dtype=torch.uint8), torch.arange(n) % 10


def test_augmentation_matches_per_image_reference() -> None:
    """The one-gather crop+flip equals reflect-pad → crop → flip done image by image."""
    x, y = _images()
    mean, std = (0.0, 0.0, 0.0), (1 / 255,) * 3  # identity normalisation: values stay 0..255
    b = GpuBatches(x, y, 5, train=True, mean=mean, std=std, seed=3, pad=2)
    assert len(b) == 2  # drop_last for training
    got = list(b)
    gen = torch.Generator().manual_seed(3 * 1_000_003 + 0)
    order = torch.randperm(12, generator=gen)
    padded = F.pad(x.float(), (2, 2, 2, 2), mode="reflect")
    for k, (xb, yb) in enumerate(got):
        idx = order[k * 5:(k + 1) * 5]
        dy = torch.randint(0, 5, (5, 1), generator=gen)
        dx = torch.randint(0, 5, (5, 1), generator=gen)
        flip = torch.rand(5, 1, generator=gen) < 0.5
        for j, i in enumerate(idx):
            ref = padded[i, :, dy[j, 0]:dy[j, 0] + 8, dx[j, 0]:dx[j, 0] + 8]
            ref = ref.flip(-1) if flip[j, 0] else ref
            torch.testing.assert_close(xb[j], ref, rtol=0, atol=1e-3)
        assert torch.equal(yb, y[idx])
    assert not all(torch.equal(a[0], c[0]) for a, c in zip(got, list(b), strict=True))  # next epoch differs


def test_eval_batches_are_plain_normalised_and_resizable() -> None:
    x, y = _images(10)
    b = GpuBatches(x, y, 4, train=False, mean=(0.5,) * 3, std=(0.25,) * 3)
    assert len(b) == 3 and [len(t) for _, t in b] == [4, 4, 2]
    first = next(iter(b))[0]
    torch.testing.assert_close(first, (x[:4].float() / 255 - 0.5) / 0.25)
    b.size = 12
    big = next(iter(b))[0]
    assert big.shape == (4, 3, 12, 12)
    torch.testing.assert_close(big, F.interpolate(first, size=(12, 12), mode="bilinear", antialias=True,
                                                  align_corners=False))
    b.channels_last = True
    assert next(iter(b))[0].is_contiguous(memory_format=torch.channels_last)


def test_loader_rejects_float_images() -> None:
    with pytest.raises(ValueError, match="uint8"):
        GpuBatches(torch.zeros(2, 3, 8, 8), torch.zeros(2, dtype=torch.long), 1, train=False, mean=(0,) * 3,
                   std=(1,) * 3)

