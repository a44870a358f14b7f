"""Shared test set-up: one CPU thread per test process, and real CIFAR-10 images written as an ImageFolder tree.

One thread per test process and per process a test starts, unless the caller chose otherwise: the suite trains small
models in this process, in sweep workers it starts and in notebook kernels; with torch's default of one thread per
core each of them competes for the same cores (on the 2-core CI machine two OpenMP threads per process measured 5-7x
slower). Set before torch is imported, so it holds for this process too. A test about thread counts sets its own
environment (tests/test_sweep_checks.py).
"""

from __future__ import annotations

import os
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

#: images per class in the JPEG tree: train/ and val/
TREE_TRAIN, TREE_VAL = 24, 8


def real_cifar_dir() -> Path | None:
    for root in (os.environ.get("HIREMLP_DATA"), REPO / ".." / "shared" / "data"):
        if root and (Path(root) / "cifar-10-python.tar.gz").is_file():
            return Path(root).resolve()
    return None


def write_jpeg_tree(root: Path, per_class_train: int = TREE_TRAIN, per_class_val: int = TREE_VAL) -> dict:
    """``root/train/<class>/<i>.JPEG`` and ``root/val/<class>/<i>.JPEG`` from the first images of each class of
    the real CIFAR-10 training and test sets (quality 95); returns the uint8 HWC arrays written, per split."""
    import warnings

    from PIL import Image

    from lightning_modules.cifar import UnofficialArchiveWarning, load_cifar

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnofficialArchiveWarning)
        a = load_cifar("cifar10", real_cifar_dir())
    written: dict[str, dict[str, list[np.ndarray]]] = {"train": {}, "val": {}}
    for split, x, y, k in (("train", a.train_x, a.train_y, per_class_train), ("val", a.test_x, a.test_y,
                                                                              per_class_val)):
        for c, name in enumerate(a.classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i, j in enumerate(np.flatnonzero(y == c)[:k]):
                hwc = np.ascontiguousarray(x[j].transpose(1, 2, 0))
                Image.fromarray(hwc).save(folder / f"{i:04d}.JPEG", quality=95)
                written[split].setdefault(name, []).append(hwc)
    return written


@pytest.fixture(scope="session")
def jpeg_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 10-class ImageFolder tree of real CIFAR-10 JPEGs (24 train and 8 val images per class)."""
    if real_cifar_dir() is None:
        pytest.skip("real CIFAR-10 not found: set HIREMLP_DATA or provide ../shared/data")
    root = tmp_path_factory.mktemp("jpeg_tree")
    write_jpeg_tree(root)
    return root
