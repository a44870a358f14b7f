"""CIFAR-10/100 from the official python archives: find, download, verify, decode once, cache as arrays.

Sweeps start hundreds of runs; unpickling 170 MB per run would dominate short trials, so the first load
writes an uncompressed ``.npz`` into the cache dir keyed by the source's size+mtime and every later load
is a single ``np.load``; within one process (a sweep worker runs trial after trial) the last arrays loaded are
kept, read-only, and handed out again while the cache file is unchanged. Everything that can go wrong with the
files raises ``DatasetError`` (a ValueError) with one line naming the path and the problem.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import tempfile
import urllib.request
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["SPECS", "CifarArrays", "DatasetError", "UnofficialArchiveWarning", "data_dir_candidates",
           "default_data_dir", "find_data_dir", "load_cifar"]


class DatasetError(ValueError):
    """A dataset file is missing, corrupt, or not laid out like the official archive."""


class UnofficialArchiveWarning(UserWarning):
    """The archive's md5 is not the official one (it passed the structural checks and is used anyway)."""


@dataclass(frozen=True)
class CifarSpec:
    name: str
    archive: str  # file name of the official archive
    folder: str  # top folder inside it (and the name of the extracted folder)
    url: str
    md5: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str  # b"labels" (CIFAR-10) or b"fine_labels" (CIFAR-100)
    names_key: str
    num_classes: int
    train_per_class: int
    test_per_class: int


SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        "cifar10", "cifar-10-python.tar.gz", "cifar-10-batches-py",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
        tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",), "batches.meta",
        "labels", "label_names", 10, 5000, 1000,
    ),
    "cifar100": CifarSpec(
        "cifar100", "cifar-100-python.tar.gz", "cifar-100-python",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
        ("train",), ("test",), "meta",
        "fine_labels", "fine_label_names", 100, 500, 100,
    ),
}


@dataclass
class CifarArrays:
    """Decoded split arrays: images uint8 (N, 3, 32, 32) in the archive's CHW order, labels int64 (N,)."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]
    source: str  # path of the archive or folder it came from
    md5: str  # the archive's md5 ('' for an extracted folder)


def default_data_dir() -> Path:
    """``$HIREMLP_DATA`` or ``~/.cache/hiremlp/data``: where a download goes when no folder is given."""
    return data_dir_candidates()[0]


def data_dir_candidates() -> list[Path]:
    """Where CIFAR is looked for when no folder is given, in this order: ``$HIREMLP_DATA`` (when set),
    ``~/.cache/hiremlp/data``, then beside the code ``<repository>/data`` and ``<repository>/../shared/data``."""
    env = os.environ.get("HIREMLP_DATA")
    repo = Path(__file__).resolve().parent.parent
    return [p.expanduser() for p in ([Path(env)] if env else [])] + [
        Path.home() / ".cache" / "hiremlp" / "data", repo / "data", repo.parent / "shared" / "data"]


def find_data_dir(name: str, data_dir: str | os.PathLike | None = None, *, download_ok: bool = False) -> Path:
    """The folder holding dataset ``name``'s archive or extracted folder: ``data_dir`` when given, else the first of
    ``data_dir_candidates()`` that holds it. With ``download_ok`` a folder that holds nothing yet is returned (the
    download goes there). DatasetError naming where it looked."""
    spec = SPECS[name]
    places = [Path(data_dir).expanduser()] if data_dir is not None else data_dir_candidates()
    for place in places:
        if (place / spec.archive).is_file() or (place / spec.folder).is_dir():
            return place
    if download_ok:
        return places[0]
    raise DatasetError(f"no {name} data ({spec.archive} or {spec.folder}/) in {', '.join(map(str, places))}; "
                       f"pass a data folder (--data-dir DIR) or download it (--download)")


def default_cache_dir() -> Path:
    """``$HIREMLP_CACHE`` or ``~/.cache/hiremlp/cache`` (the data dir may be read-only, e.g. /work/shared)."""
    return Path(os.environ.get("HIREMLP_CACHE") or Path.home() / ".cache" / "hiremlp" / "cache").expanduser()


# ---------------------------------------------------------------------------------------------- download

def md5sum(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def download(spec: CifarSpec, data_dir: Path) -> Path:
    """Fetch the official archive to a temp file, check length and md5, then atomically rename it into place."""
    data_dir.mkdir(parents=True, exist_ok=True)
    dest = data_dir / spec.archive
    fd, tmp = tempfile.mkstemp(prefix=f".{spec.archive}.", suffix=".part", dir=data_dir)
    try:
        h, got = hashlib.md5(), 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(spec.url, timeout=60) as resp:
            expected = int(resp.headers.get("Content-Length") or -1)
            while b := resp.read(1 << 20):
                out.write(b)
                h.update(b)
                got += len(b)
        if expected >= 0 and got != expected:
            raise DatasetError(f"{spec.url}: truncated download ({got} of {expected} bytes); nothing written")
        if h.hexdigest() != spec.md5:
            raise DatasetError(f"{spec.url}: md5 {h.hexdigest()} != official {spec.md5}; nothing written")
        os.replace(tmp, dest)
    except OSError as e:  # urllib.error.URLError is an OSError
        raise DatasetError(f"{spec.url}: download failed ({e}); nothing written") from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


# ---------------------------------------------------------------------------------------------- decoding

class _Unpickler(pickle.Unpickler):
    """Only what a CIFAR batch needs (numpy arrays): a corrupt or hostile file cannot run code."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        if module.startswith("numpy.core"):  # py2-era pickles name numpy.core; numpy 2 moved it
            module = "numpy._core" + module[len("numpy.core"):] if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _unpickle(raw: bytes) -> dict:
    d = _Unpickler(io.BytesIO(raw), encoding="bytes").load()
    if not isinstance(d, dict):
        raise pickle.UnpicklingError(f"expected a dict, got {type(d).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _read_members(spec: CifarSpec, src: Path) -> dict[str, bytes]:
    """Raw bytes of the batch and meta files, from the archive or the extracted folder."""
    wanted = [*spec.train_files, *spec.test_files, spec.meta_file]
    if src.is_dir():
        missing = [n for n in wanted if not (src / n).is_file()]
        if missing:
            raise DatasetError(f"{src}: wrong structure: missing {', '.join(missing)}")
        return {n: (src / n).read_bytes() for n in wanted}
    try:
        with tarfile.open(src, "r:gz") as tf:
            out = {}
            for m in tf:
                name = m.name.removeprefix("./")
                if m.isfile() and name.startswith(spec.folder + "/") and name.split("/", 1)[1] in wanted:
                    out[name.split("/", 1)[1]] = tf.extractfile(m).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DatasetError(f"{src}: corrupt archive ({type(e).__name__}: {e})") from e
    missing = [f"{spec.folder}/{n}" for n in wanted if n not in out]
    if missing:
        raise DatasetError(f"{src}: wrong structure: archive lacks {', '.join(missing)}")
    return out


def _decode(spec: CifarSpec, src: Path) -> tuple[np.ndarray, ...]:
    raw = _read_members(spec, src)
    try:
        batches = {n: _unpickle(b) for n, b in raw.items()}
    except Exception as e:  # unpickling garbage raises almost anything
        raise DatasetError(f"{src}: corrupt batch file ({type(e).__name__}: {e})") from e

    def split(files: tuple[str, ...], per_class: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for n in files:
            b = batches[n]
            if "data" not in b or spec.label_key not in b:
                raise DatasetError(f"{src}: wrong structure: {n} lacks 'data' or '{spec.label_key}'")
            x, y = b["data"], np.asarray(b[spec.label_key])
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072:
                desc = f"{getattr(x, 'dtype', type(x).__name__)} {getattr(x, 'shape', '')}"
                raise DatasetError(f"{src}: wrong structure: {n} data is {desc}, expected uint8 (N, 3072)")
            if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
                raise DatasetError(f"{src}: wrong structure: {n} has {len(y)} labels for {len(x)} images")
            xs.append(x)
            ys.append(y.astype(np.int64))
        x, y = np.concatenate(xs), np.concatenate(ys)
        if y.min() < 0 or y.max() >= spec.num_classes:
            raise DatasetError(f"{src}: wrong structure: {what} labels span {y.min()}..{y.max()}, "
                               f"expected 0..{spec.num_classes - 1}")
        counts = np.bincount(y, minlength=spec.num_classes)
        if len(y) != per_class * spec.num_classes or (counts != per_class).any():
            raise DatasetError(f"{src}: wrong structure: {what} has {len(y)} images, per class "
                               f"{counts.min()}..{counts.max()}; expected {per_class} of each of "
                               f"{spec.num_classes} classes")
        return x.reshape(-1, 3, 32, 32), y

    train_x, train_y = split(spec.train_files, spec.train_per_class, "train")
    test_x, test_y = split(spec.test_files, spec.test_per_class, "test")
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in batches[spec.meta_file].get(spec.names_key, [])]
    if len(names) != spec.num_classes:
        raise DatasetError(f"{src}: wrong structure: {spec.meta_file} has {len(names)} class names, "
                           f"expected {spec.num_classes}")
    return train_x, train_y, test_x, test_y, np.array(names)


# ---------------------------------------------------------------------------------------------- entry point

def _source_key(src: Path) -> str:
    """Size+mtime of the archive (or of every file in the folder): cheap, and changes when the data does."""
    files = sorted(p for p in src.iterdir() if p.is_file()) if src.is_dir() else [src]
    size = sum(p.stat().st_size for p in files)
    mtime = max(p.stat().st_mtime_ns for p in files)
    return f"{size}-{mtime}"


# (cache file key, arrays) of the last load: a sweep worker reuses the decoded arrays for every trial instead of
# re-reading ~180 MB per trial. One slot, so at most one dataset stays resident.
_MEMO: list = [None, None]


def _file_key(path: Path) -> tuple | None:
    """Path plus size, mtime and inode of the cache file: a rewritten or damaged cache file is a new key."""
    try:
        st = path.stat()
    except OSError:
        return None
    return str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino


def load_cifar(name: str, data_dir: str | os.PathLike | None = None, *, download_ok: bool = False,
               cache_dir: str | os.PathLike | None = None) -> CifarArrays:
    """Decoded CIFAR-10/100 (``name`` = 'cifar10' | 'cifar100') from ``data_dir``; cached after the first call.

    Looks for the official archive, then the extracted folder. With ``download_ok`` a missing archive is
    fetched from its home URL. A copy whose md5 is not the official one is used after the structural checks,
    with an ``UnofficialArchiveWarning``.
    """
    if name not in SPECS:
        raise DatasetError(f"unknown dataset {name!r}; expected one of {', '.join(SPECS)}")
    spec = SPECS[name]
    root = find_data_dir(name, data_dir, download_ok=download_ok)
    archive, folder = root / spec.archive, root / spec.folder
    src = archive if archive.is_file() else folder if folder.is_dir() else download(spec, root)

    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    cache_file = cache / f"{spec.name}-{_source_key(src)}.npz"
    memo_key = _file_key(cache_file)
    arrays = _MEMO[1] if memo_key is not None and _MEMO[0] == memo_key else None
    if arrays is None and cache_file.is_file():
        try:
            with np.load(cache_file) as z:
                arrays = {k: z[k] for k in ("train_x", "train_y", "test_x", "test_y", "classes", "md5")}
        except Exception:  # a damaged cache is rebuilt, never trusted
            arrays = None
    if arrays is None:
        train_x, train_y, test_x, test_y, classes = _decode(spec, src)
        md5 = md5sum(src) if src.is_file() else ""
        arrays = dict(train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y, classes=classes,
                      md5=np.array(md5))
        try:  # atomic: concurrent sweep workers never see half a file
            cache.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{cache_file.name}.", suffix=".part", dir=cache)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.chmod(tmp, 0o644)  # mkstemp makes it 0600; other users' sweeps may share the cache
            os.replace(tmp, cache_file)
        except OSError as e:
            warnings.warn(f"could not write dataset cache {cache_file}: {e}", stacklevel=2)
    if (key := _file_key(cache_file)) is not None and _MEMO[0] != key:
        for a in arrays.values():
            a.setflags(write=False)  # shared by every later call in this process: nobody may write into them
        _MEMO[:] = [key, arrays]
    md5 = str(arrays["md5"])
    if md5 and md5 != spec.md5:
        warnings.warn(f"{src}: md5 {md5} is not the official {spec.md5}; using it (structure checks passed)",
                      UnofficialArchiveWarning, stacklevel=2)
    return CifarArrays(arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"],
                       [str(c) for c in arrays["classes"]], str(src), md5)
