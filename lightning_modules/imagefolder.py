"""Any ImageFolder tree (``train/<class>/*.JPEG``, ``val/<class>/*.JPEG``; ImageNet-1k, ImageNet-100, your own) as a
LightningDataModule with the released script's data pipeline.

In DataLoader worker processes: decode (Pillow; torchvision's decoder when it imports, see ``DECODERS``),
RandomResizedCrop (scale 0.08-1, ratio 3/4-4/3, bicubic) and horizontal flip for training; for evaluation resize the
short side to ``size / 0.875`` (256 for 224) and take the centre ``size`` crop (DeiT's ``datasets.py``). Workers
return uint8 crops; on the training device the recipe's RandAugment, random erasing and mixup/CutMix run on the batch,
exactly as for CIFAR (``gpu_loader.DeviceAugment``). Colour jitter is not applied: timm leaves it out when
RandAugment is on, as in the released recipe.

Every random choice a worker makes comes from a generator seeded by (seed, epoch, position of the sample in the
epoch's global order), so the data stream does not depend on the number of workers or of ranks. The sample order
is the one ``distributed.py`` describes (a seeded permutation, repeated augmentation, each rank its shard).

The tree is checked before any training: missing split, no class folders, a class without images, val classes
that train does not have, an unknown name in a class list, and every file's image header (unreadable images are
reported with their paths). The listing and the check are cached per tree (keyed by the folders' mtimes), so a
sweep pays for them once. Every problem is a ``DatasetError`` (a ValueError) of one line naming the path.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from .cifar import DatasetError, default_cache_dir
from .data_base import EpochStateDataModule, split_indices
from .datamodule import resolve_device
from .distributed import per_device_batch, rank_seed, shard, shard_eval, world_of
from .gpu_loader import DeviceAugment
from .recipe import Recipe

__all__ = ["DECODERS", "IMAGE_EXTENSIONS", "ImageFolderDataModule", "ImageFolderIndex", "eval_resize",
           "random_resized_crop_box", "resolve_decoder", "scan_image_folder"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EVAL_CROP_FRACTION = 0.875  # DeiT: resize to 256 then crop 224
DECODERS = ("auto", "pil", "torchvision")


# ---------------------------------------------------------------------------------------------- the tree

@dataclass(frozen=True)
class ImageFolderIndex:
    """The files of both splits with their class indices (into ``classes``, sorted as ImageFolder sorts)."""

    root: str
    classes: tuple[str, ...]
    train_files: tuple[str, ...]
    train_labels: np.ndarray
    test_files: tuple[str, ...]  # the tree's val/ split: the reported test set
    test_labels: np.ndarray


def _listing(split_dir: Path, classes: Sequence[str]) -> tuple[list[str], list[int]]:
    files, labels = [], []
    for i, c in enumerate(classes):
        names = sorted(e.name for e in os.scandir(split_dir / c) if e.is_file()
                       and e.name.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise DatasetError(f"{split_dir / c}: no images (expected files ending in "
                               f"{', '.join(IMAGE_EXTENSIONS)})")
        files += [str(split_dir / c / n) for n in names]
        labels += [i] * len(names)
    return files, labels


def _select_classes(train_dir: Path, classes: int | str | None) -> list[str]:
    """All class folders of train/ (sorted), the first N, or those a class list file names (in sorted order)."""
    found = sorted(e.name for e in os.scandir(train_dir) if e.is_dir() and not e.name.startswith("."))
    if not found:
        raise DatasetError(f"{train_dir}: no class folders (expected {train_dir}/<class>/<image>)")
    if classes is None:
        return found
    if isinstance(classes, int) or str(classes).strip().isdigit():
        n = int(classes)
        if not 2 <= n <= len(found):
            raise DatasetError(f"classes={n}: {train_dir} has {len(found)} class folders; allowed 2..{len(found)}")
        return found[:n]
    path = Path(str(classes)).expanduser()
    if not path.is_file():
        raise DatasetError(f"classes={classes!r}: neither a number nor a class list file")
    wanted = [line.split()[0] for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    missing = [c for c in wanted if c not in set(found)]
    if missing:
        raise DatasetError(f"{path}: class {missing[0]!r} is not a folder of {train_dir} "
                           f"({len(missing)} of {len(wanted)} listed classes missing)")
    if len(set(wanted)) < 2:
        raise DatasetError(f"{path}: lists {len(set(wanted))} class(es); at least 2 are needed")
    return sorted(set(wanted))


def _unreadable(path: str) -> str | None:
    """Why the image header of ``path`` cannot be read (None when it can)."""
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w < 1 or h < 1:
                return "empty image"
    except Exception as e:  # noqa: BLE001 - any failure to parse means the file is not an image we can use
        return f"{type(e).__name__}: {' '.join(str(e).split())}"
    return None


def check_images(files: Sequence[str], threads: int = 16) -> None:
    """Open every file's header (threads: network file systems are latency-bound); DatasetError naming the first
    unreadable file and how many there are."""
    with ThreadPoolExecutor(threads) as pool:
        bad = [(f, why) for f, why in zip(files, pool.map(_unreadable, files, chunksize=256), strict=True) if why]
    if bad:
        more = f" (and {len(bad) - 1} more unreadable images)" if len(bad) > 1 else ""
        raise DatasetError(f"{bad[0][0]}: unreadable image: {bad[0][1]}{more}")


def scan_image_folder(root: str | os.PathLike, classes: int | str | None = None, *, check: bool = True,
                      cache_dir: str | os.PathLike | None = None) -> ImageFolderIndex:
    """List and check an ImageFolder tree; DatasetError (one line, naming the path) when it is not usable."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder (expected an ImageFolder tree with train/ and val/)")
    train_dir, val_dir = root / "train", root / "val"
    for d in (train_dir, val_dir):
        if not d.is_dir():
            raise DatasetError(f"{d}: missing split (expected {root}/train/<class>/... and {root}/val/<class>/...)")
    names = _select_classes(train_dir, classes)
    absent = [c for c in names if not (val_dir / c).is_dir()]
    if absent:
        raise DatasetError(f"{val_dir / absent[0]}: missing class folder ({len(absent)} of {len(names)} classes "
                           f"of train/ have none in val/)")
    # the listing (and its check) is cached: keyed by the tree's path and the mtimes of its class folders
    stamp = [str(root.resolve()), *names, *(str((d / c).stat().st_mtime_ns) for d in (train_dir, val_dir)
                                            for c in names)]
    key = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:20]
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache_file = cache / f"imagefolder-{key}.json"
    listed = None
    if cache_file.is_file():
        try:
            listed = json.loads(cache_file.read_text())
        except (OSError, ValueError):
            listed = None
    if listed is None or (check and not listed.get("checked")):
        train_files, train_labels = _listing(train_dir, names)
        test_files, test_labels = _listing(val_dir, names)
        if check:
            check_images(train_files + test_files)
        listed = {"train": [train_files, train_labels], "test": [test_files, test_labels], "checked": check}
        try:
            cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{cache_file.name}.", suffix=".part", dir=cache)
            with os.fdopen(fd, "w") as f:
                json.dump(listed, f)
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only cache only costs the next run another listing
    return ImageFolderIndex(str(root), tuple(names), tuple(listed["train"][0]),
                            np.asarray(listed["train"][1], dtype=np.int64), tuple(listed["test"][0]),
                            np.asarray(listed["test"][1], dtype=np.int64))


# ---------------------------------------------------------------------------------------------- decoding

def random_resized_crop_box(width: int, height: int, rng: np.random.Generator,
                            scale: tuple[float, float] = (0.08, 1.0),
                            ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of a RandomResizedCrop: 10 tries of an area fraction uniform in ``scale`` and a
    log-uniform aspect ratio; else the whole image's centre, clamped to the ratio range."""
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = round(math.sqrt(target * aspect))
        h = round(math.sqrt(target / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        h, w = height, round(height * ratio[1])
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


def eval_resize(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) after resizing the short side to ``size / 0.875`` (keeping the aspect ratio)."""
    short = int(size / EVAL_CROP_FRACTION)
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def resolve_decoder(decoder: str) -> str:
    """'auto' -> 'torchvision' when ``torchvision.io`` imports, else 'pil'; ValueError for an unknown name."""
    if decoder not in DECODERS:
        raise ValueError(f"decoder={decoder!r}: expected one of {', '.join(DECODERS)}")
    if decoder == "pil":
        return decoder
    try:
        import torchvision.io  # noqa: F401
    except Exception:  # noqa: BLE001 - a broken torchvision build is as good as none
        if decoder == "torchvision":
            raise ValueError("decoder='torchvision' but torchvision.io does not import here") from None
        return "pil"
    return "torchvision"


def _open_rgb(path: str) -> Image.Image:
    try:
        im = Image.open(path)
        return im.convert("RGB")
    except Exception as e:  # noqa: BLE001 - named in one line, with the path
        raise DatasetError(f"{path}: unreadable image: {type(e).__name__}: {e}") from None


def _to_tensor(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


def _decode_pil(path: str, size: int, rng: np.random.Generator | None) -> torch.Tensor:
    im = _open_rgb(path)
    if rng is None:  # evaluation: resize the short side, then the centre crop
        w, h = eval_resize(*im.size, size)
        im = im.resize((w, h), Image.Resampling.BICUBIC)
        left, top = (w - size) // 2, (h - size) // 2
        return _to_tensor(im.crop((left, top, left + size, top + size)))
    box = random_resized_crop_box(*im.size, rng)
    im = im.resize((size, size), Image.Resampling.BICUBIC, box=box)
    if rng.random() < 0.5:
        im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _to_tensor(im)


def _decode_torchvision(path: str, size: int, rng: np.random.Generator | None) -> torch.Tensor:
    """torchvision's decoder (libjpeg-turbo, no PIL object), the same crop geometry, torch's antialiased bicubic
    (PIL-compatible) resize. Not exercised on this project's CI, where torchvision does not import."""
    import torch.nn.functional as F
    from torchvision.io import ImageReadMode, decode_image, read_file

    try:
        x = decode_image(read_file(path), mode=ImageReadMode.RGB)
    except Exception:  # noqa: BLE001 - formats torchvision cannot read go through PIL
        return _decode_pil(path, size, rng)
    h, w = x.shape[-2:]

    def resize(t: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
        return F.interpolate(t[None].float(), size=(out_h, out_w), mode="bicubic", antialias=True,
                             align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)

    if rng is None:
        rw, rh = eval_resize(w, h, size)
        x = resize(x, rh, rw)
        top, left = (rh - size) // 2, (rw - size) // 2
        return x[:, top:top + size, left:left + size].contiguous()
    left, top, right, bottom = random_resized_crop_box(w, h, rng)
    x = resize(x[:, top:bottom, left:right], size, size)
    return x.flip(-1) if rng.random() < 0.5 else x


class ImageFolderImages(torch.utils.data.Dataset):
    """Decoded crops, uint8 (3, size, size). A training key is (file index, epoch, position in the epoch's global
    order): the crop and flip are drawn from a generator seeded by (seed, epoch, position)."""

    def __init__(self, files: Sequence[str], labels: np.ndarray, size: int, *, train: bool, seed: int,
                 decoder: str) -> None:
        self.files, self.labels, self.size, self.train, self.seed = list(files), labels, size, train, seed
        self.decode = _decode_torchvision if decoder == "torchvision" else _decode_pil

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: Any) -> tuple[torch.Tensor, int]:
        if self.train:
            i, epoch, position = key
            rng = np.random.default_rng([self.seed, epoch, position])
        else:
            i, rng = key, None
        return self.decode(self.files[i], self.size, rng), int(self.labels[i])


class EpochBatches(torch.utils.data.Sampler):
    """Batch sampler of one rank: its shard of the epoch's global order (``distributed.py``), in batches of
    keys for ``ImageFolderImages``; drops the last partial batch when training."""

    def __init__(self, n: int, batch_size: int, *, train: bool, seed: int = 0, repeats: int = 1, rank: int = 0,
                 world: int = 1) -> None:
        self.n, self.batch_size, self.train, self.seed, self.repeats = n, batch_size, train, seed, repeats
        self.rank, self.world, self.epoch = rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def order(self, epoch: int) -> torch.Tensor:
        """This rank's positions into the epoch's global order, and the file index at each: (k, 2) int64."""
        from .augment import repeated_order

        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        glob = repeated_order(self.n, self.repeats, gen, torch.device("cpu"))
        positions = shard(torch.arange(len(glob)), self.rank, self.world)
        return torch.stack([glob[positions], positions], 1)

    def __len__(self) -> int:
        if self.train:
            return self.n // self.world // self.batch_size
        return math.ceil(len(range(self.n)[shard_eval(self.n, self.rank, self.world)]) / self.batch_size)

    def __iter__(self) -> Iterator[list]:
        if not self.train:
            mine = list(range(self.n))[shard_eval(self.n, self.rank, self.world)]
            for i in range(0, len(mine), self.batch_size):
                yield mine[i:i + self.batch_size]
            return
        pairs = self.order(self.epoch).tolist()
        for k in range(len(self)):
            yield [(i, self.epoch, p) for i, p in pairs[k * self.batch_size:(k + 1) * self.batch_size]]


class DeviceLoader:
    """The DataLoader's uint8 batches moved to the training device, then the recipe's on-device augmentation
    (``DeviceAugment``), drawn from generators seeded by (seed, epoch, rank). Each ``__iter__`` of a training
    loader is the next epoch."""

    def __init__(self, loader: torch.utils.data.DataLoader, device: torch.device, augment: DeviceAugment, *,
                 train: bool, seed: int, rank: int) -> None:
        self.loader, self.device, self.finisher, self.train = loader, device, augment, train
        self.seed, self.rank, self.epoch = seed, rank, 0

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def size(self) -> int | None:
        return self.finisher.size

    @size.setter
    def size(self, value: int | None) -> None:
        self.finisher.size = value

    def __iter__(self) -> Iterator[tuple]:
        epoch = self.epoch
        gen = host_rng = None
        if self.train:
            self.epoch += 1
            self.loader.batch_sampler.set_epoch(epoch)
            gen = torch.Generator(device=self.device)
            gen.manual_seed(rank_seed(self.seed, epoch, self.rank))
            host_rng = np.random.default_rng([self.seed, epoch, self.rank])
        for x, y in self.loader:
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            x = self.finisher.finish(x, gen)
            yield self.finisher.mix(x, y, host_rng) if self.train else (x, y)


# ---------------------------------------------------------------------------------------------- the module

class ImageFolderDataModule(EpochStateDataModule):
    """Train / val / test of an ImageFolder tree at ``image_size`` px.

    ``val_size`` images are held out of train/ (class-balanced, drawn with ``data_seed`` alone) for per-epoch
    validation and pruning; the tree's val/ folder is the reported test set. ``classes``: all, the first N, or a
    class list file. ``workers``: DataLoader worker processes per training process (None: the CPUs this process
    may use, up to 8). Each rank takes its shard (``distributed.py``); ``batch_size`` is the global batch.
    """

    dataset = "imagefolder"
    mean, std = IMAGENET_MEAN, IMAGENET_STD

    def __init__(self, data_dir: str | os.PathLike | None, batch_size: int = 256, val_size: int = 10_000,
                 train_subset: int | None = None, eval_subset: int | None = None, seed: int = 0,
                 data_seed: int = 0, device: str | torch.device = "auto", channels_last: bool = False,
                 recipe: Recipe | None = None, image_size: int = 224, classes: int | str | None = None,
                 workers: int | None = None, decoder: str = "auto", eval_batch_size: int | None = None,
                 budget: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        if data_dir is None:
            raise DatasetError("the imagefolder dataset needs data_dir: the folder holding train/ and val/")
        if image_size < 8:
            raise ValueError(f"image_size={image_size}: expected >= 8")
        self.data_dir, self.batch_size, self.seed = Path(data_dir).expanduser(), batch_size, seed
        # split_indices' keywords: these four, and any other the run configures (RunConfig.budget())
        self.budget = {"val_size": val_size, "train_subset": train_subset, "eval_subset": eval_subset,
                       "data_seed": data_seed, **(budget or {})}
        self.device, self.channels_last, self.recipe = resolve_device(device), channels_last, recipe
        self._image_size, self.classes_arg, self.decoder = image_size, classes, resolve_decoder(decoder)
        self.workers = workers if workers is not None else min(8, len(os.sched_getaffinity(0)))
        self.eval_batch_size = eval_batch_size or batch_size
        self.index: ImageFolderIndex | None = None
        self.splits: dict[str, tuple[list[str], np.ndarray]] = {}
        self.classes: list[str] = []

    @property
    def image_size(self) -> int:
        return self._image_size

    @property
    def num_classes(self) -> int:
        if self.index is None:
            self.index = scan_image_folder(self.data_dir, self.classes_arg)
        return len(self.index.classes)

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        idx = self.index = self.index or scan_image_folder(self.data_dir, self.classes_arg)
        self.classes = list(idx.classes)
        y = idx.train_labels
        try:
            split = split_indices(y, len(idx.test_labels), idx.test_labels, **self.budget, seed=self.seed,
                                  where=str(self.data_dir / "train"))
        except ValueError as e:
            raise DatasetError(str(e)) from None
        train_idx, val_idx, test_idx = split
        self.splits = {
            "train": ([idx.train_files[i] for i in train_idx], y[train_idx]),
            "val": ([idx.train_files[i] for i in val_idx], y[val_idx]),
            "test": ([idx.test_files[i] for i in test_idx], idx.test_labels[test_idx]),
        }

    def batches(self, split: str, *, train: bool = False, size: int | None = None,
                shard: bool = True) -> DeviceLoader:
        """Batches of one split on the device; ``size`` resizes the evaluation crops (other input sizes);
        ``shard=False`` gives every rank the whole split."""
        files, labels = self.splits[split]
        rank, world = world_of(self.trainer) if shard else (0, 1)
        bs = per_device_batch(self.batch_size if train else self.eval_batch_size, world) if train else \
            max(1, self.eval_batch_size // world)
        repeats = self.recipe.repeated_aug if train and self.recipe is not None else 1
        sampler = EpochBatches(len(files), bs, train=train, seed=self.seed, repeats=repeats, rank=rank, world=world)
        cuda = self.device.type == "cuda"
        loader = torch.utils.data.DataLoader(
            ImageFolderImages(files, labels, self._image_size, train=train, seed=self.seed, decoder=self.decoder),
            batch_sampler=sampler, num_workers=self.workers, pin_memory=cuda,
            persistent_workers=train and self.workers > 0, prefetch_factor=4 if self.workers > 0 else None,
        )
        augment = DeviceAugment(self.recipe if train else None, self.mean, self.std, self.device,
                                channels_last=self.channels_last, size=size)
        return DeviceLoader(loader, self.device, augment, train=train, seed=self.seed, rank=rank)
